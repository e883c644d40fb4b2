"""python_tests: the three test shapes, code extraction, per-test results and scores."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from forkpath import ConfigError, IOCase, Task, VerifierError, humaneval_task
from forkpath.verifiers import Limits, PythonTestsVerifier, Sandbox, make_verifier, verifiers, verify_many

ADD_TASK = Task(
    id="add",
    prompt="",
    kind="code",
    entry_point="add",
    test="def check(candidate):\n    assert candidate(1, 2) == 3\n",
)
ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture
def verifier(sandbox: Sandbox) -> PythonTestsVerifier:
    return PythonTestsVerifier(Limits(timeout_s=5), sandbox=sandbox)


MBPP = Task(
    id="mbpp/2",
    prompt="Write a function to find the shared elements of two lists.",
    kind="code",
    asserts=[
        "assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
        "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))",
        "assert set(similar_elements((11, 12, 14, 13), (17, 15, 14, 13))) == set((13, 14))",
    ],
)
SUM_IO = Task(
    id="io/sum",
    prompt="Read n, then n numbers; print their sum and their mean.",
    kind="code",
    io_cases=[
        IOCase(input="3\n1 2 3\n", output="6\n2.0\n"),
        IOCase(input="2\n1 2\n", output="3 1.5"),
        IOCase(input="3\n1 1 2\n", output="4\n1.333333\n"),
    ],
)


async def test_humaneval_completion_body_is_joined_to_the_prompt(verifier: PythonTestsVerifier) -> None:
    task = humaneval_task(0)
    verdict = await verifier.verify(task, task.metadata["canonical_solution"])
    assert verdict.passed
    assert verdict.score == 1.0
    assert len(verdict.tests) == 7  # one per top-level assert of check()
    assert all(t.reason == "ok" and t.source == "given" for t in verdict.tests)
    assert verdict.trusted


async def test_humaneval_full_function_in_a_fenced_answer(verifier: PythonTestsVerifier) -> None:
    task = humaneval_task(2)  # truncate_number
    answer = (
        "Here is my solution:\n\n```python\ndef truncate_number(number: float) -> float:\n"
        "    return number % 1.0\n```\n\nIt returns the decimal part."
    )
    verdict = await verifier.verify(task, answer)
    assert verdict.passed, verdict.summary()


async def test_prompt_helpers_stay_available_to_a_full_function(verifier: PythonTestsVerifier) -> None:
    task = humaneval_task(10)  # make_palindrome uses is_palindrome, defined in the prompt
    answer = (
        "def make_palindrome(string: str) -> str:\n"
        "    for i in range(len(string) + 1):\n"
        "        if is_palindrome(string[i:]):\n"
        "            return string + string[:i][::-1]\n"
    )
    assert (await verifier.verify(task, answer)).passed


async def test_partial_credit_and_actual_values(verifier: PythonTestsVerifier) -> None:
    task = humaneval_task(0)
    verdict = await verifier.verify(task, "    return True\n")
    assert not verdict.passed
    assert verdict.score == pytest.approx(4 / 7)
    failed = verdict.failures
    assert {t.reason for t in failed} == {"wrong_answer"}
    assert failed[0].message == "AssertionError: got True"
    assert "0.05) == False" in failed[0].name


async def test_exception_reports_last_traceback_line_with_location(verifier: PythonTestsVerifier) -> None:
    task = humaneval_task(0)
    verdict = await verifier.verify(task, "    return numbers[100]\n")
    assert {t.reason for t in verdict.tests} == {"exception"}
    assert verdict.tests[0].message.startswith("IndexError: list index out of range (candidate.py, line ")


async def test_syntax_error_fails_every_test(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(humaneval_task(0), "    return (\n")
    assert {t.reason for t in verdict.tests} == {"syntax_error"}
    assert "SyntaxError" in verdict.tests[0].message
    assert verdict.score == 0.0


async def test_missing_entry_point(verifier: PythonTestsVerifier) -> None:
    task = humaneval_task(0).model_copy(update={"prompt": ""})
    verdict = await verifier.verify(task, "def something_else():\n    return 1\n")
    assert {t.reason for t in verdict.tests} == {"exception"}
    assert "does not define 'has_close_elements'" in verdict.tests[0].message


async def test_mbpp_asserts_each_count(verifier: PythonTestsVerifier) -> None:
    good = "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
    verdict = await verifier.verify(MBPP, f"```python\n{good}```")
    assert verdict.passed
    assert [t.name for t in verdict.tests] == MBPP.asserts
    half = "def similar_elements(a, b):\n    return (4, 5)\n"
    verdict = await verifier.verify(MBPP, half)
    assert [t.passed for t in verdict.tests] == [True, False, False]
    assert verdict.score == pytest.approx(1 / 3)


async def test_answer_without_code(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(MBPP, "")
    assert {t.reason for t in verdict.tests} == {"no_answer"}


async def test_stdin_stdout_cases_with_tolerant_matching(verifier: PythonTestsVerifier) -> None:
    program = "n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs))\nprint(sum(xs) / n)\n"
    verdict = await verifier.verify(SUM_IO, program)
    assert verdict.passed, verdict.summary()
    assert [t.name for t in verdict.tests] == ["case 1", "case 2", "case 3"]


async def test_stdin_stdout_failures_are_typed(verifier: PythonTestsVerifier) -> None:
    wrong = "input()\nprint(sum(map(int, input().split())) + 1)\nprint(0)\n"
    verdict = await verifier.verify(SUM_IO, wrong)
    assert {t.reason for t in verdict.tests} == {"wrong_answer"}
    assert verdict.tests[0].message == "token 1: expected '6', got '7'"
    crash = "n = int(input())\nprint(1 / 0)\n"
    verdict = await verifier.verify(SUM_IO, crash)
    assert {t.reason for t in verdict.tests} == {"exception"}
    assert verdict.tests[0].message.startswith("ZeroDivisionError")
    assert "Traceback" in verdict.details["stderr"]
    verdict = await verifier.verify(SUM_IO, "print(")
    assert {t.reason for t in verdict.tests} == {"syntax_error"}


async def test_tasks_without_tests_or_with_broken_tests_are_verifier_errors(
    verifier: PythonTestsVerifier,
) -> None:
    with pytest.raises(VerifierError, match="no tests to run"):
        await verifier.verify(Task(id="t", prompt="p", kind="code"), "x = 1")
    broken = Task(
        id="t", prompt="", kind="code", entry_point="f", test="def check(candidate):\n    assert (\n"
    )
    with pytest.raises(VerifierError, match="test code does not compile"):
        await verifier.verify(broken, "def f(): pass")
    nocheck = Task(
        id="t", prompt="", kind="code", entry_point="f", test="def test(candidate):\n    assert 1\n"
    )
    with pytest.raises(VerifierError, match="no check"):
        await verifier.verify(nocheck, "def f(): pass")
    with pytest.raises(VerifierError, match="needs an entry_point"):
        await verifier.verify(Task(id="t", prompt="", kind="code", test="def check(c): pass"), "")


async def test_setup_statements_run_and_asserts_in_loops_count_once(verifier: PythonTestsVerifier) -> None:
    task = Task(
        id="loops",
        prompt="",
        kind="code",
        entry_point="double",
        test=(
            "def check(candidate):\n"
            "    values = [1, 2, 3]\n"
            "    for v in values:\n"
            "        assert candidate(v) == 2 * v\n"
            "    assert candidate(0) == 0\n"
        ),
    )
    verdict = await verifier.verify(task, "def double(x):\n    return x + x\n")
    assert verdict.passed
    assert len(verdict.tests) == 2


async def test_many_candidates_in_parallel(verifier: PythonTestsVerifier) -> None:
    task = humaneval_task(0)
    candidates = [task.metadata["canonical_solution"], "    return True\n", "    return False\n"] * 4
    verdicts = await verify_many(verifier, task, candidates)
    assert [v.passed for v in verdicts] == [True, False, False] * 4


def test_registry_builds_it_from_yaml_like_params() -> None:
    verifier = make_verifier({"name": "python_tests", "limits": {"timeout_s": 2, "memory_mb": 512}})
    assert isinstance(verifier, PythonTestsVerifier)
    assert verifier.limits == Limits(timeout_s=2, memory_mb=512)
    assert verifier.registered.name == "python_tests"
    with pytest.raises(ConfigError, match=r"limits\.timeout_s"):
        make_verifier({"name": "python_tests", "limits": {"timeout_s": -1}})


def fork_servers() -> int:
    """Fork-server processes started by this process."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            count += ppid == os.getpid() and b"_harness.py\x00serve" in command
    return count


