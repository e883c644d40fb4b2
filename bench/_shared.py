"""Run a chunk of benchmark cells at once and share its wall time among them.

``bench/strategies.py`` and ``bench/search.py`` run up to ``--concurrency`` problems of one row
together, so the batched engine decodes their sequences in the same steps; each problem is
charged an equal share of the chunk's wall time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any


async def run_together(cells: list[Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Await ``cells`` at once; stamp each result with ``concurrency`` and ``wall_share_s``."""
    started = time.perf_counter()
    results = list(await asyncio.gather(*cells))
    share = (time.perf_counter() - started) / len(results)
    for result in results:
        result["concurrency"] = len(results)
        result["wall_share_s"] = round(share, 2)
    return results
