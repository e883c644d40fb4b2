"""Uncertainty statistics of one position, from top-k logprobs or the full distribution.

All entropies are in nats. The estimators follow algorithms.md §0.2; a threshold is valid only
for the estimator and the k it was calibrated with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64 result)."""
    x = logits.astype(np.float64, copy=False)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def entropy(logprobs: np.ndarray) -> float:
    """Entropy of a full distribution given as log-probabilities (-inf: impossible tokens, as
    a constraint's mask leaves them)."""
    p = np.exp(logprobs)
    return float(-(p * np.where(p > 0, logprobs, 0.0)).sum())


def entropy_renorm(top_logprobs: Sequence[float]) -> float:
    """H_renorm: entropy of the top-k mass renormalised to 1 (underestimates heavy tails)."""
    p = np.exp(np.asarray(top_logprobs, dtype=np.float64))
    q = p / p.sum()
    return float(-(q * np.log(q)).sum())


def entropy_lower(top_logprobs: Sequence[float]) -> float:
    """H_lower: the tail counted as one token; a lower bound on the true entropy."""
    p = np.exp(np.asarray(top_logprobs, dtype=np.float64))
    tail = max(0.0, 1.0 - float(p.sum()))
    h = float(-(p * np.log(p)).sum())
    return h - tail * math.log(tail) if tail > 0 else h


def top1_margin(top_logprobs: Sequence[float]) -> tuple[float, float]:
    """Probability of the most likely token and its margin over the second."""
    p = sorted((math.exp(x) for x in top_logprobs), reverse=True)
    if not p:
        return 0.0, 0.0
    return p[0], p[0] - (p[1] if len(p) > 1 else 0.0)
