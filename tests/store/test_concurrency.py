"""Several processes hammering one node, its counters, claims and results: nothing is lost."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from typing import Any

import pytest

from forkpath.store import NewChild, Store, open_store, prefix_key

from ._workers import SHARED_TOKEN, hammer
from .conftest import REDIS_URL, redis_unavailable

PROCESSES = 4
OPS = 200


def _url(kind: str, tmp_path: Any) -> str:
    if kind == "sqlite":
        return f"sqlite://{os.path.join(tmp_path, 'shared.db')}"
    reason = redis_unavailable()
    if reason:
        pytest.skip(reason)
    return REDIS_URL


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def test_processes_never_lose_children_counts_or_results(kind: str, tmp_path: Any, ns: str) -> None:
    url = _url(kind, tmp_path)
    run = f"{ns}-run"
    store = open_store(url)
    try:
        root = await store.trajectories.add_root(ns, tokens=[1, 2, 3])
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(PROCESSES), ctx.Queue()
        workers = [
            ctx.Process(target=hammer, args=(url, ns, run, root.key, w, OPS, barrier, out))
            for w in range(PROCESSES)
        ]
        for p in workers:
            p.start()
        reports = [await asyncio.to_thread(out.get, True, 300) for _ in workers]
        for p in workers:
            p.join(60)
        errors = [r for r in reports if r[1] == "error"]
        assert not errors, errors

        node = await store.trajectories.get_node(ns, root.key)
        assert node is not None
        assert node.visits == PROCESSES * OPS
        assert node.value_sum == pytest.approx(0.5 * PROCESSES * OPS, abs=1e-9)
        assert len(node.children) == PROCESSES * OPS + 1, "every worker's children kept, the shared one once"
        assert len(set(node.children)) == len(node.children)
        shared = await store.trajectories.get_node(ns, prefix_key([1, 2, 3, SHARED_TOKEN]))
        assert shared is not None and (shared.visits, shared.value_sum) == (
            PROCESSES * OPS,
            float(PROCESSES * OPS),
        )
        assert sum(r[1] for r in reports) == 1, "exactly one worker created the shared child"
        winners = sorted(i for r in reports for i in r[2])
        assert winners == list(range(OPS)), "each claim was won by exactly one worker"
        assert await store.finished_ids(run) == {
            f"task-{w}-{i}" for w in range(PROCESSES) for i in range(OPS)
        }
        assert (await store.stats(ns)).nodes == PROCESSES * OPS + 2
    finally:
        for name in (ns, run):
            await store.clear(name, "all")
        await store.aclose()


async def test_coroutines_of_one_process_share_a_store_safely(store: Store, ns: str) -> None:
    tree = store.trajectories
    root = await tree.add_root(ns, tokens=[1])

    async def expand(i: int) -> None:
        await tree.add_children(ns, root.key, [NewChild(tokens=(100 + i,)), NewChild(tokens=(5,))])
        await tree.update_stats(ns, root.key, 1, 1.0)

    await asyncio.gather(*(expand(i) for i in range(100)))
    node = await tree.get_node(ns, root.key)
    assert node is not None and (node.visits, node.value_sum, len(node.children)) == (100, 100.0, 101)
