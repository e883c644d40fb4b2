"""Worker processes of the concurrency tests (a module of its own so ``spawn`` can import it)."""

from __future__ import annotations

import asyncio
from typing import Any

from forkpath.store import NewChild, open_store, prefix_key

SHARED_TOKEN = 7


def hammer(
    url: str, ns: str, run: str, root_key: str, worker: int, n_ops: int, barrier: Any, out: Any
) -> None:
    """Expand one node, bump its counters, race for claims and write results, ``n_ops`` times."""
    try:
        out.put(asyncio.run(_hammer(url, ns, run, root_key, worker, n_ops, barrier)))
    except BaseException as e:  # the parent asserts on what each worker reports
        out.put((worker, "error", f"{type(e).__name__}: {e}"))


async def _hammer(url: str, ns: str, run: str, root_key: str, worker: int, n_ops: int, barrier: Any) -> Any:
    store = open_store(url)
    tree = store.trajectories
    shared_key = prefix_key([1, 2, 3, SHARED_TOKEN])
    shared_added, wins = 0, []
    barrier.wait()  # everybody imported and connected: start together
    try:
        for i in range(n_ops):
            own = NewChild(tokens=(10_000 + worker * n_ops + i,), meta={"worker": worker})
            added = await tree.add_children(ns, root_key, [own, NewChild(tokens=(SHARED_TOKEN,))])
            shared_added += sum(1 for c in added if c.tokens == (SHARED_TOKEN,))
            await tree.update_stats(ns, root_key, 1, 0.5)
            await tree.update_stats(ns, shared_key, 1, 1.0)
            if await tree.claim(ns, prefix_key([i]), owner=f"worker-{worker}", ttl_s=600):
                wins.append(i)
            await store.put_result(run, f"task-{worker}-{i}", {"worker": worker, "i": i})
    finally:
        await store.aclose()
    return worker, shared_added, wins
