"""escalate: a ladder of strategies, climbed only while the answers so far look unreliable.

Each stage is any registered strategy with its parameters (small greedy, small
self-consistency, large greedy, token tree search on the large model, ...). After a stage
runs, its *gate* turns what it produced into one number, and the ladder stops there when the
number reaches the stage's threshold; the last stage always answers. The gates:

- ``public_tests``: the fraction of the task's public tests the stage's answer passes (the
  context's verifier: ``public_tests`` in a sweep; 1.0 when all pass);
- ``agreement``: the share of the stage's candidates that agree with the most common answer
  (math: the extracted answer; code: the program text); the ARM rule, escalate when cheap
  answers disagree;
- ``mean_logprob``: the chosen answer's mean token log-probability (Chow's rule);
- ``score``: the chosen candidate's own score (a verifier's or a judge's).

Thresholds come from the stages (``threshold:``) or from a file written by ``forkpath sweep
--calibrate`` (``thresholds: path.json``), fitted on a dev split to a target accuracy or cost
(:func:`fit_thresholds`). A threshold of ``null`` never stops at its stage.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forkpath._errors import ConfigError
from forkpath._types import Task
from forkpath.strategies._base import Candidate, Context, Strategy, StrategyResult, strategies

Gate = Literal["public_tests", "agreement", "mean_logprob", "score"]

GATES = ("public_tests", "agreement", "mean_logprob", "score")


class Stage(BaseModel):
    """One rung of the ladder."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1)
    """Registry name of the stage's strategy."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Its parameters (name the model role with the strategy's own parameter, e.g. ``model: small``)."""
    gate: Gate | None = None
    """The signal that decides whether to stop after this stage (every stage but the last has one)."""
    threshold: float | None = None
    """Stop when the signal is at least this (a thresholds file overrides it)."""


class Thresholds(BaseModel):
    """A thresholds file: what ``forkpath sweep --calibrate`` saves and an escalate node reads."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["forkpath.escalate-thresholds"] = "forkpath.escalate-thresholds"
    gates: list[Gate]
    """The gate of each stage but the last (checked against the ladder that reads the file)."""
    thresholds: list[float | None]
    """One per gate; ``null``: never stop at that stage."""
    target: dict[str, float] = Field(default_factory=dict)
    """What it was fitted to (``accuracy`` or ``cost``, and the cost measure)."""
    fitted: dict[str, Any] = Field(default_factory=dict)
    """What it reached on the data it was fitted on (accuracy, mean cost, tasks, where from)."""


def save_thresholds(thresholds: Thresholds, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(thresholds.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def load_thresholds(path: str | Path) -> Thresholds:
    """Read a thresholds file; a missing or malformed one is one :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read escalate thresholds: {e.strerror}", where=str(path)) from None
    try:
        return Thresholds.model_validate_json(text)
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(map(str, problem["loc"])) or "file"
        raise ConfigError(
            f"not an escalate thresholds file: {where}: {problem['msg']}", where=str(path)
        ) from None


