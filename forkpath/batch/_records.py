"""One line of ``results.jsonl`` per task, written as each task completes.

``results.jsonl`` is the source of truth of a run. The last record of a task id wins (a task that
failed and was run again has two). A rerun repairs a torn last line (the process was killed
mid-write), moves any other unreadable line to ``results.bad.jsonl``, and runs every task that
has no finished record: errors and timeouts run again. A task its own budget cut short is
finished (``stopped: budget``, its best answer kept); it runs again only when asked
(``BatchConfig.rerun_budget_stopped``, ``forkpath batch --rerun-budget-stopped``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forkpath._errors import ConfigError
from forkpath.models import Usage

logger = logging.getLogger(__name__)


class TaskRecord(BaseModel):
    """The outcome of one task in a batch run."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    task_id: str
    status: Literal["ok", "error", "timeout"]
    answer: str | None = None
    passed: bool | None = None
    score: float | None = None
    n_candidates: int = 0
    """Candidates with a verdict (for pass@k)."""
    n_passed: int = 0
    """Of those, how many passed."""
    usage: dict[str, Usage] = Field(default_factory=dict)
    latency_s: float = 0.0
    attempts: int = 1
    error: str | None = None
    """``ExceptionType: message`` when the task failed."""
    stopped: Literal["done", "budget"] | None = None
    """How a finished task ended: ``done``, or ``budget`` when the flow's budget (the task's own)
    cut it short and the answer is the best found before it did. None for errors and timeouts."""
    trace_path: str | None = None
    flow: str | None = None
    """Fingerprint of the flow that made this record (see :func:`flow_fingerprint`)."""

    @property
    def finished(self) -> bool:
        """Whether a resumed run skips this task (a task stopped by its own budget is finished)."""
        return self.status == "ok"

    @property
    def budget_stopped(self) -> bool:
        """Whether the task's own budget cut it short."""
        return self.status == "ok" and self.stopped == "budget"

    @property
    def tokens(self) -> int:
        return sum(u.total_tokens for u in self.usage.values())

    @property
    def cost(self) -> float:
        return sum(u.cost for u in self.usage.values())


class ResultsFile:
    """Append-only ``results.jsonl`` with resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, *, repair: bool = False) -> dict[str, TaskRecord]:
        """The last record of each task id. Readers never write; the batch runner (the only
        writer) passes ``repair`` to cut a torn last line and set other bad lines aside
        (in ``results.bad.jsonl``; each is logged with its ``file:line`` and what is wrong)."""
        if not self.path.exists():
            return {}
        records: dict[str, TaskRecord] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        good: list[str] = []
        bad: list[str] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = TaskRecord.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as e:
                torn = number == len(lines) and not line.endswith("\n")
                if torn:
                    logger.warning("%s:%d: torn last line (interrupted write) skipped", self.path, number)
                else:
                    where = f"moved to {self.path.with_name('results.bad.jsonl')}" if repair else "skipped"
                    logger.warning(
                        "%s:%d: unreadable record (%s) %s",
                        self.path,
                        number,
                        _why(e),
                        where,
                    )
                    bad.append(line if line.endswith("\n") else line + "\n")
                continue
            good.append(line if line.endswith("\n") else line + "\n")
            records[record.task_id] = record
        if repair and (bad or (lines and not lines[-1].endswith("\n"))):
            if bad:
                with self.path.with_name("results.bad.jsonl").open("a", encoding="utf-8") as f:
                    f.writelines(bad)
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(good), encoding="utf-8")
            os.replace(tmp, self.path)
        return records

    def append(self, record: TaskRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(record.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


def _why(error: Exception) -> str:
    """What is wrong with a line, in a few words."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return f"not JSON: {error}"


def check_out_dir(path: Path, *, what: str = "output folder") -> None:
    """Create ``path`` if needed and make sure files can be written in it.

    Raises:
        ConfigError: one line naming ``what`` and the problem: ``path`` is a file, lies inside
            a file, or cannot be created or written.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {path} is inside {parent}, which is a file")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{what} {path} cannot be created: {e.strerror or e}") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(f"{what} {path} is not writable: {e.strerror or e}") from None


class RunManifest(BaseModel):
    """``run.json`` beside ``results.jsonl``: what a viewer shows of a batch run before reading
    its records (written when a run starts, rewritten when it ends)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    flow: str | None = None
    """The flow's name."""
    dataset: str | None = None
    """What the tasks came from, as the caller described it."""
    tasks: int = 0
    """Tasks in this invocation (finished ones included)."""
    started: float
    """Unix time this invocation started."""
    finished: float | None = None
    """Unix time it ended; None while it runs (or when it was killed)."""
    stopped: str | None = None
    """``done`` or ``budget`` once it ended."""
    pid: int | None = None
    host: str | None = None
    """The process running it, to tell a live run from a killed one."""

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "run.json.tmp"
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, run_dir / "run.json")

    @classmethod
    def read(cls, run_dir: Path) -> RunManifest | None:
        """The manifest of ``run_dir``; None when it has none or it is unreadable."""
        try:
            return cls.model_validate_json((run_dir / "run.json").read_bytes())
        except (OSError, ValidationError):
            return None


def read_records(run_dir: Path) -> list[TaskRecord]:
    """The records of a finished or partial run directory."""
    return list(ResultsFile(run_dir / "results.jsonl").load().values())


def record_from_result(
    run_id: str, task_id: str, result: Any, *, latency_s: float, attempts: int, usage: dict[str, Usage]
) -> TaskRecord:
    """The record of a flow run that finished (``result`` is a :class:`~forkpath.flows.FlowResult`)."""
    verified = [c for c in result.candidates if c.get("passed") is not None]
    return TaskRecord(
        run_id=run_id,
        task_id=task_id,
        status="ok",
        answer=result.answer,
        passed=result.passed,
        score=result.score,
        n_candidates=len(verified),
        n_passed=sum(1 for c in verified if c.get("passed")),
        usage=usage,
        latency_s=latency_s,
        attempts=attempts,
        trace_path=result.trace_path,
        stopped=result.stopped,
    )
