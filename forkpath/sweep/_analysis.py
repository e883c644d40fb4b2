"""What a sweep measured: per task outcome and cost, per point means with bootstrap intervals,
and the Pareto frontier of accuracy against each cost.

A task's cost at a point is what its samples cost *when they were drawn*, whichever point drew
them: calls answered from the sample cache count at their recorded price
(``Usage.replayed_*``), so a budget evaluated on a prefix of a larger budget's samples costs what
it would have cost alone. Wall seconds are the task's own wall time plus the wall time the calls
it replayed took when they were drawn: the union of their recorded spans, so samples that were
decoded side by side (a vote of 4 in one batch) count once, not four times
(:func:`~forkpath.models.replayed_wall_s`). A smaller budget replaying a prefix of a
batched draw is charged that batch's time, an upper bound of what it would take alone (two of
four samples decoded together take about as long as the four).

Points are compared on the tasks every point finished (errors and timeouts count as wrong).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from forkpath.batch import TaskRecord
from forkpath.models import replayed_wall_s
from forkpath.sweep._grid import Price
from forkpath.sweep._run import PointRun

Axis = Literal["tokens", "wall_s", "dollars"]
AXES: tuple[Axis, ...] = ("tokens", "wall_s", "dollars")


class TaskCost(BaseModel):
    """One task at one point: its outcome and what it cost."""

    model_config = ConfigDict(extra="forbid")

    point: str
    task_id: str
    status: str
    passed: bool
    calls: int
    prompt_tokens: dict[str, int]
    """By model id (replayed tokens included)."""
    completion_tokens: dict[str, int]
    tokens: int
    wall_s: float
    dollars: float


class Interval(BaseModel):
    """A mean and its 95% bootstrap interval."""

    model_config = ConfigDict(extra="forbid")

    mean: float
    low: float
    high: float


class PointStats(BaseModel):
    """One point over the compared tasks."""

    model_config = ConfigDict(extra="forbid")

    point: str
    config: str
    param: str | None
    value: Any
    tasks: int
    errors: int
    accuracy: Interval
    tokens: Interval
    wall_s: Interval
    dollars: Interval
    calls: float
    frontier: dict[str, bool]
    """On the Pareto frontier of accuracy against each axis."""


def task_cost(point: str, record: TaskRecord, prices: dict[str, Price]) -> TaskCost:
    """The outcome and full cost of one record (replayed calls at their recorded price)."""
    prompt = {m: u.prompt_tokens + u.replayed_prompt_tokens for m, u in record.usage.items()}
    completion = {m: u.completion_tokens + u.replayed_completion_tokens for m, u in record.usage.items()}
    dollars = sum(u.cost + u.replayed_cost for u in record.usage.values())
    for model, price in prices.items():
        dollars += (prompt.get(model, 0) * price.prompt + completion.get(model, 0) * price.completion) / 1e6
    return TaskCost(
        point=point,
        task_id=record.task_id,
        status=record.status,
        passed=record.passed is True,
        calls=sum(u.calls + u.cached_calls for u in record.usage.values()),
        prompt_tokens=prompt,
        completion_tokens=completion,
        tokens=sum(prompt.values()) + sum(completion.values()),
        wall_s=record.latency_s + replayed_wall_s(record.usage.values()),
        dollars=dollars,
    )


def bootstrap(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> Interval:
    """The mean of ``values`` and its 95% percentile-bootstrap interval (resampling tasks)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(mean=math.nan, low=math.nan, high=math.nan)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(mean=float(data.mean()), low=float(low), high=float(high))


def pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which (cost, accuracy) pairs no other pair beats: as cheap or cheaper and at least as
    accurate, strictly better in one."""
    front = []
    for i, (cost, acc) in enumerate(points):
        beaten = any(
            (c <= cost and a >= acc) and (c < cost or a > acc) for j, (c, a) in enumerate(points) if j != i
        )
        front.append(not beaten)
    return front


def analyse(runs: Sequence[PointRun], prices: dict[str, Price]) -> tuple[list[PointStats], list[TaskCost]]:
    """Per-point statistics and per-task rows, over the tasks every point has a record of."""
    common: set[str] | None = None
    for run in runs:
        ids = {r.task_id for r in run.records}
        common = ids if common is None else common & ids
    common = common or set()
    rows: list[TaskCost] = []
    stats: list[PointStats] = []
    for run in runs:
        name = run.point.name
        costs = [task_cost(name, r, prices) for r in sorted(run.records, key=lambda r: r.task_id)]
        costs = [c for c in costs if c.task_id in common]
        rows += costs
        stats.append(
            PointStats(
                point=name,
                config=run.point.config,
                param=run.point.param,
                value=run.point.value,
                tasks=len(costs),
                errors=sum(c.status != "ok" for c in costs),
                accuracy=bootstrap([float(c.passed) for c in costs]),
                tokens=bootstrap([c.tokens for c in costs]),
                wall_s=bootstrap([c.wall_s for c in costs]),
                dollars=bootstrap([c.dollars for c in costs]),
                calls=float(np.mean([c.calls for c in costs])) if costs else math.nan,
                frontier={},
            )
        )
    for axis in AXES:
        front = pareto([(getattr(s, axis).mean, s.accuracy.mean) for s in stats])
        for s, on in zip(stats, front, strict=True):
            s.frontier[axis] = on
    return stats, rows


def write_outputs(
    out_dir: Path, stats: list[PointStats], rows: list[TaskCost], meta: dict[str, Any]
) -> list[Path]:
    """``sweep.json`` (everything), ``sweep.csv`` (one line per point), ``tasks.csv`` (one line
    per task and point). Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = out_dir / "sweep.json"
    summary.write_text(
        json.dumps(
            {
                **meta,
                "points": [s.model_dump(mode="json") for s in stats],
                "tasks": [r.model_dump(mode="json") for r in rows],
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    points_csv = out_dir / "sweep.csv"
    with points_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        header = ["point", "config", "param", "value", "tasks", "errors", "calls"]
        for name in ("accuracy", *AXES):
            header += [name, f"{name}_low", f"{name}_high"]
        writer.writerow([*header, *(f"frontier_{a}" for a in AXES)])
        for s in stats:
            line: list[Any] = [
                s.point,
                s.config,
                s.param or "",
                "" if s.value is None else s.value,
                s.tasks,
                s.errors,
            ]
            line.append(f"{s.calls:.3f}")
            for name in ("accuracy", *AXES):
                iv: Interval = getattr(s, name)
                line += [f"{iv.mean:.6g}", f"{iv.low:.6g}", f"{iv.high:.6g}"]
            writer.writerow([*line, *(int(s.frontier[a]) for a in AXES)])
    tasks_csv = out_dir / "tasks.csv"
    with tasks_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        models = sorted({m for r in rows for m in r.prompt_tokens})
        writer.writerow(
            ["point", "task_id", "status", "passed", "calls", "tokens", "wall_s", "dollars"]
            + [f"{kind}:{m}" for m in models for kind in ("prompt", "completion")]
        )
        for r in rows:
            writer.writerow(
                [
                    r.point,
                    r.task_id,
                    r.status,
                    int(r.passed),
                    r.calls,
                    r.tokens,
                    f"{r.wall_s:.4f}",
                    f"{r.dollars:.8f}",
                ]
                + [n for m in models for n in (r.prompt_tokens.get(m, 0), r.completion_tokens.get(m, 0))]
            )
    return [summary, points_csv, tasks_csv]
