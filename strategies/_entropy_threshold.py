"""Learning AdaDec's entropy threshold for one model from a calibration run.

The recipe of the AdaDec reference code (algorithms.md §h): teacher-force reference solutions
through the model; at every position record the entropy H of the full next-token distribution
and whether the reference token is the model's top choice; balance the two classes by
undersampling; fit a logistic regression P(top-1 correct | H) = σ(a + b·H) on 80 % of the
positions; pick the probability cut p* in {0.01, …, 0.99} with the best accuracy on the other
20 %; convert it to an entropy: H* = (logit(p*) − a) / b. AdaDec pauses where H >= H*.

Calibrate on tasks that are *not* in the evaluation set (their reference solutions are read).

Example:
    >>> found = await calibrate_entropy_threshold(model, humaneval_tasks()[120:])
    >>> save_threshold(found, "runs/adadec-thresholds.json")
    >>> strategies.create("adadec", threshold_file="runs/adadec-thresholds.json")
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from forkpath._errors import ConfigError
from forkpath._prompts import task_messages
from forkpath._types import Task
from forkpath.models import Model, charge, entropy, teacher_force, token_model


class EntropyThreshold(BaseModel):
    """A learned pause threshold and how it was found."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """Id of the model it was learned for (valid for that model only)."""
    threshold: float
    """H*: pause where the full-distribution entropy (nats) is at least this."""
    intercept: float
    """a of the logistic fit σ(a + b·H)."""
    slope: float
    """b of the logistic fit (negative when entropy predicts errors, as it should)."""
    probability_cut: float
    """p*, the cut on P(top-1 correct) with the best held-out accuracy."""
    heldout_accuracy: float
    positions: int
    """Teacher-forced positions used (before balancing)."""
    top1_rate: float
    """Fraction of positions where the reference token was the model's top choice."""
    tasks: list[str]
    """Ids of the calibration tasks."""


def reference_text(task: Task) -> str | None:
    """The reference answer written the way the model is asked to answer (None if unknown)."""
    canonical = task.metadata.get("canonical_solution")
    if task.kind == "code" and canonical:
        return f"```python\n{task.prompt}{canonical}```"
    solution = task.metadata.get("solution")
    if solution:
        return str(solution)
    return task.answer


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logistic(h: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 50) -> tuple[float, float]:
    """Newton's method on σ(a + b·h), with a small L2 penalty so separable data stays finite."""
    x = np.stack([np.ones_like(h), h], axis=1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def fit_entropy_threshold(
    entropies: Sequence[float], top1: Sequence[bool], *, seed: int = 0
) -> tuple[float, float, float, float, float]:
    """Fit the threshold: returns ``(H*, a, b, p*, held-out accuracy)``.

    Raises:
        ConfigError: when there are too few positions of either class, or entropy does not
            predict errors (a non-negative slope).
    """
    h = np.asarray(entropies, dtype=np.float64)
    y = np.asarray(top1, dtype=np.float64)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if min(len(positives), len(negatives)) < 5:
        raise ConfigError(
            f"entropy threshold: need at least 5 positions of each class, got {len(positives)} top-1 "
            f"and {len(negatives)} not; calibrate on more tasks"
        )
    rng = np.random.default_rng(seed)
    n = min(len(positives), len(negatives))
    chosen = np.concatenate(
        [rng.choice(positives, n, replace=False), rng.choice(negatives, n, replace=False)]
    )
    rng.shuffle(chosen)
    split = max(1, int(0.8 * len(chosen)))
    train, test = chosen[:split], chosen[split:]
    a, b = _logistic(h[train], y[train])
    if b >= 0:
        raise ConfigError(
            f"entropy threshold: entropy does not predict errors for this model (slope {b:.3g})"
        )
    held = test if len(test) else train
    probs = _sigmoid(a + b * h[held])
    best_cut, best_acc = 0.5, -1.0
    for cut in np.round(np.arange(0.01, 1.0, 0.01), 2):
        accuracy = float(((probs >= cut) == (y[held] == 1)).mean())
        # Ties go to the cut nearest 0.5: the middle of an equally good plateau.
        if accuracy > best_acc or (accuracy == best_acc and abs(cut - 0.5) < abs(best_cut - 0.5)):
            best_cut, best_acc = float(cut), accuracy
    threshold = (math.log(best_cut / (1 - best_cut)) - a) / b
    return threshold, a, b, best_cut, best_acc


async def teacher_forced_entropies(model: Model, task: Task, text: str) -> tuple[list[float], list[bool]]:
    """Entropy and top-1 correctness at every position of ``text`` as the answer to ``task``."""
    tm = token_model(model, by="adadec calibration")
    prefix = tm.chat_prefix(task_messages(task))
    continuation = tm.tokenize(text)
    rows = list((await teacher_force(model, prefix, continuation))[:-1])
    charge(model, prompt_tokens=len(prefix) + len(continuation))
    entropies = [entropy(row) for row in rows]
    top1 = [int(np.argmax(row)) == token for row, token in zip(rows, continuation, strict=True)]
    return entropies, top1


async def calibrate_entropy_threshold(
    model: Model, tasks: Sequence[Task], *, seed: int = 0
) -> EntropyThreshold:
    """Learn the AdaDec threshold of ``model`` on ``tasks`` (their reference answers are read)."""
    entropies: list[float] = []
    top1: list[bool] = []
    used: list[str] = []
    for task in tasks:
        text = reference_text(task)
        if not text:
            continue
        h, y = await teacher_forced_entropies(model, task, text)
        entropies += h
        top1 += y
        used.append(task.id)
    if not used:
        raise ConfigError("entropy threshold: none of the calibration tasks has a reference answer")
    threshold, a, b, cut, accuracy = fit_entropy_threshold(entropies, top1, seed=seed)
    return EntropyThreshold(
        model=model.id,
        threshold=threshold,
        intercept=a,
        slope=b,
        probability_cut=cut,
        heldout_accuracy=accuracy,
        positions=len(entropies),
        top1_rate=sum(top1) / len(top1),
        tasks=used,
    )


def save_threshold(found: EntropyThreshold, path: str | Path) -> None:
    """Add (or replace) ``found`` in the JSON file of thresholds by model id."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[found.model] = found.model_dump(mode="json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_threshold(path: str | Path, model_id: str) -> EntropyThreshold:
    """The threshold learned for ``model_id`` in a file written by :func:`save_threshold`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"adadec: threshold file {path} does not exist (run the calibration first)"
        ) from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"adadec: threshold file {path} is not JSON: {e}") from None
    if model_id not in data:
        known = ", ".join(sorted(data)) or "none"
        raise ConfigError(
            f"adadec: no threshold learned for model {model_id} in {path} (has: {known}); calibrate it first"
        )
    return EntropyThreshold.model_validate(data[model_id])
