"""From label records to a calibrated router, with a held-out check (``forkpath router calibrate``).

Token labels (``router label --kind token``) calibrate token- and segment-level routers: a
training-free rule gets the threshold that routes a target share of tokens; the learned
(logistic) router is trained on the calibration split and its threshold set for a target recall
of the divergent tokens (R2R's rule) or a target rate. Query records (``--kind query``)
calibrate cascades: a target deferral rate, or a target quality (the smallest deferral rate
whose Hoeffding lower bound reaches it); the learned post-hoc rule predicts whether the large
model's answer is better. The split is by task, so held-out numbers are for unseen prompts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from forkpath._errors import ConfigError
from forkpath.routers._base import Router, RouterSpec, make_router
from forkpath.routers._calibrate import (
    CurvePoint,
    auc_deferral,
    deferral_curve,
    threshold_for_quality,
    threshold_for_rate,
    threshold_for_recall,
)
from forkpath.routers._features import ANSWER_QUANTILES, TOKEN_FEATURES, quantile_feature
from forkpath.routers._label import QueryRecord, TokenLabel
from forkpath.routers._learned import train_logistic

ANSWER_INPUTS: tuple[str, ...] = (
    "length",
    "sum_logprob",
    "mean_logprob",
    *(quantile_feature(a) for a in ANSWER_QUANTILES),
)
"""Features of the learned post-hoc deferral rule (Post-Hoc-Quantile: quantiles, sum, mean)."""

TOKEN_RATES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
"""Routing rates at which the token-level curve (rate vs recall of divergent tokens) is shown."""


class CalibrationReport(BaseModel):
    """What calibration did and how the router does on held-out data."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["token", "query"]
    router: str
    target: str
    threshold: float
    calibration_n: int
    """Units (tokens or queries) calibrated on."""
    calibration_rate: float
    heldout_n: int = 0
    heldout: dict[str, float] = Field(default_factory=dict)
    """Held-out numbers: ``rate``; tokens: ``recall``, ``precision``; queries: ``quality``, ``cost``."""
    curve: list[CurvePoint] = Field(default_factory=list)
    """Queries: quality and relative cost per deferral rate. Tokens: recall (as ``quality``) per rate."""
    auc: float | None = None
    """Queries: AUC-DF of the rule on the calibration split."""
    auc_random: float | None = None
    """Queries: AUC-DF of random deferral (the straight line)."""


def split_by_task(
    records: Sequence[TokenLabel | QueryRecord], holdout: float, seed: int = 0
) -> tuple[list[Any], list[Any]]:
    """Calibration and held-out records; every task lands wholly on one side."""
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout}")
    tasks = sorted({r.task for r in records})
    random.Random(seed).shuffle(tasks)
    held = set(tasks[: round(holdout * len(tasks))])
    calib = [r for r in records if r.task not in held]
    if not calib:
        raise ConfigError("nothing left to calibrate on after the held-out split")
    return calib, [r for r in records if r.task in held]


def _kind(records: Sequence[TokenLabel | QueryRecord]) -> Literal["token", "query"]:
    kinds = {r.type for r in records}
    if len(kinds) != 1:
        raise ConfigError("a label file must hold token labels or query records, not both")
    return "token" if kinds == {"token"} else "query"


def _labels(records: Sequence[TokenLabel | QueryRecord]) -> np.ndarray:
    """Positive labels: divergent tokens, or queries where the large answer is better."""
    return np.array(
        [r.label if isinstance(r, TokenLabel) else int(r.large_quality > r.small_quality) for r in records]
    )


def _rows(records: Sequence[TokenLabel | QueryRecord]) -> list[dict[str, float]]:
    return [r.features for r in records]


