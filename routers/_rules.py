"""Training-free routers: one feature compared with a threshold.

Token level (R2R's training-free variants): ``entropy`` (route when H ≥ τ), ``top1`` (when the
most likely token's probability is under p_min), ``margin`` (when p1 − p2 is under m). Segment
level (SplitReason's training-free trigger): ``window_entropy``. Request level (cascades, Gupta et
al. 2024): ``chow_sum``, ``chow_mean``, ``chow_quantile`` (defer when the answer's summed, mean
or α-quantile token log-probability is under t) and ``verdict`` (defer when a verifier's score is
under t). ``threshold`` builds any other one-feature rule.

Default thresholds are starting points only; calibrate them to a target rate on your own data
(``forkpath router calibrate``), because they depend on the models, the task and the estimator.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from forkpath._errors import ConfigError
from forkpath._params import Probability, Threshold
from forkpath._registry import Registered
from forkpath.routers._base import Decision, Direction, Handover, Router, routers
from forkpath.routers._features import Estimator, quantile_feature


class Calibration(BaseModel):
    """How a router's threshold was set (kept in its file, shown by the CLI)."""

    model_config = ConfigDict(extra="forbid")

    target: str
    """What was asked for, e.g. ``rate=0.15``, ``recall=0.95`` or ``quality=0.62``."""
    rate: float
    """The routing (deferral) rate the threshold gives on the calibration data."""
    n: int
    """Units (tokens or queries) in the calibration data."""
    estimator: Estimator | None = None
    """Entropy estimator of the features, when token entropies are involved."""
    source: str | None = None
    """Where the calibration data came from (a label file, a benchmark split)."""
    details: dict[str, float] = Field(default_factory=dict)
    """Other numbers of the calibration (recall, quality, lower bound ...)."""


class ScoreRouter(BaseModel):
    """Base of the routers here: a score, a threshold, a direction and a handover."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """Name shown in traces (the registry name it was made with)."""
    threshold: float
    """Scores at/above (``above``) or under (``below``) it route."""
    direction: Direction = "above"
    """Whether high or low scores route."""
    handover: Handover = "token"
    """What a positive decision hands to the large model."""
    at_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Probability of routing when the score equals the threshold exactly (ties of discrete
    scores; algorithms.md §0.3.4). None: ``above`` routes at equality, ``below`` does not.
    The coin is a hash of the features, so decisions replay exactly."""
    calibration: Calibration | None = None
    """How the threshold was set, if it was calibrated."""

    _registered: Registered | None = PrivateAttr(default=None)

    @property
    def registered(self) -> Registered | None:
        """The registry name and arguments it was created with (None when loaded from a file)."""
        return self._registered

    @registered.setter
    def registered(self, value: Registered | None) -> None:
        self._registered = value

    @property
    def features(self) -> tuple[str, ...]:
        raise NotImplementedError

    def score(self, features: Mapping[str, float]) -> float:
        raise NotImplementedError

    def routes(self, score: float, features: Mapping[str, float] | None = None) -> bool:
        """Whether ``score`` routes under this threshold and direction."""
        if score == self.threshold:
            default = 1.0 if self.direction == "above" else 0.0
            chance = default if self.at_threshold is None else self.at_threshold
            if chance in (0.0, 1.0):
                return chance == 1.0
            return _coin(features or {}) < chance
        return score > self.threshold if self.direction == "above" else score < self.threshold

    def decide(self, features: Mapping[str, float]) -> Decision:
        """The decision for ``features`` (synchronous; :meth:`route` is the protocol's async form)."""
        missing = [f for f in self.features if f not in features]
        if missing:
            raise ConfigError(
                f"router {self.name!r} needs feature(s) {', '.join(missing)}, which were not given"
            )
        score = self.score(features)
        handover: Handover = self.handover if self.routes(score, features) else "keep"
        return Decision(handover=handover, score=score, threshold=self.threshold)

    async def route(self, features: Mapping[str, float]) -> Decision:
        return self.decide(features)

    def with_threshold(self, threshold: float, **calibration: Any) -> Router:
        update: dict[str, Any] = {"threshold": float(threshold)}
        if "at_threshold" in calibration:
            update["at_threshold"] = calibration.pop("at_threshold")
        if calibration:
            update["calibration"] = Calibration(**calibration)
        made: Router = self.model_copy(update=update)
        return made


