"""Calibrating a router's threshold to a target rate, recall or quality (algorithms.md §0.3).

- :func:`threshold_for_rate`: τ is the empirical quantile of the scores at the target rate, with
  the tie at the boundary split by a probability so the rate is exact on the calibration data.
- :func:`threshold_for_recall`: R2R's rule for learned routers: the highest threshold (fewest
  handovers) that still catches ``min_recall`` of the positive labels.
- :func:`deferral_curve` / :func:`threshold_for_quality`: for cascades, the cost-quality curve
  over deferral rates, its area (AUC-DF) against random deferral, and the smallest rate whose
  quality's Hoeffding lower bound reaches a target.
- :func:`bisect_threshold`: token-level routing changes the trajectory it is measured on, so the
  open-loop quantile is refined by running and bisecting (2-4 rounds).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from forkpath._errors import ConfigError
from forkpath.routers._base import Direction, Router


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"a target rate must be in [0, 1], got {rate}")


def threshold_for_rate(
    scores: Sequence[float] | np.ndarray, rate: float, direction: Direction
) -> tuple[float, float]:
    """Threshold and boundary probability that route exactly ``rate`` of ``scores``.

    Returns:
        ``(threshold, at_threshold)``: route scores strictly beyond the threshold, and a score
        equal to it with probability ``at_threshold``.
    """
    _check_rate(rate)
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ConfigError("cannot calibrate on no scores")
    # Order so the ones that route first come first: high scores for "above", low for "below".
    ordered = np.sort(values)[::-1] if direction == "above" else np.sort(values)
    wanted = rate * values.size
    tau = float(ordered[max(math.ceil(wanted) - 1, 0)])
    beyond = int((values > tau).sum() if direction == "above" else (values < tau).sum())
    equal = int((values == tau).sum())
    chance = min(max((wanted - beyond) / equal, 0.0), 1.0)
    return tau, chance


def threshold_for_recall(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, min_recall: float
) -> float:
    """The highest threshold whose ``score >= threshold`` rule keeps ``min_recall`` of the positives."""
    if not 0.0 < min_recall <= 1.0:
        raise ConfigError(f"min_recall must be in (0, 1], got {min_recall}")
    values = np.asarray(scores, dtype=np.float64)
    positives = np.sort(values[np.asarray(labels) == 1])
    if positives.size == 0:
        raise ConfigError("cannot calibrate for recall: no positive labels")
    # Keep positives[k:] with k as large as the recall allows.
    k = math.floor((1.0 - min_recall) * positives.size + 1e-9)
    return float(positives[k])


def routed_fraction(router: Router, rows: Sequence[Mapping[str, float]]) -> float:
    """Fraction of ``rows`` the router hands over (its rate on held-out data)."""
    if not rows:
        raise ConfigError("cannot measure a rate on no rows")
    return sum(1 for r in rows if router.decide(r).routed) / len(rows)


class CurvePoint(BaseModel):
    """One point of a cascade's cost-quality curve."""

    model_config = ConfigDict(extra="forbid")

    rate: float
    """Fraction of queries deferred to the large model."""
    threshold: float
    """Score threshold that defers this fraction on the calibration data."""
    quality: float
    """Mean quality (e.g. pass@1) of the answers returned."""
    cost: float
    """Mean cost per query: the small model always, the large one when deferred."""
    lower_bound: float | None = None
    """Hoeffding lower confidence bound of ``quality`` (set by :func:`threshold_for_quality`)."""


def _defer_order(scores: np.ndarray, direction: Direction) -> np.ndarray:
    """Queries in the order a threshold rule defers them (most doubtful first; ties by index)."""
    keyed = -scores if direction == "above" else scores
    return np.argsort(keyed, kind="stable")


