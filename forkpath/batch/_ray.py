"""The Ray backend: tasks run on a pool of actors, each holding the flow and its loaded models.

A local model is loaded once per actor (worker process), not once per task: the llama.cpp engine
cache lives in the process and the actor lives for the whole batch. The driver keeps writing
``results.jsonl`` as records arrive, and stops submitting when the shared budget runs out.
Workers share the cache and trajectories through the flow's store (give it a Redis URL).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from forkpath import Budget
from forkpath._types import Task
from forkpath.batch._records import TaskRecord
from forkpath.models import Usage


class FlowWorker:
    """One Ray actor: builds the flow once, runs tasks on it."""

    def __init__(self, spec: dict[str, Any], base_dir: str, config: dict[str, Any]) -> None:
        from forkpath.batch._runner import BatchConfig
        from forkpath.flows import Flow, FlowSpec

        self.flow = Flow.from_spec(FlowSpec.model_validate(spec), base_dir=Path(base_dir))
        self.config = BatchConfig.model_validate(config)

    async def run(self, task: dict[str, Any]) -> dict[str, Any]:
        from forkpath.batch._runner import run_task

        record = await run_task(self.flow, Task.model_validate(task), self.config, None)
        return record.model_dump(mode="json")


async def run_on_ray(
    flow: Any, tasks: list[Task], config: Any, finish: Callable[[TaskRecord], Awaitable[None]]
) -> Literal["done", "budget"]:
    import ray

    if not ray.is_initialized():
        ray.init(
            address=config.ray_address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False
        )
    n_actors = max(1, min(config.concurrency, len(tasks)))
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    worker_class: Any = ray.remote(FlowWorker)
    worker_class = worker_class.options(num_cpus=min(1.0, cpus / n_actors))
    spec = flow.spec.model_dump(mode="json", by_alias=True)
    actors: list[Any] = [
        worker_class.remote(spec, str(flow.base_dir), config.model_dump(mode="json")) for _ in range(n_actors)
    ]
    budget = Budget(config.budget)
    budget.started = time.monotonic()
    pending: dict[Any, tuple[Any, Task]] = {}
    queue = list(tasks)
    idle = list(actors)
    stopped: Literal["done", "budget"] = "done"
    try:
        while queue or pending:
            while queue and idle and stopped == "done":
                if budget.exhausted():
                    stopped = "budget"
                    queue.clear()
                    break
                actor, task = idle.pop(), queue.pop(0)
                pending[actor.run.remote(task.model_dump(mode="json"))] = (actor, task)
            if not pending:
                break
            ready, _ = await asyncio.to_thread(ray.wait, list(pending), num_returns=1)
            for ref in ready:
                actor, task = pending.pop(ref)
                try:
                    record = TaskRecord.model_validate(await asyncio.to_thread(ray.get, ref))
                    idle.append(actor)
                except Exception as e:  # the worker died or Ray failed: record it, keep going
                    message = (str(e).strip().splitlines() or [""])[-1]
                    record = TaskRecord(
                        run_id=config.run_id,
                        task_id=task.id,
                        status="error",
                        error=f"ray: {type(e).__name__}: {message}"[:500],
                    )
                    if not isinstance(e, ray.exceptions.RayTaskError):
                        ray.kill(actor)  # a dead or broken actor gets a fresh replacement
                        idle.append(
                            worker_class.remote(spec, str(flow.base_dir), config.model_dump(mode="json"))
                        )
                        actors.append(idle[-1])
                for model, usage in record.usage.items():
                    budget.by_model[model] = budget.by_model.get(model, Usage()) + usage
                await finish(record)
    finally:
        for actor in actors:
            ray.kill(actor)
    return stopped
