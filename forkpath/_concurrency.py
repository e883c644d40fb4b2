"""Structured fan-out: every task a strategy starts is finished, cancelled or retrieved.

``asyncio.gather`` leaves the siblings of a failed awaitable running, and their own failures
unretrieved ("Task exception was never retrieved" at exit, a screen of tracebacks when a store
dies mid-run). Strategies, verifiers and the batch runner fan out through these two instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_all(*awaitables: Awaitable[T]) -> list[T]:
    """Run ``awaitables`` concurrently and return their results in order.

    The first failure cancels the others, waits until they have ended (their own errors are
    retrieved and dropped) and is raised; cancelling the caller cancels them all the same way.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await cancel_all(tasks)
        raise


async def cancel_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, retrieving what each raised."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()  # a no-op on the ones already done
    await asyncio.gather(*tasks, return_exceptions=True)  # retrieves every outcome
