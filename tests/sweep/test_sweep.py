"""forkpath sweep: prefix-of-samples evaluation is exact, a resumed sweep computes nothing twice,
outputs carry intervals and the frontier, and a real model sweeps the same way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forkpath import DatasetSpec, load_tasks
from forkpath.models import Usage, replayed_wall_s
from forkpath.store import open_store
from forkpath.sweep import Price, SweepConfig, analyse, bootstrap, load_grid, pareto, run_sweep, write_outputs

# Six math tasks; sample i of a task is answer i of its list (the fake model's script), so
# budgets see different answers and self-consistency's vote moves with n.
SCRIPT = {
    "q0": [
        "The answer is 1.",
        "The answer is 0.",
        "The answer is 0.",
        "The answer is 0.",
        "The answer is 5.",
    ],
    "q1": ["The answer is 1."],
    "q2": [
        "The answer is 9.",
        "The answer is 8.",
        "The answer is 2.",
        "The answer is 2.",
        "The answer is 2.",
    ],
    "q3": [
        "The answer is 4.",
        "The answer is 4.",
        "The answer is 3.",
        "The answer is 3.",
        "The answer is 3.",
    ],
    "q4": ["The answer is 7."],
    "q5": [
        "The answer is 6.",
        "The answer is 5.",
        "The answer is 5.",
        "The answer is 1.",
        "The answer is 5.",
    ],
}

GRID = """\
name: prefix
models:
  default:
    model: fake/m
    options: {script: SCRIPT}
judge: math_answer
configs:
  greedy: {strategy: self_consistency, params: {n: 1, temperature: 0}}
  vote:
    strategy: self_consistency
    params: {temperature: 0.8, early_stop: false}
    sweep: {n: VALUES}
  best:
    strategy: best_of_n
    params: {temperature: 0.8, rerank: mean_logprob}
    sweep: {n: VALUES}
