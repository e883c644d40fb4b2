"""The Ray backend on a local Ray cluster gives the local backend's results, budgets and failures."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from forkpath import BudgetLimits, DatasetSpec, StoreError, load_tasks
from forkpath.batch import BatchConfig, read_records, run_batch
from forkpath.flows import Flow

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

FLOW = """\
name: ray-test
models:
  default: {model: fake/m, options: {script: {"Janet": ["The answer is 18."], "robe": ["The answer is 3."],
    "Josh": ["The answer is 70000."]}}}
verifier: math_answer
nodes:
  sample:
    strategy: best_of_n
    params: {n: 3, temperature: 1.0, early_stop: false}
edges:
  - {from: sample, to: end}
"""


@pytest.fixture(scope="module")
def local_ray() -> object:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


async def test_ray_backend_matches_local(tmp_path: Path, local_ray: object) -> None:
    tasks = load_tasks(DatasetSpec(name="gsm8k", limit=6))
    flow = Flow.from_yaml_text(FLOW)
    await run_batch(flow, tasks, BatchConfig(run_id="local", out_dir=tmp_path / "local", concurrency=2))
    summary = await run_batch(
        flow, tasks, BatchConfig(run_id="ray", out_dir=tmp_path / "ray", concurrency=2, backend="ray")
    )
    assert summary.ran == 6
    local = {r.task_id: r for r in read_records(tmp_path / "local")}
    remote = {r.task_id: r for r in read_records(tmp_path / "ray")}
    assert local.keys() == remote.keys() == {t.id for t in tasks}
    for task_id, record in local.items():
        other = remote[task_id]
        assert (other.status, other.answer, other.passed, other.n_candidates, other.n_passed) == (
            record.status,
            record.answer,
            record.passed,
            record.n_candidates,
            record.n_passed,
        )
        assert other.usage == record.usage
    assert sum(r.passed for r in local.values()) == 3  # the three scripted answers are right


async def test_budgets_mean_the_same_on_ray(tmp_path: Path, local_ray: object) -> None:
    """The flow's budget limits each task, the batch budget the invocation, on both backends:
    the same records and the same summary (the driver no longer stops on the flow's limits)."""
    tasks = load_tasks(DatasetSpec(name="gsm8k", limit=4))
    flow = Flow.from_yaml_text(FLOW + "budget: {max_calls: 2}\n")  # of n: 3 samples, two are paid for
    summaries = {}
    for backend in ("local", "ray"):
        config = BatchConfig(
            run_id=backend,
            out_dir=tmp_path / backend,
            concurrency=1,
            backend=backend,  # type: ignore[arg-type]
            batch_budget=BudgetLimits(max_calls=3),
        )
        summaries[backend] = await run_batch(flow, tasks, config)
        records = read_records(tmp_path / backend)
        assert [r.task_id for r in records] == [t.id for t in tasks[:2]]  # spent during the second
        for record in records:
            assert (record.status, record.stopped, record.n_candidates) == ("ok", "budget", 2)
            assert record.usage["fake/m"].calls == 2
    local, remote = (s.model_dump(exclude={"run_id", "results_path"}) for s in summaries.values())
    assert local == remote
    assert (remote["ran"], remote["budget_stopped"], remote["not_started"], remote["stopped"]) == (
        2,
        2,
        2,
        "batch_budget",
    )

    # On resume the budget-stopped tasks are finished on Ray too; only the unstarted two run.
    rest = await run_batch(
        flow, tasks, BatchConfig(run_id="ray", out_dir=tmp_path / "ray", concurrency=1, backend="ray")
    )
    assert (rest.skipped, rest.ran, rest.budget_stopped, rest.stopped) == (2, 2, 2, "done")


async def test_a_store_dying_under_ray_stops_the_batch_with_the_stores_error(
    tmp_path: Path, local_ray: object
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.05)
        slow = FLOW.replace("{model: fake/m, options: {", "{model: fake/m, options: {latency_s: 0.3, ")
        flow = Flow.from_yaml_text(slow + f'store: {{url: "{url}"}}\n')
        tasks = load_tasks(DatasetSpec(name="gsm8k", limit=8))
        config = BatchConfig(run_id="dies", out_dir=tmp_path / "out", concurrency=2, backend="ray")
        seen: list[str] = []

        def kill_after_the_first(record: object) -> None:
            seen.append(str(record))
            if len(seen) == 1:
                redis.kill()

        with pytest.raises(StoreError, match=f"^{url} unreachable"):
            await run_batch(flow, tasks, config, on_record=kill_after_the_first)
        kept = read_records(tmp_path / "out")
        assert 1 <= len(kept) < 8 and all(r.status == "ok" for r in kept)
    finally:
        redis.kill()
        redis.wait()
