"""escalate: the ladder stops where its gate says, thresholds fitted on dev hold on held-out
tasks, and calibration through the sweep writes a file the strategy reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forkpath import DatasetSpec, Task, load_tasks
from forkpath._errors import ConfigError
from forkpath.models import FakeModel
from forkpath.strategies import Context, fit_thresholds, load_thresholds, simulate, strategies
from forkpath.sweep import (
    CalibrationRow,
    SweepConfig,
    analyse,
    calibrate_escalate,
    collect_calibration,
    load_grid,
    run_sweep,
)
from forkpath.verifiers import make_verifier

SMALL = {
    "agree": ["The answer is 4.", "The answer is 4.", "The answer is 4."],
    "split": ["The answer is 1.", "The answer is 2.", "The answer is 3."],
}
LARGE = {"agree": ["The answer is 5."], "split": ["The answer is 9."]}

LADDER = [
    {"strategy": "self_consistency", "params": {"n": 3, "model": "small"}, "gate": "agreement"},
    {"strategy": "self_consistency", "params": {"n": 1, "temperature": 0, "model": "large"}},
]


def context() -> Context:
    return Context(
        models={
            "small": FakeModel("fake/small", script=SMALL),
            "large": FakeModel("fake/large", script=LARGE),
        },
        verifier=make_verifier("math_answer"),
    )


async def test_the_ladder_stops_at_the_first_stage_whose_signal_reaches_its_threshold() -> None:
    ladder = [{**LADDER[0], "threshold": 0.6}, LADDER[1]]
    escalate = strategies.create("escalate", stages=ladder)
    ctx = context()
    agreed = await escalate(Task(id="a", prompt="agree?", kind="math", answer="4"), ctx)
    assert agreed.info["stage"] == 0 and agreed.answer == "The answer is 4."
    assert agreed.info["signals"] == [1.0]
    split = await escalate(Task(id="b", prompt="split?", kind="math", answer="9"), ctx)
    assert split.info["stage"] == 1 and split.answer == "The answer is 9."
    assert split.info["signals"][0] == pytest.approx(1 / 3)
    assert split.candidates[split.chosen].model == "fake/large"
    assert set(split.usage) == {"fake/small", "fake/large"}
    assert set(agreed.usage) == {"fake/small"}  # the large model was never asked


@pytest.mark.parametrize(
    ("stages", "says"),
    [
        ([LADDER[1]], "at least two stages"),
        ([{**LADDER[0], "gate": None}, LADDER[1]], "needs a gate"),
        ([LADDER[0], LADDER[1]], "no threshold"),
        ([{**LADDER[0], "threshold": 0.5, "gate": "loudness"}, LADDER[1]], "gate"),
        (
            [{**LADDER[0], "threshold": 0.5, "strategy": "escalate"}, LADDER[1]],
            "cannot hold another escalate",
        ),
        ([{**LADDER[0], "threshold": 0.5, "params": {"n": 0}}, LADDER[1]], "n"),
        ([{**LADDER[0], "threshold": 0.5, "colour": 1}, LADDER[1]], "colour"),
    ],
)
def test_bad_ladders_are_one_clear_error(stages: list[dict[str, object]], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        strategies.create("escalate", stages=stages)


def synthetic(tasks: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three stages of growing accuracy and cost; each gate's signal is noisy evidence of
    whether its stage is right (what agreement or public tests give)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(tasks)
    skill = np.array([0.45, 0.7, 0.9])
    correct = rng.random((tasks, 3)) < np.clip(skill[None, :] + 0.35 - difficulty[:, None] * 0.7, 0, 1)
    signals = correct * 0.6 + rng.normal(0.2, 0.25, (tasks, 3))
    costs = np.tile([100.0, 400.0, 1500.0], (tasks, 1)) * rng.uniform(0.8, 1.2, (tasks, 1))
    return signals, correct.astype(float), costs


def test_thresholds_fitted_on_dev_hold_their_target_on_held_out_tasks() -> None:
    dev, test = synthetic(3000, seed=1), synthetic(3000, seed=2)
    always_last = dev[1][:, 2].mean()
    target = round(always_last - 0.02, 3)
    fit = fit_thresholds(*dev, target_accuracy=target)
    assert fit.accuracy >= target
    accuracy, cost, stop = simulate(fit.thresholds, *test)
    se = (target * (1 - target) / 3000) ** 0.5
    assert accuracy >= target - 3 * se  # held out: within sampling error of the target
    assert cost < 0.8 * test[2].sum(axis=1).mean()  # well below climbing the whole ladder every time
    assert 0 < (stop == 0).mean() < 1  # the ladder does stop early on some tasks and not on others
    # a cost target: the most accurate ladder within it, held out within 3% of the target
    budget = 600.0
    fit = fit_thresholds(*dev, target_cost=budget)
    assert fit.cost <= budget
    accuracy, cost, _ = simulate(fit.thresholds, *test)
    assert cost <= budget * 1.03 and accuracy > dev[1][:, 0].mean()


def test_unreachable_targets_say_what_is_reachable() -> None:
    dev = synthetic(200, seed=3)
    with pytest.raises(ConfigError, match=r"no thresholds reach accuracy 0\.999 on these tasks; the best is"):
        fit_thresholds(*dev, target_accuracy=0.999)
    with pytest.raises(ConfigError, match="the cheapest ladder costs"):
        fit_thresholds(*dev, target_cost=1.0)
    with pytest.raises(ConfigError, match="exactly one target"):
        fit_thresholds(*dev)


GRID = """\
name: ladder
models:
  small: {model: fake/small, options: {script: SMALL}}
  large: {model: fake/large, options: {script: LARGE}}
