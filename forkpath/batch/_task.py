"""One task of a batch: the flow run with its timeout and retries, turned into a record.

Both backends run tasks through :func:`run_task` (the local runner in its event loop, each Ray
actor in its own), so a task means the same thing wherever it runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any

from forkpath._errors import StoreError, is_retryable
from forkpath._types import Task
from forkpath.batch._config import BatchConfig
from forkpath.batch._records import TaskRecord, record_from_result
from forkpath.models import UsageMeter, usage_meter

logger = logging.getLogger(__name__)


def safe_name(task_id: str) -> str:
    """A file-name-safe, collision-free form of a task id (``HumanEval/0`` -> ``HumanEval_0-1a2b3c``)."""
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:6]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', task_id)}-{digest}"


async def run_task(flow: Any, task: Task, config: BatchConfig, store: Any = None) -> TaskRecord:
    """Run ``task`` through ``flow``: a timeout, retries of transient failures, one record.

    The flow run makes the task's own budget from the flow's ``budget:`` (nothing is shared
    with other tasks). Every model call of every attempt is metered, so the record says what
    the task cost even when it failed or timed out.

    Raises:
        StoreError: the store failed. That is not the task's failure but the batch's: the
            runner stops, and the task runs again on resume.
    """
    attempts = 0
    started = time.perf_counter()
    meter = UsageMeter()

    def failed(status: str, error: str) -> TaskRecord:
        return TaskRecord.model_validate(
            {
                "run_id": config.run_id,
                "task_id": task.id,
                "status": status,
                "attempts": attempts,
                "latency_s": time.perf_counter() - started,
                "usage": dict(meter.by_model),
                "error": error,
            }
        )

    with usage_meter(meter):
        while True:
            attempts += 1
            try:
                run = flow.run(
                    task,
                    run_id=f"{config.run_id}-{safe_name(task.id)}",
                    runs_dir=config.out_dir / "traces",
                    store=store,
                )
                result = await asyncio.wait_for(run, timeout=config.task_timeout_s)
            except TimeoutError:
                return failed("timeout", f"timed out after {config.task_timeout_s} s")
            except StoreError:
                raise
            except Exception as e:
                if is_retryable(e) and attempts <= config.retries:
                    logger.warning("%s: transient failure, retrying: %s", task.id, e)
                    await asyncio.sleep(min(2.0**attempts, 30.0))
                    continue
                message = str(e).splitlines()[0] if str(e) else ""
                return failed("error", f"{type(e).__name__}: {message}"[:500])
            return record_from_result(
                config.run_id,
                task.id,
                result,
                latency_s=time.perf_counter() - started,
                attempts=attempts,
                usage=dict(meter.by_model),
            )
