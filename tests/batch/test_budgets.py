"""Two budgets in a batch: the flow's limits each task, ``batch_budget`` limits the invocation.

A task its own budget cut short is finished (best answer kept, ``stopped: budget``) and a resume
skips it unless asked; the batch budget starts no new task once spent and lets running ones
finish. The same rules on the Ray backend are in ``test_ray.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from forkpath import BudgetLimits, DatasetSpec, Task, load_tasks
from forkpath.batch import BatchConfig, read_records, run_batch, summarize
from forkpath.flows import Flow

SCRIPT = ", ".join(f'"q{i}": ["The answer is {i}."]' for i in range(10))
FLOW = f"""\
name: budget-test
models:
  default: {{model: fake/m, options: {{latency_s: LATENCY, script: {{{SCRIPT}}}}}}}
verifier: math_answer
nodes:
  sample:
    strategy: best_of_n
    params: {{n: N, temperature: 1.0, early_stop: false}}
edges:
  - {{from: sample, to: end}}
"""


def flow(n: int, *, budget: str = "", latency: float = 0.0) -> Flow:
    text = FLOW.replace("LATENCY", str(latency)).replace("N", str(n))
    return Flow.from_yaml_text(text + (f"budget: {budget}\n" if budget else ""))


def tasks(tmp_path: Path, n: int = 10) -> list[Task]:
    path = tmp_path / "d.jsonl"
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"t{i}", "question": f"q{i}: what is {i}?", "gold": i}) + "\n")
    spec = DatasetSpec(
        name="jsonl", path=str(path), kind="math", fields={"prompt": "question", "answer": "gold"}
    )  # type: ignore[arg-type]
    return load_tasks(spec)


async def test_the_flows_budget_limits_each_task_never_the_whole_batch(tmp_path: Path) -> None:
    # Before: one Budget(max_calls=2) was shared by the batch, so after the first task every
    # other one stopped before its first call.
    five = tasks(tmp_path, 5)
    summary = await run_batch(
        flow(4, budget="{max_calls: 2}"),
        five,
        BatchConfig(run_id="r", out_dir=tmp_path / "out", concurrency=2),
    )
    records = {r.task_id: r for r in read_records(tmp_path / "out")}
    assert (summary.ran, summary.budget_stopped, summary.failed, summary.stopped) == (5, 5, 0, "done")
    for i in range(5):
        record = records[f"t{i}"]
        assert (record.status, record.stopped, record.n_candidates) == ("ok", "budget", 2)
        assert record.usage["fake/m"].calls == 2  # its own two calls, not a share of two in all
        assert record.answer == f"The answer is {i}." and record.passed is True  # best answer kept
    assert summarize(list(records.values())).budget_stopped == 5

    unlimited = await run_batch(flow(4), five, BatchConfig(run_id="r", out_dir=tmp_path / "free"))
    assert unlimited.budget_stopped == 0
    assert {(r.stopped, r.n_candidates) for r in read_records(tmp_path / "free")} == {("done", 4)}


async def test_a_task_its_budget_stopped_is_finished_and_reruns_only_when_asked(tmp_path: Path) -> None:
    four = tasks(tmp_path, 4)
    limited = flow(3, budget="{max_calls: 1}")
    config = BatchConfig(run_id="r", out_dir=tmp_path / "out")
    first = await run_batch(limited, four, config)
    assert (first.ran, first.budget_stopped) == (4, 4)

    again = await run_batch(limited, four, config)
    assert (again.skipped, again.ran) == (4, 0)  # finished: a resume does not rerun them forever

    rerun = await run_batch(limited, four, config.model_copy(update={"rerun_budget_stopped": True}))
    assert (rerun.skipped, rerun.ran, rerun.budget_stopped) == (0, 4, 4)
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {json.loads(line)["stopped"] for line in lines} == {"budget"}


async def test_rerunning_budget_stopped_tasks_leaves_the_others_alone(tmp_path: Path) -> None:
    three = tasks(tmp_path, 3)
    config = BatchConfig(run_id="r", out_dir=tmp_path / "out")
    await run_batch(flow(2), three, config)
    summary = await run_batch(flow(2), three, config.model_copy(update={"rerun_budget_stopped": True}))
    assert (summary.skipped, summary.ran) == (3, 0)  # none was stopped by a budget


@pytest.mark.parametrize("limit", ["calls", "tokens"])
async def test_the_batch_budget_starts_no_new_task_once_spent(tmp_path: Path, limit: str) -> None:
    ten = tasks(tmp_path, 10)
    probe = await run_batch(flow(2), ten[:1], BatchConfig(run_id="p", out_dir=tmp_path / "probe"))
    assert probe.ran == 1
    per_task = read_records(tmp_path / "probe")[0].usage["fake/m"]
    assert per_task.calls == 2
    # Spent during the third task: the third finishes, the fourth never starts.
    limits = (
        BudgetLimits(max_calls=5)
        if limit == "calls"
        else BudgetLimits(max_tokens=per_task.total_tokens * 5 // 2)
    )
    config = BatchConfig(run_id="r", out_dir=tmp_path / "out", concurrency=1, batch_budget=limits)
    summary = await run_batch(flow(2), ten, config)
    assert (summary.ran, summary.not_started, summary.stopped, summary.batch_limit) == (
        3,
        7,
        "batch_budget",
        limit,
    )
    records = read_records(tmp_path / "out")
    assert sorted(r.task_id for r in records) == ["t0", "t1", "t2"]
    assert all(r.status == "ok" and r.stopped == "done" and r.n_candidates == 2 for r in records)

    # A batch limit is this invocation's: a rerun without one runs what was not started.
    rest = await run_batch(flow(2), ten, config.model_copy(update={"batch_budget": BudgetLimits()}))
    assert (rest.skipped, rest.ran, rest.stopped) == (3, 7, "done")


async def test_tasks_in_flight_finish_when_the_batch_budget_runs_out(tmp_path: Path) -> None:
    ten = tasks(tmp_path, 10)
    config = BatchConfig(
        run_id="r", out_dir=tmp_path / "out", concurrency=3, batch_budget=BudgetLimits(max_calls=1)
    )
    summary = await run_batch(flow(2, latency=0.05), ten, config)
    # Three start at once (nothing is spent yet); the first to finish spends the budget.
    assert (summary.ran, summary.not_started, summary.stopped) == (3, 7, "batch_budget")
    records = read_records(tmp_path / "out")
    assert len(records) == 3
    assert all(r.status == "ok" and r.stopped == "done" and r.n_candidates == 2 for r in records)


def test_the_old_shared_budget_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="budget"):
        BatchConfig.model_validate({"run_id": "r", "out_dir": "out", "budget": {"max_calls": 5}})
    with pytest.raises(ValidationError, match="task_timeout_s"):
        BatchConfig(run_id="r", out_dir=Path("out"), task_timeout_s=float("nan"))


async def test_a_real_model_batch_keeps_each_tasks_own_budget(tmp_path: Path) -> None:
    """SmolLM2 through the whole runner: each task its own budget, the batch its own."""
    flow_text = """\
name: real-budget
models:
  default: {model: local/smollm2-135m, options: {n_threads: 1}}  # one thread: quick on a shared machine
verifier: math_answer
budget: {max_calls: 2}
nodes:
  sample:
    strategy: best_of_n
    params: {n: 3, temperature: 0.8, max_tokens: 12, early_stop: false}
edges:
  - {from: sample, to: end}
"""
    real = Flow.from_yaml_text(flow_text)
    three = load_tasks(DatasetSpec(name="gsm8k", limit=3))
    config = BatchConfig(
        run_id="real", out_dir=tmp_path / "out", concurrency=1, batch_budget=BudgetLimits(max_calls=3)
    )
    summary = await run_batch(real, three, config)
    # Each task spends its own two calls; the batch's three are spent during the second task.
    assert (summary.ran, summary.budget_stopped, summary.not_started, summary.stopped) == (
        2,
        2,
        1,
        "batch_budget",
    )
    records = read_records(tmp_path / "out")
    assert [r.task_id for r in records] == ["gsm8k/0", "gsm8k/1"]
    for record in records:
        assert record.status == "ok" and record.stopped == "budget" and record.answer
        assert record.usage["local/smollm2-135m"].calls == 2 and record.n_candidates == 2