"""


def grid_file(path: Path, values: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = GRID.replace("SCRIPT", json.dumps(SCRIPT)).replace("VALUES", json.dumps(values))
    path.write_text(text, encoding="utf-8")
    return path


def tasks_file(path: Path) -> list:  # type: ignore[type-arg]
    with path.open("w") as f:
        for i in range(6):
            f.write(json.dumps({"id": f"t{i}", "question": f"q{i}: what is it?", "gold": i}) + "\n")
    spec = DatasetSpec(
        name="jsonl", path=str(path), kind="math", fields={"prompt": "question", "answer": "gold"}
    )  # type: ignore[arg-type]
    return load_tasks(spec)


def outcome(runs: list) -> dict[tuple[str, str], tuple]:  # type: ignore[type-arg]
    """Per (point, task): the answer, the verdict and the full token cost."""
    _, rows = analyse(runs, {})
    answers = {(r.point.name, rec.task_id): (rec.answer, rec.passed) for r in runs for rec in r.records}
    return {
        (row.point, row.task_id): (*answers[(row.point, row.task_id)], row.tokens, row.calls) for row in rows
    }


async def test_prefix_of_samples_equals_running_each_budget_alone(tmp_path: Path) -> None:
    tasks = tasks_file(tmp_path / "tasks.jsonl")
    values = [1, 2, 3, 5]
    together = await run_sweep(
        load_grid(grid_file(tmp_path / "all" / "grid.yaml", values)),
        tasks,
        SweepConfig(out_dir=tmp_path / "all"),
    )
    alone: list = []  # type: ignore[type-arg]
    for n in values:  # each budget in a sweep of its own: its own store, nothing to replay
        grid = load_grid(grid_file(tmp_path / f"n{n}" / "grid.yaml", [n]))
        alone += [
            r for r in await run_sweep(grid, tasks, SweepConfig(out_dir=tmp_path / f"n{n}")) if r.point.param
        ]
    shared = outcome([r for r in together if r.point.param])
    separate = outcome(alone)
    assert shared == separate  # answers, verdicts, tokens and calls: identical
    # and the votes did move with n (the comparison is not vacuous)
    assert len({shared[(f"vote@n={n}", "t2")][0] for n in values}) > 1
    # the samples were drawn once, by the first largest budget: every other point replayed them
    # (best_of_n asks for the same samples as self_consistency: same prompt, temperature, indexes)
    real = {r.point.name: sum(u.calls for rec in r.records for u in rec.usage.values()) for r in together}
    assert real == {"greedy": 6, "vote@n=5": 6 * 5} | {p: 0 for p in real if p not in ("greedy", "vote@n=5")}
    for run in together:
        if run.point.param:
            assert all(
                u.cached_calls + u.calls == run.point.value for rec in run.records for u in rec.usage.values()
            )


async def test_a_resumed_sweep_computes_nothing_twice(tmp_path: Path) -> None:
    tasks = tasks_file(tmp_path / "tasks.jsonl")
    grid = load_grid(grid_file(tmp_path / "grid.yaml", [1, 4]))
    config = SweepConfig(out_dir=tmp_path / "out")
    first = await run_sweep(grid, tasks, config)
    assert all(r.summary.ran == len(tasks) for r in first)
    # results.jsonl lost its last three lines: the store's copies of the records bring them home
    largest = tmp_path / "out" / "points" / "vote.n=4" / "results.jsonl"
    lines = largest.read_text().splitlines(keepends=True)
    largest.write_text("".join(lines[:3]))
    again = await run_sweep(grid, tasks, config)
    assert all(r.summary.ran == 0 for r in again)
    assert largest.read_text().count("\n") == len(tasks)
    # a point whose records are gone everywhere (folder and store): its tasks run again, and
    # replay their samples from the cache: no model call, the same answers and costs
    store = open_store(str(tmp_path / "out" / "store.db"))
    await store.clear("prefix.vote.n=4", what="results")
    await store.aclose()
    shutil.rmtree(largest.parent)
    again = await run_sweep(grid, tasks, config)
    ran = {r.point.name: r.summary.ran for r in again}
    assert ran == {"greedy": 0, "vote@n=4": 6, "vote@n=1": 0, "best@n=4": 0, "best@n=1": 0}
    redone = [rec for r in again if r.point.name == "vote@n=4" for rec in r.records]
    assert all(u.calls == 0 and u.cached_calls == 4 for rec in redone for u in rec.usage.values())
    assert outcome(again) == outcome(first)
    # a third run runs nothing at all
    third = await run_sweep(grid, tasks, config)
    assert all(r.summary.ran == 0 and r.summary.skipped == len(tasks) for r in third)


async def test_outputs_have_intervals_frontier_and_files(tmp_path: Path) -> None:
    tasks = tasks_file(tmp_path / "tasks.jsonl")
    grid = load_grid(grid_file(tmp_path / "grid.yaml", [1, 3, 5]))
    runs = await run_sweep(grid, tasks, SweepConfig(out_dir=tmp_path / "out"))
    stats, rows = analyse(runs, {"fake/m": Price(prompt=1.0, completion=2.0)})
    assert len(rows) == len(tasks) * len(stats) == 6 * 7
    for s in stats:
        assert s.accuracy.low <= s.accuracy.mean <= s.accuracy.high
        assert s.dollars.mean > 0  # priced per million tokens
    # the frontier against tokens: nothing on it is beaten by a cheaper, at-least-as-accurate point
    front = [s for s in stats if s.frontier["tokens"]]
    assert front
    for s in front:
        assert not any(
            o.tokens.mean <= s.tokens.mean and o.accuracy.mean > s.accuracy.mean for o in stats if o is not s
        )
    paths = write_outputs(tmp_path / "out", stats, rows, {"grid": "prefix"})
    data = json.loads(paths[0].read_text())
    assert [p["point"] for p in data["points"]] == [s.point for s in stats]
    assert paths[1].read_text().count("\n") == len(stats) + 1


def test_bootstrap_and_pareto_rules() -> None:
    iv = bootstrap([1, 0, 1, 1])
    assert iv.mean == 0.75 and 0.0 <= iv.low <= 0.75 <= iv.high <= 1.0
    assert bootstrap([1, 1, 1]).low == 1.0
    # (cost, accuracy): the second is beaten by the first (cheaper, as accurate)
    assert pareto([(1.0, 0.5), (2.0, 0.5), (3.0, 0.9), (3.0, 0.8)]) == [True, False, True, False]


@pytest.mark.slow
async def test_a_real_model_sweeps_on_prefixes_of_its_samples(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        """\
name: real
models: {default: local/smollm2-135m}
configs:
  vote:
    strategy: self_consistency
    params: {temperature: 0.8, max_tokens: 48, early_stop: false}
    sweep: {n: [1, 3]}
