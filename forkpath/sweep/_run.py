"""Running a grid: every point is one batch run over the same tasks, sharing one sample cache.

Nothing here schedules tasks: each point goes to :func:`forkpath.batch.run_batch`, so a sweep
resumes the way a batch does (a point's ``results.jsonl`` says which tasks are done; a rerun runs
only the rest), runs locally or on Ray with the batch's dispatcher, and stops on the same rules.
The points share one store, whose generation cache holds every sample by its sample index: the
largest budget of a configuration draws them, the smaller ones replay its first samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forkpath._errors import ConfigError
from forkpath._types import Task
from forkpath.batch import BatchConfig, BatchSummary, TaskRecord, check_out_dir, read_records, run_batch
from forkpath.sweep._grid import Grid, Point

logger = logging.getLogger(__name__)


class SweepConfig(BaseModel):
    """How a sweep runs (the grid says what it runs)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: Path
    """Where each point's batch run (``points/<point>/``), the store and the outputs go."""
    concurrency: int = Field(default=1, ge=1)
    """Tasks in flight at once within a point (Ray: actors)."""
    task_timeout_s: float | None = Field(default=None, gt=0)
    retries: int = Field(default=1, ge=0)
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    dataset: str | None = None
    """What the tasks came from (``humaneval:test``), for each run's manifest."""
    warm_up: bool = True
    """Local backend: load every grid model (one one-token call, uncached, unrecorded) before
    the first point, so no task's wall time includes loading a model."""


class PointRun(BaseModel):
    """One point's batch run: its summary and its records, one per task."""

    model_config = ConfigDict(extra="forbid")

    point: Point
    summary: BatchSummary
    records: list[TaskRecord]


def store_url(grid: Grid, config: SweepConfig) -> str:
    """The store of the sample cache: the grid's, else ``OUT/store.db`` (absolute, so Ray
    workers started elsewhere open the same file)."""
    return grid.spec.store or str((config.out_dir / "store.db").resolve())


async def run_sweep(
    grid: Grid,
    tasks: list[Task],
    config: SweepConfig,
    *,
    on_point: Callable[[PointRun], None] | None = None,
) -> list[PointRun]:
    """Run every point of ``grid`` over ``tasks``, largest budget first within a configuration.

    Raises:
        ConfigError: no tasks, or tasks of several kinds, or a point's folder holds another
            flow's results (the grid's configuration changed: give another ``--out``).
        StoreError: the store failed; what was recorded stays and a rerun resumes from it.
    """
    from forkpath.store import open_store

    if not tasks:
        raise ConfigError("no tasks to sweep over")
    kinds = {t.kind for t in tasks}
    if len(kinds) != 1:
        raise ConfigError(f"a sweep's tasks are of one kind; these are {', '.join(sorted(kinds))}")
    check_out_dir(config.out_dir, what="--out")
    url = store_url(grid, config)
    flows = [(point, grid.flow(point, kind=tasks[0].kind, store_url=url)) for point in grid.points()]
    wanted = {t.id for t in tasks}
    runs: list[PointRun] = []
    if config.warm_up and config.backend == "local":
        await _warm_up(grid)
    store = open_store(url)
    try:
        for point, flow in flows:
            out = config.out_dir / "points" / point.slug
            batch = BatchConfig(
                run_id=f"{grid.spec.name}.{point.slug}",
                out_dir=out,
                concurrency=config.concurrency,
                task_timeout_s=config.task_timeout_s,
                retries=config.retries,
                backend=config.backend,
                ray_address=config.ray_address,
                dataset=config.dataset,
            )
            logger.info("sweep point %s: %d tasks", point.name, len(tasks))
            summary = await run_batch(flow, tasks, batch, store=store)
            records = [r for r in read_records(out) if r.task_id in wanted]
            run = PointRun(point=point, summary=summary, records=records)
            runs.append(run)
            if on_point is not None:
                on_point(run)
    finally:
        await store.aclose()
    return runs


async def _warm_up(grid: Grid) -> None:
    from forkpath.models import GenerateRequest, Message, UsageMeter, get_model, usage_meter

    request = GenerateRequest(messages=(Message(role="user", content="Hi"),), max_tokens=1, temperature=0.0)
    for spec in grid.spec.models.values():
        model_id, options = (spec, {}) if isinstance(spec, str) else (spec.model, dict(spec.options))
        model = get_model(model_id, **options)
        with usage_meter(UsageMeter()):  # nobody's bill
            await model.generate(request)
