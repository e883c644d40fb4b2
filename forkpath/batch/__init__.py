"""Batch runs: a flow over a task set, resumable, measured, locally or on Ray.

The flow's ``budget:`` limits each task (every task gets its own); a limit on the whole batch is
``BatchConfig.batch_budget``.

Example:
    >>> from forkpath import BudgetLimits, DatasetSpec, load_tasks
    >>> from forkpath.batch import BatchConfig, run_batch
    >>> tasks = load_tasks(DatasetSpec(name="humaneval", limit=5))
    >>> await run_batch(Flow.from_yaml("examples/quickstart.yaml"), tasks,
    ...                 BatchConfig(run_id="demo", out_dir=Path("runs/demo"),
    ...                             batch_budget=BudgetLimits(max_calls=100)))
"""

from forkpath.batch._config import BatchConfig, BatchSummary
from forkpath.batch._metrics import RunMetrics, pass_at_k, summarize
from forkpath.batch._records import ResultsFile, RunManifest, TaskRecord, check_out_dir, read_records
from forkpath.batch._report import compare_rows, write_report
from forkpath.batch._runner import run_batch

__all__ = [
    "BatchConfig",
    "BatchSummary",
    "ResultsFile",
    "RunManifest",
    "RunMetrics",
    "TaskRecord",
    "check_out_dir",
    "compare_rows",
    "pass_at_k",
    "read_records",
    "run_batch",
    "summarize",
    "write_report",
]
