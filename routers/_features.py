"""Features routers read: the small model's uncertainty at a token, over a window, over an answer.

Token features come from the small model's next-token distribution at one position, either the
whole vocabulary (local models: :func:`summarize_distribution`) or the top-k log-probabilities an
API returns (:func:`summarize_top`). Entropies are in nats; which estimator produced ``entropy``
matters (algorithms.md §0.2): a threshold is only valid for the estimator it was calibrated with,
so routers record it and strategies check it.

Answer features (for cascades) summarise the token log-probabilities of a whole answer: the
Chow-Sum, Chow-Average and Chow-Quantile scores of Gupta et al. (2024).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Literal

import numpy as np

from forkpath.models import GenerateResult, entropy_lower, entropy_renorm

Estimator = Literal["full", "lower", "renorm"]
"""How ``entropy`` is computed: the full distribution, or H_lower / H_renorm from the top-k."""

TOP_VALUES = 5
"""How many of the largest log-probabilities are features (``lp1`` .. ``lp5``)."""

TOKEN_FEATURES: tuple[str, ...] = (
    "entropy",
    "top1",
    "margin",
    "logprob",
    *(f"lp{i}" for i in range(1, TOP_VALUES + 1)),
    "window_entropy",
    "window_max_entropy",
    "window_min_top1",
    "position",
    "is_newline",
    "is_space",
    "is_digit",
    "is_alpha",
    "is_punct",
)
"""Every token feature, in the order a learned router reads them by default."""

ANSWER_QUANTILES: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
"""The Chow-Quantile grid computed for every answer (0: the least likely token, 1: the most)."""

EMPTY_ANSWER_LOGPROB = -30.0
"""Stand-in for the mean and quantiles of an empty answer: nothing said means nothing to trust."""

FLOOR_LOGPROB = -30.0
"""Log-probabilities below this are clipped, so ``-inf`` never reaches a router or a JSON file."""


def quantile_feature(alpha: float) -> str:
    """The feature name of the ``alpha`` quantile of an answer's token log-probabilities."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"quantile alpha must be in [0, 1], got {alpha}")
    return f"q{alpha:g}_logprob"


class UncertaintyWindow:
    """Entropy and top-1 probability of the last ``size`` positions (SplitReason-style triggers)."""

    def __init__(self, size: int = 8) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        self.entropies: deque[float] = deque(maxlen=size)
        self.top1s: deque[float] = deque(maxlen=size)

    def push(self, entropy: float, top1: float) -> dict[str, float]:
        """Add one position; return the window's statistics including it."""
        self.entropies.append(entropy)
        self.top1s.append(top1)
        return {
            "window_entropy": sum(self.entropies) / len(self.entropies),
            "window_max_entropy": max(self.entropies),
            "window_min_top1": min(self.top1s),
        }

    def clear(self) -> None:
        """Forget the history (after a handover, uncertainty is measured afresh)."""
        self.entropies.clear()
        self.top1s.clear()


def summarize_distribution(logprobs: np.ndarray, k: int = TOP_VALUES) -> tuple[list[float], float]:
    """The ``k`` largest log-probabilities (descending) and the entropy of a full distribution."""
    k = min(k, logprobs.shape[0])
    top = np.partition(logprobs, -k)[-k:]
    probs = np.exp(logprobs)
    return sorted((float(x) for x in top), reverse=True), float(-(probs * logprobs).sum())


def summarize_top(top_logprobs: Sequence[float], estimator: Estimator = "lower") -> tuple[list[float], float]:
    """Sorted top-k log-probabilities and the entropy estimate from them (no full distribution)."""
    values = sorted((max(float(x), FLOOR_LOGPROB) for x in top_logprobs), reverse=True)
    if not values:
        return [], 0.0
    if estimator == "renorm":
        return values, entropy_renorm(values)
    if estimator == "lower":
        return values, entropy_lower(values)
    raise ValueError("the 'full' entropy estimator needs the full distribution")


