"""The Ray backend: tasks run on a pool of actors, each holding the flow and its loaded models.

A local model is loaded once per actor (worker process), not once per task: the llama.cpp engine
cache lives in the process and the actor lives for the whole batch. Each actor opens the flow's
store once (honouring its ``fallback``, as ``forkpath run`` does); workers share the cache and
trajectories through it (give it a Redis URL). The driver schedules, writes ``results.jsonl``
as records arrive and enforces the batch budget, with the same code as the local backend
(``_runner._dispatch``): this module only runs one task on a free actor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forkpath._errors import StoreError
from forkpath._types import Task
from forkpath.batch._config import BatchConfig
from forkpath.batch._records import TaskRecord
from forkpath.batch._task import run_task


class FlowWorker:
    """One Ray actor: builds the flow once, opens its store once, runs tasks on them."""

    def __init__(self, spec: dict[str, Any], base_dir: str, config: dict[str, Any]) -> None:
        from forkpath.flows import Flow, FlowSpec

        self.flow = Flow.from_spec(FlowSpec.model_validate(spec), base_dir=Path(base_dir))
        self.config = BatchConfig.model_validate(config)
        self.store: Any = None

    async def run(self, task: dict[str, Any]) -> dict[str, Any]:
        if self.store is None and self.flow.spec.store is not None:
            self.store = self.flow.open_store()  # in the actor's event loop, where it is used
        record = await run_task(self.flow, Task.model_validate(task), self.config, self.store)
        return record.model_dump(mode="json")


class RayPool:
    """``slots`` actors; :meth:`run` runs one task on an idle one (the scheduler never asks for
    more at once than there are actors)."""

    def __init__(self, flow: Any, config: BatchConfig, slots: int) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=config.ray_address,
                ignore_reinit_error=True,
                log_to_driver=False,
                include_dashboard=False,
            )
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        worker_class: Any = ray.remote(FlowWorker)
        self._worker_class = worker_class.options(num_cpus=min(1.0, cpus / slots))
        self._args = (
            flow.spec.model_dump(mode="json", by_alias=True),
            str(flow.base_dir),
            config.model_dump(mode="json"),
        )
        self.run_id = config.run_id
        self.slots = slots
        self._actors: list[Any] = []
        self._idle = [self._new_actor() for _ in range(slots)]

    def _new_actor(self) -> Any:
        actor = self._worker_class.remote(*self._args)
        self._actors.append(actor)
        return actor

    async def run(self, task: Task) -> TaskRecord:
        import ray

        actor = self._idle.pop()
        try:
            payload = await actor.run.remote(task.model_dump(mode="json"))
        except ray.exceptions.RayTaskError as e:  # raised inside the actor, which lives on
            self._idle.append(actor)
            cause = e.cause
            if isinstance(cause, StoreError):
                raise StoreError(str(cause)) from None  # the batch's failure: one line, as locally
            return self._failed(task, f"ray: {type(cause).__name__}: {_first_line(cause)}")
        except Exception as e:  # the actor died or Ray failed: record it, replace the actor
            ray.kill(actor)
            self._idle.append(self._new_actor())
            return self._failed(task, f"ray: {type(e).__name__}: {_last_line(e)}")
        self._idle.append(actor)
        return TaskRecord.model_validate(payload)

    def _failed(self, task: Task, error: str) -> TaskRecord:
        return TaskRecord(run_id=self.run_id, task_id=task.id, status="error", error=error[:500])

    async def aclose(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _last_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[-1]