def calibrate_records(
    records: Sequence[TokenLabel | QueryRecord],
    router: RouterSpec = "entropy",
    *,
    rate: float | None = None,
    recall: float | None = None,
    quality: float | None = None,
    holdout: float = 0.0,
    seed: int = 0,
    delta: float = 0.1,
    l2: float = 1.0,
    estimator: str | None = "full",
    source: str | None = None,
) -> tuple[Router, CalibrationReport]:
    """Calibrate ``router`` (or train ``"logistic"``) on ``records`` for exactly one target.

    Args:
        records: token labels or query records (:func:`read_records`).
        router: a router spec, or ``"logistic"`` to train the learned router.
        rate: target routing / deferral rate.
        recall: target share of positive labels routed (divergent tokens; queries the large
            model answers better).
        quality: target cascade quality (queries only).
        holdout: share of tasks kept aside to check the calibrated router.
        seed: seed of the split.
        delta: confidence of the quality bound.
        l2: penalty of the learned router.
        estimator: entropy estimator the token features were computed with (recorded).
        source: where the records came from (recorded in the router file).
    """
    targets = {"rate": rate, "recall": recall, "quality": quality}
    given = {k: v for k, v in targets.items() if v is not None}
    if len(given) != 1:
        raise ConfigError("give exactly one target: rate, recall or quality")
    ((target_name, target_value),) = given.items()
    kind = _kind(records)
    if target_name == "quality" and kind != "query":
        raise ConfigError("a quality target needs query records (router label --kind query)")
    calib, held = split_by_task(records, holdout, seed)
    labels = _labels(calib)
    if router == "logistic":
        inputs = TOKEN_FEATURES if kind == "token" else ANSWER_INPUTS
        made: Router = train_logistic(
            _rows(calib),
            labels.tolist(),
            inputs=inputs,
            handover="token" if kind == "token" else "request",
            l2=l2,
        )
    else:
        made = make_router(router)
    scores = np.array([made.score(r) for r in _rows(calib)])
    chance: float | None
    if target_name == "rate":
        tau, chance = threshold_for_rate(scores, target_value, made.direction)
    elif target_name == "recall":
        signed = scores if made.direction == "above" else -scores
        tau = threshold_for_recall(signed, labels, target_value)
        tau, chance = (tau, None) if made.direction == "above" else (-tau, 1.0)
    else:
        q_small = [r.small_quality for r in calib]
        q_large = [r.large_quality for r in calib]
        point, _ = threshold_for_quality(
            scores, q_small, q_large, target_value, direction=made.direction, delta=delta
        )
        tau, chance = point.threshold, 1.0 if point.rate > 0 else 0.0
    made = made.with_threshold(tau, at_threshold=chance)
    routed = np.array([made.decide(r).routed for r in _rows(calib)])
    details: dict[str, float] = {}
    if labels.sum():
        details["recall"] = float(routed[labels == 1].mean())
    made = made.with_threshold(
        tau,
        at_threshold=chance,
        target=f"{target_name}={target_value:g}",
        rate=float(routed.mean()),
        n=len(calib),
        estimator=estimator if kind == "token" else None,
        source=source,
        details=details,
    )
    report = CalibrationReport(
        kind=kind,
        router=made.name,
        target=f"{target_name}={target_value:g}",
        threshold=tau,
        calibration_n=len(calib),
        calibration_rate=float(routed.mean()),
    )
    if kind == "query":
        _query_curve(report, made, calib)
    else:
        _token_curve(report, made, calib, labels)
    if held:
        report.heldout_n = len(held)
        report.heldout = _evaluate(made, held)
    return made, report


def _evaluate(router: Router, records: Sequence[TokenLabel | QueryRecord]) -> dict[str, float]:
    routed = np.array([router.decide(r.features).routed for r in records])
    labels = _labels(records)
    out = {"rate": float(routed.mean())}
    if labels.sum():
        out["recall"] = float(routed[labels == 1].mean())
    if routed.sum():
        out["precision"] = float(labels[routed].mean())
    if isinstance(records[0], QueryRecord):
        queries = [r for r in records if isinstance(r, QueryRecord)]
        quality = [q.large_quality if d else q.small_quality for q, d in zip(queries, routed, strict=True)]
        cost = [
            q.small_seconds + (q.large_seconds if d else 0.0) for q, d in zip(queries, routed, strict=True)
        ]
        out["quality"] = float(np.mean(quality))
        out["small_quality"] = float(np.mean([q.small_quality for q in queries]))
        out["large_quality"] = float(np.mean([q.large_quality for q in queries]))
        large = float(np.mean([q.large_seconds for q in queries]))
        out["cost_vs_large"] = float(np.mean(cost)) / large if large > 0 else 0.0
    return out


def _query_curve(report: CalibrationReport, router: Router, queries: Sequence[Any]) -> None:
    scores = [router.score(q.features) for q in queries]
    large = float(np.mean([q.large_seconds for q in queries])) or 1.0
    report.curve = deferral_curve(
        scores,
        [q.small_quality for q in queries],
        [q.large_quality for q in queries],
        direction=router.direction,
        cost_small=[q.small_seconds / large for q in queries],
        cost_large=[q.large_seconds / large for q in queries],
    )
    report.auc, report.auc_random = auc_deferral(report.curve)


def _token_curve(
    report: CalibrationReport, router: Router, tokens: Sequence[Any], labels: np.ndarray
) -> None:
    scores = np.array([router.score(t.features) for t in tokens])
    for target in TOKEN_RATES:
        tau, chance = threshold_for_rate(scores, target, router.direction)
        at = router.with_threshold(tau, at_threshold=chance)
        routed = np.array([at.decide(t.features).routed for t in tokens])
        caught = float(routed[labels == 1].mean()) if labels.sum() else 0.0
        report.curve.append(
            CurvePoint(rate=float(routed.mean()), threshold=tau, quality=caught, cost=float(routed.mean()))
        )