""",
        encoding="utf-8",
    )
    tasks = load_tasks(DatasetSpec(name="gsm8k", split="dev", limit=2))
    runs = await run_sweep(load_grid(grid), tasks, SweepConfig(out_dir=tmp_path / "out"))
    big, small = runs
    assert (big.point.value, small.point.value) == (3, 1)
    for rec in small.records:
        (usage,) = rec.usage.values()
        assert usage.calls == 0 and usage.cached_calls == 1 and usage.replayed_completion_tokens > 0
    _, rows = analyse(runs, {})
    by = {(r.point, r.task_id): r for r in rows}
    for task in tasks:
        # the one sample of n=1 is the first of n=3's: it cost at most a third... of n=3's tokens
        assert by[("vote@n=1", task.id)].tokens < by[("vote@n=3", task.id)].tokens
        assert by[("vote@n=1", task.id)].wall_s > 0


def test_replayed_wall_time_counts_calls_that_ran_together_once() -> None:
    side_by_side = [Usage(replayed_seconds=2.0, replayed_spans=((10.0, 12.0),)) for _ in range(4)]
    assert replayed_wall_s(side_by_side) == 2.0
    one_after_another = [Usage(replayed_seconds=1.0, replayed_spans=((t, t + 1.0),)) for t in (0.0, 1.0, 5.0)]
    assert replayed_wall_s(one_after_another) == 3.0
    overlapping = Usage(replayed_seconds=5.0, replayed_spans=((0.0, 3.0), (2.0, 4.0)))
    # a call cached before spans were recorded counts its whole latency
    assert replayed_wall_s([overlapping, Usage(replayed_seconds=1.5)]) == 4.0 + 1.5
    assert replayed_wall_s([]) == 0.0


async def test_a_replayed_batch_costs_its_wall_time_once(tmp_path: Path) -> None:
    # four samples drawn side by side (no early stop), each taking 0.3 s; a second configuration
    # asking for the same four samples replays them
    text = GRID.replace("options: {script: SCRIPT}", "options: {script: SCRIPT, latency_s: 0.3}")
    text = text.replace("VALUES", "[4]").replace("SCRIPT", json.dumps(SCRIPT))
    text = text.replace(
        "  best:\n    strategy: best_of_n\n    params: {temperature: 0.8, rerank: mean_logprob}",
        "  again:\n    strategy: self_consistency\n    params: {temperature: 0.8, early_stop: false}",
    )
    (tmp_path / "grid.yaml").write_text(text)
    tasks = tasks_file(tmp_path / "tasks.jsonl")[:2]
    runs = await run_sweep(load_grid(tmp_path / "grid.yaml"), tasks, SweepConfig(out_dir=tmp_path / "out"))
    again = next(r for r in runs if r.point.config == "again")
    for record in again.records:
        (usage,) = record.usage.values()
        assert usage.cached_calls == 4 and usage.calls == 0
        assert usage.replayed_seconds >= 4 * 0.3  # the sum of the four latencies
        # the four spans overlap: the replay costs the batch's wall time, not four times it
        assert replayed_wall_s([usage]) < usage.replayed_seconds / 2