class ThresholdRouter(ScoreRouter):
    """Route on one feature: ``features[feature]`` compared with ``threshold``."""

    kind: Literal["threshold"] = "threshold"
    feature: str
    """The feature compared, e.g. ``entropy``, ``top1``, ``mean_logprob``."""

    @property
    def features(self) -> tuple[str, ...]:
        return (self.feature,)

    def score(self, features: Mapping[str, float]) -> float:
        return float(features[self.feature])


def _coin(features: Mapping[str, float]) -> float:
    """A uniform number in [0, 1) fixed by the features (replayable tie-breaking)."""
    digest = hashlib.sha256()
    for key in sorted(features):
        digest.update(key.encode())
        digest.update(struct.pack("<d", float(features[key])))
    return int.from_bytes(digest.digest()[:8], "little") / 2**64


@routers.register("threshold")
def threshold(
    feature: Annotated[str, Field(min_length=1)],
    threshold: Threshold,
    direction: Direction = "above",
    handover: Handover = "token",
) -> Router:
    """Any one-feature rule, e.g. ``{"name": "threshold", "feature": "lp2", "threshold": -1.5}``."""
    return ThresholdRouter(
        name="threshold", feature=feature, threshold=threshold, direction=direction, handover=handover
    )


@routers.register("entropy")
def entropy(threshold: Threshold = 0.45, handover: Handover = "token") -> Router:
    """Route when the small model's next-token entropy (nats) is at least ``threshold``.

    0.45 is R2R's default for full-vocabulary entropy of its own model pair; recalibrate.
    """
    return ThresholdRouter(name="entropy", feature="entropy", threshold=threshold, handover=handover)


@routers.register("top1")
def top1(threshold: Threshold = 0.5, handover: Handover = "token") -> Router:
    """Route when the most likely next token's probability is under ``threshold``."""
    return ThresholdRouter(
        name="top1", feature="top1", threshold=threshold, direction="below", handover=handover
    )


@routers.register("margin")
def margin(threshold: Threshold = 0.2, handover: Handover = "token") -> Router:
    """Route when the top-1 probability exceeds the top-2 by less than ``threshold``."""
    return ThresholdRouter(
        name="margin", feature="margin", threshold=threshold, direction="below", handover=handover
    )


@routers.register("window_entropy")
def window_entropy(threshold: Threshold = 1.0, handover: Handover = "segment") -> Router:
    """Hand over a segment when the mean entropy over the recent window reaches ``threshold``."""
    return ThresholdRouter(
        name="window_entropy", feature="window_entropy", threshold=threshold, handover=handover
    )


@routers.register("chow_sum")
def chow_sum(threshold: Threshold = -10.0) -> Router:
    """Defer the request when the answer's summed token log-probability is under ``threshold``
    (Chow-Sum; it defers long answers preferentially)."""
    return ThresholdRouter(
        name="chow_sum", feature="sum_logprob", threshold=threshold, direction="below", handover="request"
    )


@routers.register("chow_mean")
def chow_mean(threshold: Threshold = -0.3) -> Router:
    """Defer the request when the answer's mean token log-probability is under ``threshold``."""
    return ThresholdRouter(
        name="chow_mean", feature="mean_logprob", threshold=threshold, direction="below", handover="request"
    )


@routers.register("chow_quantile")
def chow_quantile(alpha: Probability = 0.1, threshold: Threshold = -2.0) -> Router:
    """Defer when the ``alpha`` quantile of the answer's token log-probabilities is under
    ``threshold`` (α=0: the least likely token; catches "one bad token")."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"chow_quantile: alpha must be in [0, 1], got {alpha}")
    return ThresholdRouter(
        name="chow_quantile",
        feature=quantile_feature(alpha),
        threshold=threshold,
        direction="below",
        handover="request",
    )


@routers.register("verdict")
def verdict(threshold: Threshold = 1.0) -> Router:
    """Defer when the verifier's score of the small model's answer is under ``threshold``
    (1.0: defer unless every test passed)."""
    return ThresholdRouter(
        name="verdict", feature="verdict", threshold=threshold, direction="below", handover="request"
    )


@routers.register("file")
def file(path: Annotated[str, Field(min_length=1)]) -> Router:
    """A router saved by ``forkpath router calibrate`` (or :func:`save_router`)."""
    from forkpath.routers._base import load_router

    return load_router(path)
