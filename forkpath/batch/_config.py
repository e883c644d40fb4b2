"""How a batch runs (:class:`BatchConfig`) and how it went (:class:`BatchSummary`).

Two budgets, two meanings. The flow's own ``budget:`` limits each task: every task's flow run
makes a fresh :class:`~forkpath.Budget` from it, on every backend, and a task it cuts short is
finished (its best answer is recorded with ``stopped: budget``). ``BatchConfig.batch_budget``
limits the whole invocation: once it is spent no new task starts, the tasks in flight finish,
and the summary says ``stopped: batch_budget``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forkpath import BudgetLimits


class BatchConfig(BaseModel):
    """How a batch run goes."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1)
    """Names the run; a rerun with the same id resumes it."""
    out_dir: Path
    """Where ``results.jsonl``, traces and the report go."""
    concurrency: int = Field(default=2, ge=1)
    """Tasks in flight at once (Ray: actors)."""
    task_timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """A task running longer is recorded as ``timeout``."""
    retries: int = Field(default=1, ge=0)
    """Extra attempts for a task that failed with a transient error (rate limit, 5xx, connection)."""
    batch_budget: BudgetLimits = Field(default_factory=BudgetLimits)
    """Limits on the whole invocation, summed over its tasks (seconds: since the batch started).
    Once one is reached no new task starts and the tasks in flight finish. A rerun starts a fresh
    one. Each task's own limit is the flow's ``budget:``, never this."""
    rerun_budget_stopped: bool = False
    """Also run again the tasks their own budget cut short (by default they are finished)."""
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    """``ray.init(address=...)``; None starts or joins a local Ray."""
    dataset: str | None = None
    """What the tasks came from, for the run's ``run.json`` (``forkpath view`` shows it)."""


class BatchSummary(BaseModel):
    """What one invocation of :func:`run_batch` did."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    total: int
    """Tasks in the task set."""
    skipped: int
    """Already finished before this invocation (resumed)."""
    ran: int = 0
    """Tasks run and recorded by this invocation."""
    budget_stopped: int = 0
    """Of those, tasks their own (the flow's) budget cut short: finished, with their best answer."""
    failed: int = 0
    """Of those, tasks recorded as ``error`` or ``timeout`` (a rerun runs them again)."""
    not_started: int = 0
    """Tasks left unstarted because the batch budget was spent (a rerun runs them)."""
    stopped: Literal["done", "batch_budget"] = "done"
    """``batch_budget`` when the batch-wide limit stopped new tasks from starting."""
    batch_limit: str | None = None
    """Which batch limit was reached: ``calls``, ``tokens``, ``seconds`` or ``cost``."""
    results_path: str