def _curve_arrays(
    scores: Sequence[float] | np.ndarray,
    q_small: Sequence[float] | np.ndarray,
    q_large: Sequence[float] | np.ndarray,
    cost_small: Sequence[float] | float,
    cost_large: Sequence[float] | float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    n = s.size
    if n == 0:
        raise ConfigError("cannot build a deferral curve from no queries")
    qs, ql = np.asarray(q_small, dtype=np.float64), np.asarray(q_large, dtype=np.float64)
    cs = np.broadcast_to(np.asarray(cost_small, dtype=np.float64), (n,))
    cl = np.broadcast_to(np.asarray(cost_large, dtype=np.float64), (n,))
    if qs.size != n or ql.size != n:
        raise ConfigError(f"{n} scores but {qs.size} small and {ql.size} large quality values")
    return s, qs, ql, cs, cl


def deferral_curve(
    scores: Sequence[float],
    q_small: Sequence[float],
    q_large: Sequence[float],
    *,
    direction: Direction = "below",
    cost_small: Sequence[float] | float = 1.0,
    cost_large: Sequence[float] | float = 1.0,
    rates: Sequence[float] | None = None,
) -> list[CurvePoint]:
    """Quality and cost of the cascade at each deferral rate (default 0, 0.1, ..., 1).

    Args:
        scores: the router's score of each query's small-model answer.
        q_small, q_large: the quality of each query's small and large answers (e.g. 0/1 passed).
        direction: ``below`` when low scores defer (confidences), ``above`` for learned benefits.
        cost_small, cost_large: per-query cost of each model (a number or one per query).
        rates: the deferral rates to evaluate.
    """
    s, qs, ql, cs, cl = _curve_arrays(scores, q_small, q_large, cost_small, cost_large)
    order = _defer_order(s, direction)
    points = []
    for rate in rates if rates is not None else np.linspace(0.0, 1.0, 11):
        _check_rate(float(rate))
        m = round(float(rate) * s.size)
        deferred = np.zeros(s.size, dtype=bool)
        deferred[order[:m]] = True
        tau = float(s[order[m - 1]]) if m else (float(s.max()) if direction == "above" else float(s.min()))
        points.append(
            CurvePoint(
                rate=m / s.size,
                threshold=tau,
                quality=float(np.where(deferred, ql, qs).mean()),
                cost=float((cs + np.where(deferred, cl, 0.0)).mean()),
            )
        )
    return points


def auc_deferral(points: Sequence[CurvePoint]) -> tuple[float, float]:
    """Area under the quality-vs-rate curve (AUC-DF) and that of random deferral (the straight
    line from small-only to large-only quality), for comparing rules."""
    ordered = sorted(points, key=lambda p: p.rate)
    if len(ordered) < 2 or ordered[0].rate != 0.0 or ordered[-1].rate != 1.0:
        raise ConfigError("AUC-DF needs curve points at rates 0 and 1")
    xs = np.array([p.rate for p in ordered])
    ys = np.array([p.quality for p in ordered])
    area = float(((ys[1:] + ys[:-1]) / 2 * np.diff(xs)).sum())
    return area, (ordered[0].quality + ordered[-1].quality) / 2


def hoeffding_margin(n: int, delta: float) -> float:
    """Half-width of a one-sided Hoeffding bound for a mean of ``n`` values in [0, 1]."""
    return math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def threshold_for_quality(
    scores: Sequence[float] | np.ndarray,
    q_small: Sequence[float] | np.ndarray,
    q_large: Sequence[float] | np.ndarray,
    target: float,
    *,
    direction: Direction = "below",
    delta: float = 0.1,
    cost_small: Sequence[float] | float = 1.0,
    cost_large: Sequence[float] | float = 1.0,
) -> tuple[CurvePoint, bool]:
    """The smallest deferral rate whose quality lower bound reaches ``target`` (§0.3.5).

    Quality values must lie in [0, 1]. The bound is the calibration quality minus a one-sided
    Hoeffding margin at confidence ``1 - delta``. Returns the point and whether the target was
    reached; when it was not, the point is "defer everything" (the best the cascade can do).
    """
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    s, qs, ql, cs, cl = _curve_arrays(scores, q_small, q_large, cost_small, cost_large)
    margin = hoeffding_margin(s.size, delta)
    order = _defer_order(s, direction)
    gain = (ql - qs)[order]
    quality = qs.mean() + np.concatenate([[0.0], np.cumsum(gain)]) / s.size
    extra = np.concatenate([[0.0], np.cumsum(cl[order])]) / s.size
    reached = np.flatnonzero(quality - margin >= target)
    m = int(reached[0]) if reached.size else s.size
    tau = float(s[order[m - 1]]) if m else (float(s.max()) if direction == "above" else float(s.min()))
    point = CurvePoint(
        rate=m / s.size,
        threshold=tau,
        quality=float(quality[m]),
        cost=float(cs.mean() + extra[m]),
        lower_bound=float(quality[m] - margin),
    )
    return point, bool(reached.size)


async def bisect_threshold(
    measure: Callable[[float], Awaitable[float]],
    target_rate: float,
    low: float,
    high: float,
    *,
    direction: Direction = "above",
    rounds: int = 4,
) -> tuple[float, float, list[dict[str, Any]]]:
    """Refine a token-level threshold in closed loop: run, measure the realised rate, bisect.

    Args:
        measure: runs the strategy with a threshold and returns the realised routing rate.
        target_rate: the rate wanted.
        low, high: a bracket of thresholds (e.g. the open-loop quantile ± a margin).
        direction: the router's direction (``above``: a higher threshold routes less).
        rounds: how many runs.

    Returns:
        The threshold whose realised rate came closest, that rate, and every round's record.
    """
    _check_rate(target_rate)
    if rounds < 1:
        raise ConfigError(f"bisection needs at least one round, got {rounds}")
    history: list[dict[str, Any]] = []
    best: tuple[float, float] | None = None
    for _ in range(rounds):
        mid = (low + high) / 2
        rate = await measure(mid)
        history.append({"threshold": mid, "rate": rate})
        if best is None or abs(rate - target_rate) < abs(best[1] - target_rate):
            best = (mid, rate)
        # "above": raising the threshold lowers the rate; "below": raising it raises the rate.
        too_many = rate > target_rate
        if (direction == "above") == too_many:
            low = mid
        else:
            high = mid
    assert best is not None
    return best[0], best[1], history
