"""The learned router: logistic regression on the small model's features, in numpy.

R2R trains a neural classifier on the small model's hidden state, chosen-token embedding and
top-100 logits. We have no hidden states through llama.cpp and want no torch, so this is its
small cousin: a logistic regression on the features of :mod:`forkpath.routers._features`
(entropy, top-1, margin, the top-5 log-probabilities, window statistics, position and the kind
of token chosen), standardised, with R2R's class weighting (positives weighted n_neg/n_pos) and
an L2 penalty, fitted by Newton's method. The output is the probability that handing this token
to the large model matters; the threshold is then set for a target recall or rate
(:mod:`forkpath.routers._calibrate`). Cascades use the same class on answer features (the
post-hoc deferral rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, TypeAdapter, model_validator

from forkpath._errors import ConfigError
from forkpath.routers._base import Handover
from forkpath.routers._rules import ScoreRouter, ThresholdRouter


class LogisticRouter(ScoreRouter):
    """Route when σ(w·standardise(x) + b) reaches ``threshold``."""

    kind: Literal["logistic"] = "logistic"
    name: str = "logistic"
    inputs: list[str]
    """Feature names, in the order of ``weights``."""
    weights: list[float]
    bias: float
    mean: list[float]
    """Per-feature mean of the training data (standardisation)."""
    scale: list[float]
    """Per-feature standard deviation of the training data (1 where it was constant)."""
    threshold: float = 0.5

    @model_validator(mode="after")
    def _same_lengths(self) -> LogisticRouter:
        sizes = {len(self.inputs), len(self.weights), len(self.mean), len(self.scale)}
        if len(sizes) != 1:
            raise ValueError("inputs, weights, mean and scale must have the same length")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scale entries must be positive")
        return self

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    def score(self, features: Mapping[str, float]) -> float:
        x = np.fromiter((features[name] for name in self.inputs), dtype=np.float64, count=len(self.inputs))
        return float(self.scores(x[None, :])[0])

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of many rows at once (columns in ``inputs`` order)."""
        z = ((matrix - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.weights) + self.bias
        return _sigmoid(z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the tanh form never overflows


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 1.0,
    balanced: bool = True,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> tuple[np.ndarray, float]:
    """Weighted, L2-penalised logistic regression by Newton's method.

    Args:
        x: ``(n, d)`` features (standardise them first: the penalty assumes comparable scales).
        y: ``(n,)`` labels in {0, 1}.
        l2: penalty on the weights (not the bias), in units of the total sample weight.
        balanced: weight positives by n_neg/n_pos (R2R's ``pos_weight``), so a rare label is learned.
        max_iter: Newton steps at most.
        tol: stop when no parameter moves more than this.

    Returns:
        The weights and the bias.
    """
    y = np.asarray(y, dtype=np.float64)
    n_pos = float(y.sum())
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ConfigError(f"features and labels disagree: {x.shape} rows vs {y.shape} labels")
    if n_pos == 0 or n_pos == y.size:
        raise ConfigError(
            f"cannot learn a router: all {y.size} labels are {int(y[0]) if y.size else 'absent'}"
        )
    weight = np.where(y == 1, (y.size - n_pos) / n_pos if balanced else 1.0, 1.0)
    weight = weight / weight.mean()
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    params = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(design @ params)
        grad = design.T @ (weight * (p - y)) + penalty * params
        curvature = weight * p * (1.0 - p)
        hessian = design.T @ (design * curvature[:, None]) + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, grad)
        params -= step
        if float(np.abs(step).max()) < tol:
            break
    return params[:-1], float(params[-1])


def feature_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    """Rows of named features as an ``(n, len(names))`` array; a missing name is a ConfigError."""
    try:
        return np.array([[float(r[name]) for name in names] for r in rows], dtype=np.float64).reshape(
            len(rows), len(names)
        )
    except KeyError as e:
        raise ConfigError(f"feature {e.args[0]!r} is missing from the training rows") from None


def train_logistic(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[int],
    *,
    inputs: Sequence[str],
    handover: Handover = "token",
    l2: float = 1.0,
    name: str = "logistic",
) -> LogisticRouter:
    """Fit a :class:`LogisticRouter` on named feature rows; its threshold is 0.5 until calibrated."""
    x = feature_matrix(rows, inputs)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    weights, bias = fit_logistic((x - mean) / scale, np.asarray(labels), l2=l2)
    return LogisticRouter(
        name=name,
        inputs=list(inputs),
        weights=[float(w) for w in weights],
        bias=bias,
        mean=[float(m) for m in mean],
        scale=[float(s) for s in scale],
        handover=handover,
    )


RouterFile = Annotated[ThresholdRouter | LogisticRouter, Field(discriminator="kind")]
"""What a router file holds: one of the built-in router types, told apart by ``kind``."""
router_file_adapter: TypeAdapter[RouterFile] = TypeAdapter(RouterFile)
