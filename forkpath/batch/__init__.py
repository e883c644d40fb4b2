"""Batch runs: a flow over a task set, resumable, measured, locally or on Ray.

Example:
    >>> from forkpath import DatasetSpec, load_tasks
    >>> from forkpath.batch import BatchConfig, run_batch
    >>> tasks = load_tasks(DatasetSpec(name="humaneval", limit=5))
    >>> await run_batch(Flow.from_yaml("examples/quickstart.yaml"), tasks,
    ...                 BatchConfig(run_id="demo", out_dir=Path("runs/demo")))
"""

from forkpath.batch._metrics import RunMetrics, pass_at_k, summarize
from forkpath.batch._records import ResultsFile, RunManifest, TaskRecord, read_records
from forkpath.batch._report import compare_rows, write_report
from forkpath.batch._runner import BatchConfig, BatchSummary, run_batch

__all__ = [
    "BatchConfig",
    "BatchSummary",
    "ResultsFile",
    "RunManifest",
    "RunMetrics",
    "TaskRecord",
    "compare_rows",
    "pass_at_k",
    "read_records",
    "run_batch",
    "summarize",
    "write_report",
]
