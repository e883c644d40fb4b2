"""Run a flow over a task set: results written as they complete, resume by run id, a bounded
number of tasks in flight, a batch-wide budget, locally (asyncio) or on Ray.

One scheduler serves both backends (:func:`_dispatch`): it starts a task whenever a slot is
free and the batch budget is not spent, records each task as it completes, and charges the
batch budget with what the task spent. A backend is only a pool that runs one task on a free
slot (:class:`_LocalPool` here, ``RayPool`` in ``_ray.py``), so the budget, the resume and
the stop rules are the same on both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from forkpath import Budget, cancel_all
from forkpath._errors import ConfigError
from forkpath._types import Task
from forkpath.batch._config import BatchConfig, BatchSummary
from forkpath.batch._records import ResultsFile, RunManifest, TaskRecord, check_out_dir
from forkpath.batch._task import run_task
from forkpath.models import Usage

logger = logging.getLogger(__name__)

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


class _Pool(Protocol):
    """Where tasks run: ``slots`` of them at once, each through :func:`run_task`."""

    slots: int

    async def run(self, task: Task) -> TaskRecord: ...

    async def aclose(self) -> None: ...


class _LocalPool:
    """Tasks run in this event loop, sharing the batch's open store."""

    def __init__(self, flow: Any, config: BatchConfig, store: Any, slots: int) -> None:
        self.flow, self.config, self.store, self.slots = flow, config, store, slots

    async def run(self, task: Task) -> TaskRecord:
        return await run_task(self.flow, task, self.config, self.store)

    async def aclose(self) -> None:
        return None


async def run_batch(
    flow: Any,
    tasks: list[Task],
    config: BatchConfig,
    *,
    store: Any = None,
    on_record: Callable[[TaskRecord], None] | None = None,
) -> BatchSummary:
    """Run ``flow`` over ``tasks``; skip the ones ``results.jsonl`` (or the result store) has.

    Each task runs under its own budget (the flow's ``budget:``); ``config.batch_budget`` limits
    the whole invocation. Records are appended as tasks complete (and put in ``store``).

    Raises:
        ConfigError: the output folder is unusable, or holds another flow's results.
        StoreError: the store failed mid-run. The tasks in flight are cancelled; the records
            written so far stay, and a rerun resumes from them.
    """
    check_out_dir(config.out_dir)
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
        await _bring_home(store, config.run_id, {t.id for t in tasks}, fingerprint, results, known)

    def done_before(task: Task) -> bool:
        record = known.get(task.id)
        if record is None or not record.finished:
            return False
        return not (config.rerun_budget_stopped and record.budget_stopped)

    todo = [t for t in tasks if not done_before(t)]
    summary = BatchSummary(
        run_id=config.run_id, total=len(tasks), skipped=len(tasks) - len(todo), results_path=str(results.path)
    )

    async def finish(record: TaskRecord) -> None:
        record = record.model_copy(update={"flow": fingerprint})
        results.append(record)
        summary.ran += 1
        summary.budget_stopped += record.budget_stopped
        summary.failed += not record.finished
        if on_record is not None:
            on_record(record)
        if store is not None:
            await store.put_result(config.run_id, record.task_id, record.model_dump(mode="json"))

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
    if not todo:
        manifest.model_copy(update={"finished": time.time(), "stopped": summary.stopped}).write(
            config.out_dir
        )
        return summary
    slots = min(config.concurrency, len(todo))
    pool: _Pool
    if config.backend == "ray":
        from forkpath.batch._ray import RayPool  # Ray loads only when asked for

        pool = RayPool(flow, config, slots)
    else:
        pool = _LocalPool(flow, config, store, slots)
    try:
        await _dispatch(todo, pool, Budget(config.batch_budget), finish, summary)
    finally:
        await pool.aclose()
    manifest.model_copy(update={"finished": time.time(), "stopped": summary.stopped}).write(config.out_dir)
    return summary


async def _bring_home(
    store: Any,
    run_id: str,
    wanted: set[str],
    fingerprint: str | None,
    results: ResultsFile,
    known: dict[str, TaskRecord],
) -> None:
    """Append to ``results`` the store's finished records of ``run_id`` that this folder lacks
    (finished on another worker, or before a crash), for the tasks in ``wanted`` only: the run id
    may have served other task lists (another --limit, another folder of the same name), and
    their records are not this invocation's. A stored result that is not a record of this run,
    this task and this flow is skipped with a warning, and its task runs again."""
    async for task_id, payload in store.results(run_id):
        if task_id not in wanted:
            continue
        try:
            record = TaskRecord.model_validate(payload)
        except ValidationError as e:
            logger.warning(
                "%s: the result of task %r in run %r is not a batch record (%d problems, first: %s: %s); "
                "the task runs again",
                store.url,
                task_id,
                run_id,
                e.error_count(),
                ".".join(str(p) for p in e.errors()[0]["loc"]) or "record",
                e.errors()[0]["msg"],
            )
            continue
        if (record.run_id, record.task_id) != (run_id, task_id):
            logger.warning(
                "%s: the result stored for task %r in run %r is task %r of run %r; the task runs again",
                store.url,
                task_id,
                run_id,
                record.task_id,
                record.run_id,
            )
            continue
        if record.flow and fingerprint and record.flow != fingerprint:
            continue  # another flow's result under this run id: run the task again
        mine = known.get(task_id)
        if record.finished and (mine is None or not mine.finished):
            results.append(record)
            known[task_id] = record


async def _dispatch(
    todo: list[Task],
    pool: _Pool,
    batch_budget: Budget,
    finish: Callable[[TaskRecord], Any],
    summary: BatchSummary,
) -> None:
    """Start tasks on free slots until the queue is empty or the batch budget is spent;
    record each as it completes. A failure (the store died) cancels the tasks in flight,
    retrieves what each raised, and is raised."""
    batch_budget.started = time.monotonic()
    queue = deque(todo)
    order = {task.id: i for i, task in enumerate(todo)}
    started: dict[asyncio.Future[TaskRecord], Task] = {}
    running: set[asyncio.Future[TaskRecord]] = set()
    try:
        while queue or running:
            while queue and len(running) < pool.slots:
                spent = batch_budget.exhausted()
                if spent is not None:
                    summary.stopped, summary.batch_limit = "batch_budget", spent
                    summary.not_started = len(queue)
                    queue.clear()
                    break
                task = queue.popleft()
                flight: asyncio.Future[TaskRecord] = asyncio.ensure_future(pool.run(task))
                started[flight] = task
                running.add(flight)
            if not running:
                break
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            failure: BaseException | None = None
            for future in sorted(done, key=lambda f: order[started[f].id]):
                error = asyncio.CancelledError() if future.cancelled() else future.exception()
                if error is not None:  # the batch's failure (a dead store), never a task's
                    failure = failure or error
                    continue
                record = future.result()
                for model, usage in record.usage.items():
                    batch_budget.by_model[model] = batch_budget.by_model.get(model, Usage()) + usage
                await finish(record)  # the others that completed are recorded before a failure is raised
            if failure is not None:
                raise failure
    finally:
        await cancel_all(started)  # the ones in flight stop; every outcome is retrieved
