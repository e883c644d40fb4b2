"""``forkpath sweep --calibrate``: fit an ``escalate`` configuration's thresholds on dev tasks.

Every stage of the ladder runs on every task (nothing is gated), through the same
:func:`~forkpath.strategies.run_stage` the strategy uses, so each task gets each stage's gate
signal, whether the stage's answer is right (the grid's judge) and what the stage cost. From
those the thresholds are fitted exactly (:func:`~forkpath.strategies.fit_thresholds`): the ladder
a threshold set makes is replayed per task without running anything again.

Rows go to ``OUT/calibration.jsonl`` as tasks finish; a rerun reads them back and runs only the
tasks without one. Each row names the ladder it measured (a digest of its stages), so after a
ladder is edited its old rows are ignored, never fitted as if they were the new ladder's.
Samples go through the grid's store, so they are drawn once.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from forkpath._errors import ConfigError
from forkpath._types import Task
from forkpath.models import UsageMeter, get_model, replayed_wall_s, usage_meter
from forkpath.sweep._analysis import Axis
from forkpath.sweep._grid import Grid, Price


class CalibrationRow(BaseModel):
    """One task: each stage's signal, correctness and own cost."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    ladder: str = ""
    """Digest of the stages measured (:func:`ladder_digest`); rows of another ladder are ignored."""
    signals: list[float | None]
    correct: list[bool]
    tokens: list[int]
    wall_s: list[float]
    dollars: list[float]


def _cost(meter: UsageMeter, seconds: float, prices: dict[str, Price]) -> tuple[int, float, float]:
    tokens = 0
    dollars = 0.0
    for model, u in meter.by_model.items():
        prompt = u.prompt_tokens + u.replayed_prompt_tokens
        completion = u.completion_tokens + u.replayed_completion_tokens
        tokens += prompt + completion
        dollars += u.cost + u.replayed_cost
        price = prices.get(model)
        if price is not None:
            dollars += (prompt * price.prompt + completion * price.completion) / 1e6
    wall = seconds + replayed_wall_s(meter.by_model.values())
    return tokens, wall, dollars


def ladder_digest(stages: list[Any]) -> str:
    """What a calibration row was measured on: the stages' strategies, parameters and gates
    (not thresholds, which are what calibration fits)."""
    spec = [s.model_dump(exclude={"threshold"}) for s in stages]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _read_rows(path: Path, ladder: str) -> dict[str, CalibrationRow]:
    rows: dict[str, CalibrationRow] = {}
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = CalibrationRow.model_validate_json(line)
        except ValidationError:
            continue  # a torn last line of an interrupted run: that task runs again
        if row.ladder == ladder:
            rows[row.task_id] = row
    return rows


async def collect_calibration(
    grid: Grid, config_name: str, tasks: list[Task], out_dir: Path, *, store_url: str
) -> list[CalibrationRow]:
    """Run every stage of the escalate configuration ``config_name`` on ``tasks``.

    Raises:
        ConfigError: no such configuration, or it is not an ``escalate`` one.
    """
    from forkpath.store import open_store
    from forkpath.strategies import Context, Stage, run_stage, strategies
    from forkpath.verifiers import verifiers

    config = grid.spec.configs.get(config_name)
    if config is None:
        known = ", ".join(grid.spec.configs)
        raise ConfigError(f"no configuration {config_name!r} in the grid (it has {known})")
    if config.strategy != "escalate":
        raise ConfigError(
            f"--calibrate needs an escalate configuration; {config_name!r} is {config.strategy}"
        )
    stages = [Stage.model_validate(s) for s in config.params.get("stages", [])]
    if len(stages) < 2:
        raise ConfigError(f"configuration {config_name!r}: escalate needs at least two stages")
    made = [strategies.create(s.strategy, **s.params) for s in stages]
    spec = grid.spec
    judge_spec = spec.judge or ("python_tests" if tasks[0].kind == "code" else "math_answer")
    judge = _make(verifiers, judge_spec)
    verifier = _make(verifiers, spec.verifier) if spec.verifier is not None else None
    path = out_dir / "calibration.jsonl"
    ladder = ladder_digest(stages)
    done = _read_rows(path, ladder)
    store = open_store(store_url)
    try:
        cache = store.generation_cache("default")
        models: dict[str, Any] = {}
        for name, model in spec.models.items():
            model_id, options = (model, {}) if isinstance(model, str) else (model.model, dict(model.options))
            models[name] = get_model(model_id, cache=cache, **options)
        roles = {**models, **{role: models[target] for role, target in config.models.items()}}
        out_dir.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            for task in tasks:
                if task.id in done:
                    continue
                row = CalibrationRow(
                    task_id=task.id, ladder=ladder, signals=[], correct=[], tokens=[], wall_s=[], dollars=[]
                )
                for stage, strategy in zip(stages, made, strict=True):
                    context = Context(models=roles, verifier=verifier)
                    started = time.perf_counter()
                    with usage_meter() as meter:
                        outcome = await run_stage(stage, strategy, task, context)
                    tokens, wall, dollars = _cost(meter, time.perf_counter() - started, spec.prices)
                    right = False
                    if outcome.answer is not None:
                        right = bool((await judge.verify(task, outcome.answer)).passed)
                    row.signals.append(outcome.signal)
                    row.correct.append(right)
                    row.tokens.append(tokens)
                    row.wall_s.append(wall)
                    row.dollars.append(dollars)
                out.write(row.model_dump_json() + "\n")
                out.flush()
                done[task.id] = row
    finally:
        await store.aclose()
    wanted = [t.id for t in tasks]
    return [done[i] for i in wanted if i in done]


def _make(registry: Any, spec: Any) -> Any:
    if isinstance(spec, str):
        return registry.create(spec)
    return registry.create(spec.name, **spec.params)


def calibrate_escalate(
    rows: list[CalibrationRow],
    gates: list[Any],
    *,
    target_accuracy: float | None = None,
    target_cost: float | None = None,
    cost: Axis = "tokens",
    source: dict[str, Any] | None = None,
) -> Any:
    """Fit the thresholds to the target on ``rows``; returns a
    :class:`~forkpath.strategies.Thresholds` ready to save."""
    from forkpath.strategies import fit_thresholds, thresholds_file

    if not rows:
        raise ConfigError("no calibration rows: the dev split gave no tasks")
    signals = np.array(
        [[s if s is not None else -np.inf for s in r.signals[:-1]] + [-np.inf] for r in rows], dtype=float
    )
    correct = np.array([r.correct for r in rows], dtype=float)
    costs = np.array([getattr(r, cost) for r in rows], dtype=float)
    fit = fit_thresholds(signals, correct, costs, target_accuracy=target_accuracy, target_cost=target_cost)
    target = (
        {"accuracy": target_accuracy} if target_accuracy is not None else {"cost": float(target_cost or 0)}
    )
    per_stage = {
        "stage_accuracy": correct.mean(axis=0).round(4).tolist(),
        "stage_cost": costs.mean(axis=0).round(4).tolist(),
    }
    return thresholds_file(
        gates, fit, target, {"cost_measure": cost, "tasks": len(rows), **per_stage, **(source or {})}
    )
