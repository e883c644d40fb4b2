"""The Ray backend on a local Ray cluster gives the local backend's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from forkpath import DatasetSpec, load_tasks
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
