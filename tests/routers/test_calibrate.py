"""Calibration: exact in-sample rates, recall, quality targets, the deferral curve, bisection, and
a held-out cascade run that lands within two points of its target deferral rate."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from forkpath import ConfigError, Task
from forkpath._cli._router import app
from forkpath.models import FakeModel
from forkpath.routers import (
    QueryRecord,
    auc_deferral,
    bisect_threshold,
    deferral_curve,
    load_router,
    make_router,
    read_records,
    record_queries,
    routed_fraction,
    threshold_for_quality,
    threshold_for_rate,
    threshold_for_recall,
    write_records,
)
from forkpath.routers._fit import calibrate_records, split_by_task
from forkpath.strategies._base import Context
from forkpath.strategies._cascade import cascade

from ._fakes import VaryingFake


def test_rate_thresholds_are_exact_in_sample_even_with_ties() -> None:
    scores = [0.1, 0.2, 0.2, 0.2, 0.5, 0.9, 0.9, 1.0]
    tau, chance = threshold_for_rate(scores, 0.25, "above")  # 2 of 8: 1.0 and one of the two 0.9s
    assert (tau, chance) == (0.9, 0.5)
    tau, chance = threshold_for_rate(scores, 0.5, "above")  # 4 of 8: everything from 0.5 up
    assert (tau, chance) == (0.5, 1.0)
    tau, chance = threshold_for_rate(scores, 0.375, "below")  # 3 of 8 lowest: 0.1 and two of three 0.2s
    assert tau == 0.2 and chance == pytest.approx(2 / 3)
    router = make_router({"name": "top1", "threshold": 0.0}).with_threshold(tau, at_threshold=chance)
    rows = [{"top1": s, "i": float(i)} for i in range(3000) for s in scores]
    assert routed_fraction(router, rows) == pytest.approx(0.375, abs=0.01)
    assert threshold_for_rate(scores, 0.0, "above") == (1.0, 0.0)
    assert threshold_for_rate(scores, 1.0, "below") == (1.0, 1.0)
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        threshold_for_rate(scores, 1.5, "above")


def test_recall_threshold_is_the_highest_that_keeps_the_recall() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.1, 0.6])
    labels = np.array([1, 1, 1, 0, 0, 1])
    assert threshold_for_recall(scores, labels, 0.75) == 0.6  # keeps 0.9, 0.8, 0.6 of the 4 positives
    assert threshold_for_recall(scores, labels, 1.0) == 0.3
    with pytest.raises(ConfigError, match="no positive labels"):
        threshold_for_recall(scores, np.zeros(6), 0.9)


def test_deferral_curve_quality_target_and_auc() -> None:
    # Scores are confidences: the two lowest are the queries the large model fixes.
    scores = [-2.0, -1.5, -0.5, -0.2, -0.1]
    small = [0, 0, 1, 1, 1]
    large = [1, 1, 1, 1, 0]
    curve = deferral_curve(scores, small, large, cost_small=0.25, cost_large=1.0, rates=[0, 0.4, 1.0])
    assert [(p.rate, p.quality, p.cost) for p in curve] == [
        (0.0, 0.6, 0.25),
        (0.4, 1.0, 0.65),
        (1.0, 0.8, 1.25),
    ]
    assert curve[1].threshold == -1.5
    area, random_area = auc_deferral(deferral_curve(scores, small, large, rates=np.linspace(0, 1, 6)))
    assert area > random_area == pytest.approx(0.7)
    point, reached = threshold_for_quality(scores, small, large, 0.45, delta=0.5)
    # margin sqrt(ln 2 / 10) = 0.263: quality 0.8 at rate 0.2 is the first whose bound reaches 0.45.
    assert reached and (point.rate, point.quality, point.threshold) == (0.2, 0.8, -2.0)
    point, reached = threshold_for_quality(scores, small, large, 0.99)
    assert not reached and point.rate == 1.0


async def test_bisection_converges_on_a_monotone_rate() -> None:
    async def realised(threshold: float) -> float:  # a closed loop stand-in: rate falls as tau rises
        return float(np.clip(1.0 - threshold / 4.0, 0.0, 1.0))

    tau, rate, history = await bisect_threshold(realised, 0.25, 0.0, 4.0, rounds=6)
    assert abs(rate - 0.25) <= 0.02 and tau == pytest.approx(3.0, abs=0.1)
    assert len(history) == 6 and history[0] == {"threshold": 2.0, "rate": 0.5}


class Verdict(BaseModel):
    passed: bool
    score: float


class ParityVerifier:
    """Stand-in tests: an answer passes when its task number is even (small) or always (large)."""

    async def verify(self, task: Task, candidate: str) -> Verdict:
        ok = candidate.startswith("big") or int(task.id.split("/")[1]) % 2 == 0
        return Verdict(passed=ok, score=float(ok))


def _rate_noise(rate: float, n_calibration: int, n_heldout: int) -> float:
    """Standard deviation of the held-out rate of a threshold set by an empirical quantile: the
    quantile's own noise plus the held-out fraction's (binomial), for continuous scores."""
    return float(np.sqrt(rate * (1 - rate) * (1 / n_calibration + 1 / n_heldout)))


@functools.lru_cache(maxsize=1)
def _synthetic_records(n: int, seed: int) -> list[QueryRecord]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 200, size=n)
    mean = -rng.gamma(2.0, 0.15, size=n)  # mean token logprob: mostly confident, a long doubtful tail
    low = mean - rng.gamma(2.0, 1.0, size=n)
    return [
        QueryRecord(
            task=f"s/{i}",
            features={
                "mean_logprob": float(mean[i]),
                "sum_logprob": float(mean[i] * lengths[i]),
                "q0_logprob": float(low[i]),
                "length": float(lengths[i]),
            },
            small_quality=float(rng.random() < np.exp(4 * mean[i])),
            large_quality=float(rng.random() < 0.8),
            small_tokens=int(lengths[i]),
            large_tokens=int(lengths[i]),
            small_seconds=1.0,
            large_seconds=3.0,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("rule", ["chow_mean", "chow_sum", {"name": "chow_quantile", "alpha": 0.0}])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_calibrated_rate_holds_within_two_points_on_a_held_out_split(rule: object, rate: float) -> None:
    records = _synthetic_records(40000, seed=3)
    router, report = calibrate_records(records, rule, rate=rate, holdout=0.5, seed=1)
    assert report.calibration_n == report.heldout_n == 20000
    assert report.calibration_rate == pytest.approx(rate, abs=1e-9)  # exact on the calibration split
    # 2 points is at least 4 standard deviations of the held-out rate at this size: a real check.
    assert 4 * _rate_noise(rate, 20000, 20000) <= 0.02
    assert abs(report.heldout["rate"] - rate) <= 0.02
    _, held = split_by_task(records, 0.5, seed=1)
    assert routed_fraction(router, [r.features for r in held]) == report.heldout["rate"]


async def test_a_saved_cascade_router_defers_live_exactly_as_calibrated(tmp_path: Path) -> None:
    tasks = [Task(id=f"q/{i}", prompt=f"question {i}?", kind="text") for i in range(1000)]
    small = VaryingFake("fake/small", default="a small answer")
    large = FakeModel("fake/large", default="big")
    records = await record_queries(small, large, tasks, ParityVerifier(), max_tokens=32)
    path = tmp_path / "queries.jsonl"
    assert write_records(path, records) == 1000
    assert read_records(path) == records
    assert np.std([r.features["mean_logprob"] for r in records]) > 0.1  # confidences differ by task
    router_file = tmp_path / "cascade.json"
    cli = CliRunner().invoke(
        app,
        [
            "calibrate",
            str(path),
            "--router",
            "chow_mean",
            "--rate",
            "0.3",
            "--holdout",
            "0.5",
            "--out",
            str(router_file),
            "--json",
        ],
    )
    assert cli.exit_code == 0, cli.output
    report = json.loads(cli.output)
    assert report["calibration_rate"] == pytest.approx(0.3, abs=1e-9)
    assert report["calibration_n"] == report["heldout_n"] == 500
    assert abs(report["heldout"]["rate"] - 0.3) <= 3 * _rate_noise(0.3, 500, 500)
    assert load_router(router_file).calibration.target == "rate=0.3"
    # The cascade strategy, run live with the saved file on the held-out tasks, makes exactly the
    # decisions calibration predicted: same features, same threshold, same rate.
    _, held = split_by_task(records, 0.5, seed=0)
    predicted = {r.task: load_router(router_file).decide(r.features).routed for r in held}
    strategy = cascade(router=str(router_file), max_tokens=32)
    context = Context({"small": small, "large": large})
    live = {t.id: (await strategy(t, context)).info["deferred"] for t in tasks if t.id in predicted}
    assert live == predicted
    assert sum(live.values()) / len(live) == pytest.approx(report["heldout"]["rate"])


def test_quality_target_and_learned_rule_on_query_records() -> None:
    rng = np.random.default_rng(5)
    records = []
    for i in range(400):
        confidence = float(rng.uniform(-2, 0))
        small_ok = rng.random() < np.exp(confidence)  # low confidence: the small answer fails more
        records.append(
            QueryRecord(
                task=f"q/{i}",
                features={
                    "mean_logprob": confidence,
                    "sum_logprob": 10 * confidence,
                    "length": 10.0,
                    **{f"q{a:g}_logprob": confidence for a in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)},
                },
                small_quality=float(small_ok),
                large_quality=1.0,
                small_tokens=10,
                large_tokens=10,
                small_seconds=1.0,
                large_seconds=4.0,
            )
        )
    router, report = calibrate_records(records, "chow_mean", quality=0.8, delta=0.1)
    assert report.curve[0].rate == 0.0 and report.curve[-1].rate == 1.0
    assert report.auc is not None and report.auc_random is not None and report.auc > report.auc_random
    routed = [router.decide(r.features).routed for r in records]
    achieved = np.mean([1.0 if d else r.small_quality for d, r in zip(routed, records, strict=True)])
    assert achieved >= 0.8 and router.calibration is not None
    learned, learned_report = calibrate_records(records, "logistic", rate=0.3, holdout=0.25)
    assert learned.name == "logistic" and learned.handover == "request"
    assert learned_report.calibration_rate == pytest.approx(0.3, abs=0.01)
    assert abs(learned_report.heldout["rate"] - 0.3) < 0.1
    with pytest.raises(ConfigError, match="exactly one target"):
        calibrate_records(records, "chow_mean", rate=0.2, quality=0.8)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["calibrate", str(tmp_path / "none.jsonl"), "--rate", "0.2"])
    assert missing.exit_code == 2 and "label file not found" in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "token"}\n')
    broken = runner.invoke(app, ["calibrate", str(bad), "--rate", "0.2"])
    assert broken.exit_code == 2 and "bad.jsonl:1" in broken.output and "Traceback" not in broken.output
    wrong = runner.invoke(
        app, ["label", "--small", "fake/a", "--large", "fake/b", "--tasks", "mbpp", "--out", "x"]
    )
    assert wrong.exit_code == 2 and "unknown task set 'mbpp'" in wrong.output