def _ladder(
    stages: Sequence[Stage | dict[str, Any]], thresholds: str | None
) -> tuple[list[Stage], list[Strategy]]:
    try:
        ladder = [s if isinstance(s, Stage) else Stage.model_validate(s) for s in stages]
    except ValidationError as e:
        problem = e.errors()[0]
        raise ConfigError(f"escalate stage: {'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None
    if len(ladder) < 2:
        raise ConfigError("escalate needs at least two stages")
    for i, stage in enumerate(ladder[:-1]):
        if stage.gate is None:
            raise ConfigError(f"escalate stage {i} ({stage.strategy}) needs a gate: {', '.join(GATES)}")
    if thresholds is not None:
        saved = load_thresholds(thresholds)
        gates = [s.gate for s in ladder[:-1]]
        if saved.gates != gates or len(saved.thresholds) != len(gates):
            raise ConfigError(
                f"thresholds in {thresholds} are for gates {saved.gates}; this ladder's are {gates}"
            )
        ladder = [
            s.model_copy(update={"threshold": t})
            for s, t in zip(ladder, [*saved.thresholds, None], strict=True)
        ]
    made = []
    for i, stage in enumerate(ladder):
        if stage.strategy == "escalate":
            raise ConfigError(f"escalate stage {i}: a ladder cannot hold another escalate")
        made.append(strategies.create(stage.strategy, **stage.params))
    return ladder, made


async def gate_signal(gate: Gate, result: StrategyResult, task: Task, context: Context) -> float:
    """The number ``gate`` reads from one stage's result (higher: more trustworthy)."""
    chosen = result.candidates[result.chosen] if result.chosen is not None else None
    if chosen is None or result.answer is None:
        return -math.inf
    if gate == "public_tests":
        if context.verifier is None:
            raise ConfigError("the public_tests gate needs a verifier (public_tests) in the context")
        verdict = await context.verifier.verify(task, result.answer)
        return 1.0 if verdict.passed else float(verdict.score or 0.0)
    if gate == "agreement":
        answers = [_ballot(c) for c in result.candidates]
        counted = Counter(a for a in answers if a)
        return counted.most_common(1)[0][1] / len(answers) if counted else 0.0
    if gate == "mean_logprob":
        return chosen.mean_logprob if chosen.mean_logprob is not None else -math.inf
    return chosen.score if chosen.score is not None else -math.inf


def _ballot(candidate: Candidate) -> str:
    return candidate.answer.strip() if candidate.answer else re.sub(r"\s+", " ", candidate.text).strip()


class StageOutcome(BaseModel):
    """One stage's answer and signal (what calibration records and escalate decides on)."""

    model_config = ConfigDict(extra="forbid")

    answer: str | None
    signal: float | None
    """None for the last stage (it has no gate)."""
    result: StrategyResult


async def run_stage(stage: Stage, made: Strategy, task: Task, context: Context) -> StageOutcome:
    result = await made(task, context)
    signal = await gate_signal(stage.gate, result, task, context) if stage.gate is not None else None
    return StageOutcome(answer=result.answer, signal=signal, result=result)


@strategies.register("escalate")
def escalate(stages: list[Stage], thresholds: str | None = None) -> Strategy:
    """Run the stages in order; stop at the first whose gate's signal reaches its threshold.

    Args:
        stages: the ladder: ``{strategy, params, gate, threshold}`` each; the last has no gate.
        thresholds: a file from ``forkpath sweep --calibrate`` (overrides the stages' own).

    Example (YAML):
        strategy: escalate
        params:
          thresholds: runs/calib/escalate.json
          stages:
            - {strategy: best_of_n, params: {n: 1, temperature: 0, model: small}, gate: public_tests}
            - {strategy: best_of_n, params: {n: 1, temperature: 0, model: large}}
    """
    ladder, made = _ladder(stages, thresholds)
    for i, stage in enumerate(ladder[:-1]):
        if stage.threshold is None and thresholds is None:
            raise ConfigError(f"escalate stage {i} has no threshold; give one or a thresholds file")
    needs_verifier = any(s.needs_verifier for s in made) or any(s.gate == "public_tests" for s in ladder)

    async def run(task: Task, context: Context) -> StrategyResult:
        candidates: list[Candidate] = []
        signals: list[float | None] = []
        outcome: StageOutcome | None = None
        offset = 0
        reached = 0
        for i, (stage, strategy) in enumerate(zip(ladder, made, strict=True)):
            reached = i
            outcome = await run_stage(stage, strategy, task, context)
            offset = len(candidates)
            candidates += outcome.result.candidates
            signals.append(outcome.signal)
            signal = outcome.signal if outcome.signal is not None else -math.inf
            if stage.gate is not None and stage.threshold is not None and signal >= stage.threshold:
                break
            if context.budget.exhausted():
                break
        assert outcome is not None
        result = outcome.result
        return StrategyResult(
            answer=result.answer,
            chosen=None if result.chosen is None else offset + result.chosen,
            candidates=candidates,
            stopped="budget" if context.budget.exhausted() else result.stopped,
            info={"stage": reached, "stages": len(ladder), "signals": signals},
        )

    return Strategy(run, needs_verifier=needs_verifier)


# -- calibration ---------------------------------------------------------------------------------
class Fit(BaseModel):
    """Thresholds and what they reach on the calibration data."""

    model_config = ConfigDict(extra="forbid")

    thresholds: list[float | None]
    accuracy: float
    cost: float
    escalated: list[float]
    """The share of tasks that reached each stage."""


def simulate(
    thresholds: Sequence[float | None], signals: np.ndarray, correct: np.ndarray, costs: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """Accuracy, mean cost and the stage each task stops at, for a ladder with ``thresholds``,
    from every stage's signal, correctness and own cost per task (``[tasks, stages]`` arrays)."""
    tasks, count = correct.shape
    stop = np.full(tasks, count - 1)
    open_ = np.ones(tasks, dtype=bool)
    for i, t in enumerate(thresholds):
        if t is None:
            continue
        here = open_ & (signals[:, i] >= t)
        stop[here] = i
        open_ &= ~here
    spent = np.cumsum(costs, axis=1)[np.arange(tasks), stop]
    return float(correct[np.arange(tasks), stop].mean()), float(spent.mean()), stop


def fit_thresholds(
    signals: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    *,
    target_accuracy: float | None = None,
    target_cost: float | None = None,
    candidates: int = 20,
) -> Fit:
    """The thresholds that meet a target on calibration data (exhaustive over signal quantiles).

    With ``target_accuracy``: the cheapest ladder whose accuracy is at least the target. With
    ``target_cost``: the most accurate ladder whose mean cost is at most the target (ties: the
    cheaper). Candidate thresholds per gate are ``candidates + 1`` quantiles of its signals plus
    ``null`` (never stop there).

    Raises:
        ConfigError: no target or both, or no ladder meets the target (the message says what
            the best one reaches).
    """
    if (target_accuracy is None) == (target_cost is None):
        raise ConfigError("give exactly one target: --target-accuracy or --target-cost")
    tasks, count = correct.shape
    if tasks == 0:
        raise ConfigError("no calibration tasks")
    options: list[list[float | None]] = []
    for i in range(count - 1):
        finite = signals[:, i][np.isfinite(signals[:, i])]
        levels = (
            sorted(set(np.quantile(finite, np.linspace(0, 1, candidates + 1)).tolist()))
            if finite.size
            else []
        )
        options.append([None, *levels])
    best: tuple[tuple[float, float], Fit] | None = None
    reach: list[tuple[float, float]] = []
    for combo in itertools.product(*options):
        accuracy, cost, stop = simulate(combo, signals, correct, costs)
        reach.append((accuracy, cost))
        if target_accuracy is not None:
            ok, rank = accuracy >= target_accuracy - 1e-12, (cost, -accuracy)
        else:
            assert target_cost is not None
            ok, rank = cost <= target_cost + 1e-12, (-accuracy, cost)
        if ok and (best is None or rank < best[0]):
            escalated = [float((stop >= i).mean()) for i in range(count)]
            best = (rank, Fit(thresholds=list(combo), accuracy=accuracy, cost=cost, escalated=escalated))
    if best is None:
        if target_accuracy is not None:
            top = max(a for a, _ in reach)
            tasks = len(correct)
            raise ConfigError(
                f"no thresholds reach accuracy {target_accuracy} on these tasks; the best is {top:.4f} "
                f"({round(top * tasks)} of {tasks} tasks)"
            )
        cheapest = min(c for _, c in reach)
        raise ConfigError(
            f"no thresholds keep the mean cost at {target_cost}; the cheapest ladder costs {cheapest:.4g}"
        )
    return best[1]


def thresholds_file(
    gates: Sequence[Gate], fit: Fit, target: dict[str, float], fitted: dict[str, Any]
) -> Thresholds:
    return Thresholds(
        gates=list(gates),
        thresholds=fit.thresholds,
        target=target,
        fitted={"accuracy": fit.accuracy, "cost": fit.cost, "escalated": fit.escalated, **fitted},
    )
