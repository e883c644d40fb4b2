"""Two workers, one Redis, from YAML: a flow's tree search shares its nodes through the store.

Each worker is a separate ``forkpath batch`` process over the same flow file, whose ``store:``
is a real Redis with the generation cache off (so nothing but the trajectory cache can spare a
model call). The second worker finds the first one's tree: the Redis node count does not move,
and it answers with no model call at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from forkpath._datasets import humaneval_task
from forkpath._trace import StrategyEvent, read_trace
from forkpath.batch import read_records
from forkpath.store import open_store

REDIS_URL = os.environ.get("FORKPATH_TEST_REDIS", "redis://127.0.0.1:6379/15")

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore::RuntimeWarning")]


def _redis_or_skip() -> None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as e:
        pytest.skip(f"no Redis at {REDIS_URL}: {e}")


def _worker(flow: Path, out: Path) -> list[Any]:
    """One worker: ``forkpath batch`` in a process of its own; its records."""
    done = subprocess.run(
        [sys.executable, "-m", "forkpath._cli", "batch", str(flow), "--out", str(out), "--no-report"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=flow.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return read_records(out)


def _search_info(record: Any) -> dict[str, Any]:
    """The search's own numbers (namespace, nodes, generations, reused) from a task's trace."""
    [end] = [e for e in read_trace(record.trace_path) if isinstance(e, StrategyEvent) and e.phase == "end"]
    return end.info


async def _nodes(namespace: str) -> int:
    async with open_store(REDIS_URL) as store:
        return (await store.stats(namespace)).nodes


async def _clear(namespaces: list[str]) -> None:
    async with open_store(REDIS_URL) as store:
        for namespace in namespaces:
            await store.clear(namespace, "all")


def _flow(tmp_path: Path, model: str, options: dict[str, Any], strategy: str, params: dict[str, Any]) -> Path:
    dataset = tmp_path / "tasks.jsonl"
    flow = {
        "name": "tree-search-redis",
        "models": {"default": {"model": model, "options": options}},
        "verifier": "python_tests",
        "store": {"url": REDIS_URL, "cache": None},
        "dataset": {
            "name": "jsonl",
            "path": str(dataset),
            "fields": {"test": "test", "entry_point": "entry_point"},
        },
        "nodes": {"search": {"strategy": strategy, "params": params}},
        "edges": [{"from": "search", "to": "end"}],
    }
    path = tmp_path / "flow.yaml"
    path.write_text(json.dumps(flow, indent=2))  # JSON is YAML
    return path


def _write_tasks(path: Path, tasks: list[Any]) -> None:
    with path.open("w") as f:
        for task in tasks:
            f.write(json.dumps(task.model_dump(mode="json")) + "\n")


def test_two_batch_workers_share_a_mcts_tree_through_redis(tmp_path: Path) -> None:
    """A scripted model on HumanEval/1 (the MCTS-Solver scenario): the first worker searches
    five simulations and seven model calls deep before a program passes; the second finds the
    passing node in the shared tree and stops at once, with no model call."""
    _redis_or_skip()
    task = humaneval_task(1)
    solution: str = task.metadata["canonical_solution"]
    first, rest = solution.split("\n", 1)
    script = {
        f"{first}\n": [rest + "```\n"],
        "    return []\n": ["```\n"],
        "separate_paren_groups": ["```\n", solution + "```\n", "    return []\n```\n"],
    }
    run = uuid.uuid4().hex[:8]
    # A task id of this run only: the tree's namespace is derived from the task.
    _write_tasks(tmp_path / "tasks.jsonl", [task.model_copy(update={"id": f"e2e-{run}/1"})])
    flow = _flow(
        tmp_path,
        f"fake/he1-{run}",
        {"script": script, "confidence": 0.5},
        "mcts",
        {
            "max_simulations": 8,
            "answer_prefix": "```python\n{prompt}",
            "step": {"expansion_width": 3, "temperature": 1.0},
        },
    )
    namespaces: list[str] = []
    try:
        [one] = _worker(flow, tmp_path / f"w1-{run}")
        info1 = _search_info(one)
        namespaces.append(info1["namespace"])
        nodes_after_one = asyncio.run(_nodes(info1["namespace"]))
        [two] = _worker(flow, tmp_path / f"w2-{run}")
        info2 = _search_info(two)
        nodes_after_two = asyncio.run(_nodes(info2["namespace"]))
    finally:
        asyncio.run(_clear(namespaces))
    assert one.passed and two.passed and one.answer == two.answer
    assert info2["namespace"] == info1["namespace"]  # one tree, found again by the second worker
    assert (info1["iterations"], info1["generations"]) == (5, 7)
    assert one.usage[f"fake/he1-{run}"].calls == 7
    assert nodes_after_one == info1["nodes"] == 5  # the root, its three children, one below
    assert nodes_after_two == nodes_after_one  # the second worker added nothing
    assert (info2["generations"], info2["iterations"], info2["nodes"]) == (0, 0, 5)
    assert not two.usage or all(u.calls == 0 for u in two.usage.values())


@pytest.mark.slow
def test_two_batch_workers_share_a_token_tree_on_a_real_model(tmp_path: Path) -> None:
    """``examples/tree_search_code.yaml`` on SmolLM2 with Redis, two HumanEval tasks, two
    workers in turn, each with a budget of two model calls per task. The second worker continues
    the first one's trees: every node the first left is still there, and each root counts both
    workers' rollouts (a run on 2026-12-03: HumanEval/0 61 nodes and 30 rollouts after the
    first worker, 71 and 35 after the second; HumanEval/2 31/15, then 57/28)."""
    _redis_or_skip()
    run = uuid.uuid4().hex[:8]
    tasks = [humaneval_task(i) for i in (0, 2)]
    _write_tasks(tmp_path / "tasks.jsonl", [t.model_copy(update={"id": f"e2e-{run}/{t.id}"}) for t in tasks])
    flow = _flow(
        tmp_path,
        "local/smollm2-135m",
        {"n_threads": 1},
        "token_tree_search",
        {"max_generations": 2, "step": {"top_k": 2}, "value": {"max_tokens": 48}},
    )
    namespaces: list[str] = []
    try:
        first = {r.task_id: r for r in _worker(flow, tmp_path / f"w1-{run}")}
        info1 = {k: _search_info(r) for k, r in first.items()}
        namespaces += [i["namespace"] for i in info1.values()]
        nodes1 = {k: asyncio.run(_nodes(i["namespace"])) for k, i in info1.items()}
        second = {r.task_id: r for r in _worker(flow, tmp_path / f"w2-{run}")}
        info2 = {k: _search_info(r) for k, r in second.items()}
        nodes2 = {k: asyncio.run(_nodes(i["namespace"])) for k, i in info2.items()}
    finally:
        asyncio.run(_clear(namespaces))
    assert set(first) == set(second) and len(first) == 2
    for task_id, one in info1.items():
        two = info2[task_id]
        assert two["namespace"] == one["namespace"]
        assert nodes1[task_id] == one["nodes"] > 0
        if first[task_id].passed:  # solved by the first worker: the second only reads the tree
            assert two["generations"] == 0 and nodes2[task_id] == nodes1[task_id]
            continue
        assert one["generations"] == 2 and two["generations"] <= 2
        assert nodes2[task_id] >= nodes1[task_id]  # the first worker's nodes were kept and grown
        assert two["root_visits"] == one["iterations"] + two["iterations"]  # one tree, both workers