judge: math_answer
configs:
  small: {strategy: self_consistency, params: {n: 3, model: small}}
  large: {strategy: self_consistency, params: {n: 1, temperature: 0, model: large}}
  ladder:
    strategy: escalate
    params:
      thresholds: ladder.json
      stages: LADDER
"""


async def test_calibration_through_the_sweep_writes_a_file_the_strategy_reads(tmp_path: Path) -> None:
    # small is right when it agrees ("agree" tasks), large is right on "split" tasks
    rows = [{"id": f"a{i}", "q": f"agree {i}?", "gold": 4} for i in range(4)]
    rows += [{"id": f"s{i}", "q": f"split {i}?", "gold": 9} for i in range(4)]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = GRID.replace("SMALL", json.dumps(SMALL)).replace("LARGE", json.dumps(LARGE))
    (tmp_path / "grid.yaml").write_text(text.replace("LADDER", json.dumps(LADDER)))
    spec = DatasetSpec(
        name="jsonl", path=str(tmp_path / "tasks.jsonl"), fields={"prompt": "q", "answer": "gold"}
    )  # type: ignore[arg-type]
    tasks = load_tasks(spec)
    grid = load_grid(tmp_path / "grid.yaml", calibrating="ladder")
    collected = await collect_calibration(
        grid, "ladder", tasks, tmp_path / "dev", store_url=str(tmp_path / "dev.db")
    )
    assert [r.correct for r in collected] == [[True, False]] * 4 + [[False, True]] * 4
    thresholds = calibrate_escalate(collected, ["agreement"], target_accuracy=1.0)
    assert thresholds.fitted["accuracy"] == 1.0 and thresholds.fitted["escalated"] == [1.0, 0.5]
    (tmp_path / "ladder.json").write_text(thresholds.model_dump_json())
    assert load_thresholds(tmp_path / "ladder.json").gates == ["agreement"]
    # a rerun of the calibration reads its rows back and runs nothing
    again = await collect_calibration(
        grid, "ladder", tasks, tmp_path / "dev", store_url=str(tmp_path / "other.db")
    )
    assert again == collected
    runs = await run_sweep(load_grid(tmp_path / "grid.yaml"), tasks, SweepConfig(out_dir=tmp_path / "test"))
    stats, _ = analyse(runs, {})
    by = {s.point: s for s in stats}
    assert by["ladder"].accuracy.mean == 1.0 > by["small"].accuracy.mean and by["large"].accuracy.mean == 0.5
    assert by["ladder"].tokens.mean < by["small"].tokens.mean + by["large"].tokens.mean


async def test_an_edited_ladder_is_calibrated_again_not_read_from_the_old_rows(tmp_path: Path) -> None:
    rows = [{"id": f"a{i}", "q": f"agree {i}?", "gold": 4} for i in range(2)]
    rows += [{"id": f"s{i}", "q": f"split {i}?", "gold": 9} for i in range(2)]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DatasetSpec(
        name="jsonl", path=str(tmp_path / "tasks.jsonl"), fields={"prompt": "q", "answer": "gold"}
    )  # type: ignore[arg-type]
    tasks = load_tasks(spec)
    text = GRID.replace("SMALL", json.dumps(SMALL)).replace("LARGE", json.dumps(LARGE))

    async def calibrate(ladder: list[dict[str, object]]) -> list[CalibrationRow]:
        (tmp_path / "grid.yaml").write_text(text.replace("LADDER", json.dumps(ladder)))
        grid = load_grid(tmp_path / "grid.yaml", calibrating="ladder")
        return await collect_calibration(
            grid, "ladder", tasks, tmp_path / "dev", store_url=str(tmp_path / "s.db")
        )

    first = await calibrate(LADDER)
    assert [len(r.signals) for r in first] == [2] * 4
    # the same ladder with a third rung: every task is measured again, with three stages
    longer = [{**LADDER[0]}, {**LADDER[1], "gate": "mean_logprob"}, {**LADDER[1]}]
    second = await calibrate(longer)
    assert [len(r.signals) for r in second] == [3] * 4
    assert second[0].ladder != first[0].ladder
    # and going back to the first ladder finds its own rows (no run: the store is gone)
    (tmp_path / "s.db").unlink()
    assert await calibrate(LADDER) == first