async def test_verifiers_with_their_own_pool_size_share_one_sandbox() -> None:
    first = verifiers.create("python_tests", max_parallel=2)
    assert (await first.verify(ADD_TASK, ADD)).passed
    baseline = fork_servers()
    assert baseline >= 1
    made = []
    for _ in range(5):
        verifier = verifiers.create("python_tests", max_parallel=2)
        assert (await verifier.verify(ADD_TASK, ADD)).passed
        made.append(verifier.sandbox)
        del verifier
        gc.collect()
    assert all(sandbox is first.sandbox for sandbox in made)
    assert fork_servers() == baseline


async def test_strict_values_can_be_turned_off(sandbox: Sandbox) -> None:
    task = Task(
        id="half",
        prompt="",
        kind="code",
        entry_point="half",
        test="def check(candidate):\n    assert candidate(1) == 0.5\n",
    )
    fraction = "from fractions import Fraction\ndef half(x):\n    return Fraction(x, 2)\n"
    strict = await PythonTestsVerifier(Limits(timeout_s=5), sandbox=sandbox).verify(task, fraction)
    assert not strict.passed
    assert strict.tests[0].message.startswith("TypeError: the candidate returned a Fraction object")
    lenient = PythonTestsVerifier(Limits(timeout_s=5), sandbox=sandbox, strict_values=False)
    assert (await lenient.verify(task, fraction)).passed


ORDINARY = """
import asyncio, collections, dataclasses, decimal, enum, fractions, functools, inspect
import logging, subprocess, threading, typing, warnings

Point = collections.namedtuple("Point", "x y")  # these four look at their caller's frame
Color = enum.Enum("Color", "red green")
T = typing.TypeVar("T")


@dataclasses.dataclass
class Box:
    value: int


@functools.lru_cache(None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def add(a, b):
    logging.warning("adding %s and %s", a, b)
    warnings.warn("careful")

    async def later():
        await asyncio.sleep(0)
        return a + b

    total = asyncio.run(later())
    worker = threading.Thread(target=fib, args=(10,))
    worker.start()
    worker.join()
    assert inspect.signature(fib) is not None
    echoed = subprocess.run(["echo", "hi"], capture_output=True, text=True).stdout
    return int(decimal.Decimal(total)) + int(fractions.Fraction(Box(0).value)) + Point(0, 0).x + len(echoed) - 3
"""


async def test_the_sandbox_guard_leaves_ordinary_code_alone(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(ADD_TASK, ORDINARY)
    assert verdict.passed, verdict.summary()
    assert "WARNING:root:adding 1 and 2" in verdict.details["stderr"]
