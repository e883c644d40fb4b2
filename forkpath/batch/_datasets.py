"""Task sets for batch runs: built-in HumanEval and GSM8K, or any JSONL file with a field map.

A malformed line of a JSONL file is reported as ``file:line: what is wrong`` and either
stops the run (the default) or is skipped with a warning, as the user chose.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forkpath._errors import ConfigError
from forkpath._types import IOCase, Task

logger = logging.getLogger(__name__)


class FieldMap(BaseModel):
    """Which JSON field of a line holds each part of a task (dotted paths allowed)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = "id"
    """Task id; missing: the line number."""
    prompt: str = "prompt"
    test: str | None = None
    """HumanEval-style test code with ``check(candidate)``."""
    asserts: str | None = None
    """A list of MBPP-style assert statements."""
    io_cases: str | None = None
    """A list of ``{input, output}`` stdin/stdout cases."""
    entry_point: str | None = None
    answer: str | None = None
    """The reference answer (math, text)."""


class DatasetSpec(BaseModel):
    """A task set: ``humaneval``, ``gsm8k``, or ``jsonl`` with a path and a field map."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["humaneval", "gsm8k", "jsonl"]
    path: str | None = None
    """The JSONL file (``name: jsonl`` only)."""
    kind: Literal["code", "math", "text"] | None = None
    """Task kind for JSONL tasks (default: code if tests are mapped, math if an answer is, else text)."""
    fields: FieldMap = Field(default_factory=FieldMap)
    offset: int = Field(default=0, ge=0)
    """Skip this many tasks first."""
    limit: int | None = Field(default=None, ge=1)
    """Take at most this many tasks."""
    on_bad_line: Literal["stop", "skip"] = "stop"
    """A malformed JSONL line stops the run (default) or is skipped with a warning."""


def parse_dataset(text: str) -> DatasetSpec:
    """The command-line form: ``humaneval``, ``gsm8k``, or a path to a ``.jsonl`` file."""
    if text in ("humaneval", "gsm8k"):
        return DatasetSpec(name=text)  # type: ignore[arg-type]
    if text.endswith(".jsonl"):
        return DatasetSpec(name="jsonl", path=text)
    raise ConfigError(f"unknown dataset {text!r}; use humaneval, gsm8k, or a path to a .jsonl file")


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def _jsonl_tasks(spec: DatasetSpec) -> Iterator[Task]:
    assert spec.path is not None
    path = Path(spec.path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read dataset: {e.strerror}", where=str(path)) from None
    f = spec.fields
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("a line must be a JSON object")
                data: dict[str, Any] = {"prompt": _get(row, f.prompt)}
                data["id"] = str(_get(row, f.id)) if f.id and _has(row, f.id) else f"{path.stem}/{number}"
                for name in ("test", "asserts", "entry_point", "answer"):
                    source = getattr(f, name)
                    if source:
                        data[name] = _get(row, source)
                if f.io_cases:
                    data["io_cases"] = [IOCase.model_validate(c) for c in _get(row, f.io_cases)]
                if data.get("answer") is not None:
                    data["answer"] = str(data["answer"])
                data["kind"] = spec.kind or (
                    "code"
                    if any(k in data for k in ("test", "asserts", "io_cases"))
                    else "math"
                    if "answer" in data
                    else "text"
                )
                yield Task.model_validate(data)
            except (ValueError, KeyError, ValidationError) as e:
                problem = _describe(e)
                if spec.on_bad_line == "stop":
                    raise ConfigError(problem, where=f"{path}:{number}") from None
                logger.warning("%s:%d: skipped: %s", path, number, problem)


def _has(row: dict[str, Any], path: str) -> bool:
    try:
        _get(row, path)
    except KeyError:
        return False
    return True


def _describe(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON: {error.msg} at column {error.colno}"
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(error)


def load_tasks(spec: DatasetSpec) -> list[Task]:
    """The tasks of ``spec``, after offset and limit."""
    from forkpath.verifiers import gsm8k_to_task, humaneval_tasks

    if spec.name == "humaneval":
        tasks: Iterator[Task] = iter(humaneval_tasks())
    elif spec.name == "gsm8k":
        from importlib import resources

        text = resources.files("forkpath").joinpath("data/gsm8k/test.jsonl").read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        tasks = (gsm8k_to_task(row, i) for i, row in enumerate(rows))
    else:
        if spec.path is None:
            raise ConfigError("a jsonl dataset needs a path")
        tasks = _jsonl_tasks(spec)
    selected: list[Task] = []
    seen: set[str] = set()
    for i, task in enumerate(tasks):
        if i < spec.offset:
            continue
        if spec.limit is not None and len(selected) >= spec.limit:
            break
        if task.id in seen:
            raise ConfigError(
                f"task id {task.id!r} appears twice; results are kept per task id", where=spec.path
            )
        seen.add(task.id)
        selected.append(task)
    return selected
