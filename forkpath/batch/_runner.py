"""Run a flow over a task set: bounded concurrency, per-task timeout, retries, a shared budget,
results written as they complete, resume by run id, local asyncio or Ray backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forkpath import Budget, BudgetLimits
from forkpath._errors import ConfigError, is_retryable
from forkpath._types import Task
from forkpath.batch._records import ResultsFile, RunManifest, TaskRecord, record_from_result

logger = logging.getLogger(__name__)


class BatchConfig(BaseModel):
    """How a batch run goes."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    """Names the run; a rerun with the same id resumes it."""
    out_dir: Path
    """Where ``results.jsonl``, traces and the report go."""
    concurrency: int = Field(default=2, ge=1)
    """Tasks in flight at once."""
    task_timeout_s: float | None = Field(default=None, gt=0)
    """A task running longer is recorded as ``timeout``."""
    retries: int = Field(default=1, ge=0)
    """Extra attempts for a task that failed with a transient error (rate limit, 5xx, connection)."""
    budget: BudgetLimits = Field(default_factory=BudgetLimits)
    """Shared by all tasks: when it runs out, no new task starts."""
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    """``ray.init(address=...)``; None starts or joins a local Ray."""
    dataset: str | None = None
    """What the tasks came from, for the run's ``run.json`` (``forkpath view`` shows it)."""


class BatchSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    total: int
    skipped: int
    """Already finished before this invocation (resumed)."""
    ran: int
    stopped: Literal["done", "budget"] = "done"
    results_path: str


_RESULT_FIELDS = {"verifier", "start", "nodes", "edges", "budget", "max_steps"}


def flow_fingerprint(flow: Any) -> str | None:
    """A short hash of what decides a flow's results: which model plays each role, its verifier,
    nodes, edges, budget and step limit. Not its name, description, dataset, store or trace
    settings, nor model options (a server address, retries, threads): changing those resumes."""
    spec = getattr(flow, "spec", None)
    if spec is None:
        return None
    data = spec.model_dump(mode="json", include=_RESULT_FIELDS)
    data["models"] = {role: model.model for role, model in spec.models.items()}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def safe_name(task_id: str) -> str:
    """A file-name-safe, collision-free form of a task id (``HumanEval/0`` -> ``HumanEval_0-1a2b3c``)."""
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:6]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', task_id)}-{digest}"


async def run_task(
    flow: Any, task: Task, config: BatchConfig, budget: Budget | None, store: Any = None
) -> TaskRecord:
    """One task with timeout and retries of transient failures; never raises."""
    attempts = 0
    started = time.perf_counter()
    while True:
        attempts += 1
        try:
            run = flow.run(
                task,
                run_id=f"{config.run_id}-{safe_name(task.id)}",
                runs_dir=config.out_dir / "traces",
                budget=budget,
                store=store,
            )
            result = await asyncio.wait_for(run, timeout=config.task_timeout_s)
            return record_from_result(config.run_id, task.id, result, time.perf_counter() - started, attempts)
        except TimeoutError:
            return TaskRecord(
                run_id=config.run_id,
                task_id=task.id,
                status="timeout",
                attempts=attempts,
                latency_s=time.perf_counter() - started,
                error=f"timed out after {config.task_timeout_s} s",
            )
        except Exception as e:
            if is_retryable(e) and attempts <= config.retries:
                logger.warning("%s: transient failure, retrying: %s", task.id, e)
                await asyncio.sleep(min(2.0**attempts, 30.0))
                continue
            message = str(e).splitlines()[0] if str(e) else ""
            return TaskRecord(
                run_id=config.run_id,
                task_id=task.id,
                status="error",
                attempts=attempts,
                latency_s=time.perf_counter() - started,
                error=f"{type(e).__name__}: {message}"[:500],
            )


async def run_batch(
    flow: Any,
    tasks: list[Task],
    config: BatchConfig,
    *,
    store: Any = None,
    on_record: Callable[[TaskRecord], None] | None = None,
) -> BatchSummary:
    """Run ``flow`` over ``tasks``; skip the ones ``results.jsonl`` (or the result store) has."""
    results = ResultsFile(config.out_dir / "results.jsonl")
    known = results.load(repair=True)
    fingerprint = flow_fingerprint(flow)
    other = {r.flow for r in known.values() if r.flow and fingerprint and r.flow != fingerprint}
    if other:
        raise ConfigError(
            f"{results.path}: these results were made by a different flow (fingerprint "
            f"{', '.join(sorted(other))}; this flow: {fingerprint}): its models, verifier, nodes, edges "
            f"or budget changed. Give another --out or --run-id, or delete {config.out_dir} to start over"
        )
    if store is not None:
        for task_id in await store.finished_ids(config.run_id):
            payload = await store.get_result(config.run_id, task_id)
            if payload is None:
                continue
            record = TaskRecord.model_validate(payload)
            if record.flow and fingerprint and record.flow != fingerprint:
                continue  # another flow's result under this run id: run the task again
            mine = known.get(task_id)
            if record.finished and (mine is None or not mine.finished):
                results.append(record)  # finished on another worker or before a crash: bring it home
                known[task_id] = record
    todo = [t for t in tasks if not (t.id in known and known[t.id].finished)]
    manifest = RunManifest(
        run_id=config.run_id,
        flow=getattr(getattr(flow, "spec", None), "name", None),
        dataset=config.dataset,
        tasks=len(tasks),
        started=time.time(),
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    manifest.write(config.out_dir)
    budget = Budget(config.budget)
    summary = BatchSummary(
        run_id=config.run_id,
        total=len(tasks),
        skipped=len(tasks) - len(todo),
        ran=0,
        results_path=str(results.path),
    )

    async def finish(record: TaskRecord) -> None:
        record = record.model_copy(update={"flow": fingerprint})
        results.append(record)
        if store is not None:
            await store.put_result(config.run_id, record.task_id, record.model_dump(mode="json"))
        summary.ran += 1
        if on_record is not None:
            on_record(record)

    if config.backend == "ray":
        from forkpath.batch._ray import run_on_ray

        stopped = await run_on_ray(flow, todo, config, finish)
        summary.stopped = stopped
        manifest.model_copy(update={"finished": time.time(), "stopped": stopped}).write(config.out_dir)
        return summary

    queue: asyncio.Queue[Task] = asyncio.Queue()
    for task in todo:
        queue.put_nowait(task)

    async def worker() -> None:
        while not queue.empty():
            if budget.exhausted():
                summary.stopped = "budget"
                return
            task = queue.get_nowait()
            await finish(await run_task(flow, task, config, budget, store))

    with budget.open():
        await asyncio.gather(*(worker() for _ in range(min(config.concurrency, max(1, len(todo))))))
    manifest.model_copy(update={"finished": time.time(), "stopped": summary.stopped}).write(config.out_dir)
    return summary
