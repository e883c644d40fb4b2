"""One line of ``results.jsonl`` per task, written as each task completes.

``results.jsonl`` is the source of truth of a run: a rerun reads it, drops a torn last line
(the process was killed mid-write), keeps one record per task id, and runs only the rest.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    trace_path: str | None = None

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

    def load(self) -> dict[str, TaskRecord]:
        """Finished records by task id; repairs a torn last line so appends stay valid JSONL."""
        if not self.path.exists():
            return {}
        records: dict[str, TaskRecord] = {}
        good_lines: list[str] = []
        torn = False
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = TaskRecord.model_validate(json.loads(line))
                except (json.JSONDecodeError, ValidationError):
                    logger.warning(
                        "%s:%d: unreadable result line dropped (interrupted write?)", self.path, number
                    )
                    torn = True
                    continue
                if record.task_id not in records:
                    good_lines.append(line if line.endswith("\n") else line + "\n")
                records[record.task_id] = record
        if torn or (good_lines and not self.path.read_text(encoding="utf-8").endswith("\n")):
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(good_lines), encoding="utf-8")
            os.replace(tmp, self.path)
        return records

    def append(self, record: TaskRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(record.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_records(run_dir: Path) -> list[TaskRecord]:
    """The records of a finished or partial run directory."""
    return list(ResultsFile(run_dir / "results.jsonl").load().values())


def record_from_result(run_id: str, task_id: str, result: Any, latency_s: float, attempts: int) -> TaskRecord:
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
        usage=result.usage,
        latency_s=latency_s,
        attempts=attempts,
        trace_path=result.trace_path,
    )