def token_class(text: str) -> dict[str, float]:
    """Cheap stand-in for R2R's token embedding: what kind of text the chosen token is."""
    stripped = text.strip()
    return {
        "is_newline": float("\n" in text),
        "is_space": float(bool(text) and not stripped),
        "is_digit": float(bool(stripped) and any(c.isdigit() for c in stripped)),
        "is_alpha": float(bool(stripped) and stripped.replace("_", "a").isalnum() and not stripped.isdigit()),
        "is_punct": float(bool(stripped) and not any(c.isalnum() for c in stripped)),
    }


def token_features(
    top_logprobs: Sequence[float],
    entropy: float,
    *,
    chosen_logprob: float,
    position: int,
    token_text: str,
    window: UncertaintyWindow,
) -> dict[str, float]:
    """Every token feature of one position of the small model's generation.

    Args:
        top_logprobs: the largest log-probabilities at this position, descending.
        entropy: entropy of the distribution (nats), by whichever estimator the caller uses.
        chosen_logprob: log-probability of the token the small model chose.
        position: index of this token in the answer (0 is the first generated token).
        token_text: the chosen token's text.
        window: the running window; this position is pushed into it.
    """
    p = [math.exp(x) for x in top_logprobs[:2]]
    top1 = p[0] if p else 0.0
    features = {
        "entropy": entropy,
        "top1": top1,
        "margin": top1 - (p[1] if len(p) > 1 else 0.0),
        "logprob": max(chosen_logprob, FLOOR_LOGPROB),
        "position": float(position),
    }
    for i in range(TOP_VALUES):
        features[f"lp{i + 1}"] = (
            max(top_logprobs[i], FLOOR_LOGPROB) if i < len(top_logprobs) else FLOOR_LOGPROB
        )
    features.update(window.push(entropy, top1))
    features.update(token_class(token_text))
    return features


def answer_features(
    token_logprobs: Sequence[float],
    *,
    entropies: Sequence[float] | None = None,
    verdict: float | None = None,
    quantiles: Sequence[float] = ANSWER_QUANTILES,
) -> dict[str, float]:
    """Features of a whole answer from its token log-probabilities (Gupta et al. 2024).

    ``sum_logprob`` is Chow-Sum, ``mean_logprob`` Chow-Average, ``q{α}_logprob`` Chow-Quantile-α.
    ``mean_entropy`` / ``max_entropy`` are there when per-token entropies are given, ``verdict``
    (a verifier's score in [0, 1]) when a verifier ran.
    """
    lps = np.clip(np.asarray(token_logprobs, dtype=np.float64), FLOOR_LOGPROB, 0.0)
    features: dict[str, float] = {"length": float(lps.size), "sum_logprob": float(lps.sum())}
    if lps.size:
        features["mean_logprob"] = float(lps.mean())
        values = np.quantile(lps, list(quantiles))
        features.update({quantile_feature(a): float(v) for a, v in zip(quantiles, values, strict=True)})
    else:
        features["mean_logprob"] = EMPTY_ANSWER_LOGPROB
        features.update({quantile_feature(a): EMPTY_ANSWER_LOGPROB for a in quantiles})
    if entropies is not None:
        ent = np.asarray(entropies, dtype=np.float64)
        features["mean_entropy"] = float(ent.mean()) if ent.size else 0.0
        features["max_entropy"] = float(ent.max()) if ent.size else 0.0
    if verdict is not None:
        features["verdict"] = float(verdict)
    return features


def result_features(
    result: GenerateResult, *, quantiles: Sequence[float] = ANSWER_QUANTILES, verdict: float | None = None
) -> dict[str, float]:
    """:func:`answer_features` of one generation (the same on calibration and live traffic)."""
    logprobs = [t.logprob if t.logprob is not None else 0.0 for t in result.tokens]
    entropies = [t.entropy for t in result.tokens]
    known = [e for e in entropies if e is not None]
    return answer_features(
        logprobs,
        entropies=known if len(known) == len(entropies) else None,
        verdict=verdict,
        quantiles=quantiles,
    )
