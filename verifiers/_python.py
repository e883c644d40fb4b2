"""Python tests in the sandbox: HumanEval ``check``, MBPP asserts, stdin/stdout cases."""

import time
from typing import Annotated, cast, get_args

from pydantic import Field

from forkpath import gather_all
from forkpath._errors import VerifierError
from forkpath._params import Int, NonNegative
from forkpath._types import Task
from forkpath.verifiers._extract import (
    defines,
    extract_code,
    first_difference,
    humaneval_program,
    outputs_match,
)
from forkpath.verifiers._registry import verifiers
from forkpath.verifiers._sandbox import (
    Isolation,
    Limits,
    ProgramRun,
    RawRun,
    Sandbox,
    _literal,
    default_sandbox,
    shared_sandbox,
)
from forkpath.verifiers._testprog import TestProgram, assert_tests, humaneval_tests
from forkpath.verifiers._types import Reason, Source, TestResult, Verdict, score_of

_OUTPUT_TAIL = 2000


class PythonTestsVerifier:
    """Runs a candidate against the task's tests in a sandboxed process.

    Which tests run depends on what the task carries: HumanEval ``test`` + ``entry_point``
    (the candidate is joined to the prompt), ``asserts``, or ``io_cases`` (one run per case,
    outputs compared whitespace- and float-tolerantly). Each test is reported on its own and
    the score is the fraction passed.

    The function under test (the entry point) returns to the tests a copy of its result built
    only of built-in values, so a returned object cannot fake equality (``__eq__`` always
    True); a function returning any other type fails its tests with a ``TypeError`` that says
    so. Turn ``strict_values`` off for tasks whose functions return their own classes.

    Args:
        limits: resource limits of each run.
        sandbox: where runs go (default: the process-wide sandbox, one run per CPU).
        float_tol: tolerance of numeric tokens in stdin/stdout comparisons.
        case_sensitive: compare stdin/stdout tokens case-sensitively.
        source: what the tests' results are marked as (``ai`` for model-written tests).
        name: the verifier name its verdicts carry.
        strict_values: accept only built-in values from the function under test.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        sandbox: Sandbox | None = None,
        float_tol: float = 1e-6,
        case_sensitive: bool = True,
        source: Source = "given",
        name: str = "python_tests",
        strict_values: bool = True,
    ) -> None:
        self.limits = limits or Limits()
        self.sandbox = sandbox or default_sandbox()
        self.float_tol = float_tol
        self.case_sensitive = case_sensitive
        self.source: Source = source
        self.name = name
        self.strict_values = strict_values

    async def verify(self, task: Task, candidate: str) -> Verdict:
        started = time.perf_counter()
        if task.test is not None:
            if not task.entry_point:
                raise VerifierError(f"task {task.id}: HumanEval-style test code needs an entry_point")
            program = humaneval_tests(task.test, task.entry_point)
            code = humaneval_program(task.prompt, candidate, task.entry_point)
            tests, details = await self._run_tests(code, program, None)
        elif task.asserts:
            program = assert_tests(tuple(task.asserts))
            if task.entry_point and defines(task.prompt, task.entry_point):
                code = humaneval_program(task.prompt, candidate, task.entry_point)  # prompt is a stub
            else:
                code = extract_code(candidate, task.entry_point)
            if not code.strip():
                tests, details = self._all(program.names, "no_answer", "the answer contains no code"), {}
            else:
                tests, details = await self._run_tests(code, program, task.entry_point)
        elif task.io_cases:
            tests, details = await self._run_io(task, extract_code(candidate, task.entry_point))
        else:
            raise VerifierError(
                f"task {task.id}: no tests to run (give test + entry_point, asserts or io_cases)"
            )
        isolation = details.pop("isolation", self.sandbox.isolation)
        ran = details.pop("run_s", None)
        return Verdict(
            passed=bool(tests) and all(t.passed for t in tests) and not details.pop("incomplete", False),
            score=score_of(tests),
            tests=tests,
            verifier=self.name,
            isolation=isolation,
            duration_s=ran if ran is not None else time.perf_counter() - started,
            trusted=self.source == "given",
            details=details,
        )

    def _all(self, names: tuple[str, ...] | list[str], reason: Reason, message: str) -> list[TestResult]:
        return [
            TestResult(name=n, passed=False, reason=reason, message=message, source=self.source)
            for n in names
        ]

    async def _run_tests(
        self, code: str, program: TestProgram, wrap: str | None
    ) -> tuple[list[TestResult], dict]:
        job = {
            "mode": "tests",
            "code": code,
            "tests": program.source,
            "test_function": program.function,
            "entry_point": program.entry_point,
            "wrap": wrap,  # asserts call the function by name: that name gets the plain-values check
            "plain_values": self.strict_values,
        }
        raw = await self.sandbox.execute(job, limits=self.limits)
        details: dict = {"isolation": raw.isolation, "run_s": raw.duration_s}
        if raw.stdout:
            details["stdout"] = raw.stdout.decode("utf-8", "replace")[-_OUTPUT_TAIL:]
        if raw.stderr:
            details["stderr"] = raw.stderr.decode("utf-8", "replace")[-_OUTPUT_TAIL:]
        tests = self._results(raw, program.names)
        done = any(kind == "done" for kind, _ in raw.records)
        if not done or raw.timed_out:
            details["incomplete"] = True
        return tests, details

    def _results(self, raw: RawRun, names: tuple[str, ...]) -> list[TestResult]:
        ends: dict[int, TestResult] = {}
        abort: tuple[str, str] | None = None
        for kind, rest in raw.records:
            if kind == "syntax":
                return self._all(names, "syntax_error", _literal(rest))
            if kind == "load":
                reason, _, message = rest.partition(" ")
                return self._all(names, _reason(reason), f"while loading the candidate: {_literal(message)}")
            if kind == "testerror":
                return self._all(names, "exception", f"the tests could not start: {_literal(rest)}")
            if kind == "abort" and abort is None:
                reason, _, message = rest.partition(" ")
                abort = (_reason(reason), _literal(message))
                if abort[1].startswith("tampering"):
                    return self._all(names, "exception", abort[1])
            if kind == "end":
                index, reason, duration, message = [*rest.split(" ", 3), "", "", ""][:4]
                if index.isdigit() and int(index) < len(names) and int(index) not in ends:
                    i = int(index)
                    ends[i] = TestResult(
                        name=names[i],
                        passed=reason == "ok",
                        reason=_reason(reason),
                        message=_literal(message),
                        duration_s=_float(duration),
                        source=self.source,
                    )
        if not any(kind == "loaded" for kind, _ in raw.records):
            reason, message = raw.fatal(self.limits)
            return self._all(names, _reason(reason), f"while loading the candidate: {message}")
        results: list[TestResult] = []
        fatal: tuple[str, str] | None = None
        for i, name in enumerate(names):
            if i in ends:
                results.append(ends[i])
            elif fatal is None:
                fatal = abort or raw.fatal(self.limits)
                results.append(
                    TestResult(
                        name=name,
                        passed=False,
                        reason=_reason(fatal[0]),
                        message=fatal[1],
                        source=self.source,
                    )
                )
            else:
                results.append(
                    TestResult(
                        name=name,
                        passed=False,
                        reason="not_run",
                        message=f"not run: an earlier test ended the run ({fatal[0]})",
                        source=self.source,
                    )
                )
        return results

    async def _run_io(self, task: Task, code: str) -> tuple[list[TestResult], dict]:
        names = [f"case {i + 1}" for i in range(len(task.io_cases))]
        if not code.strip():
            return self._all(names, "no_answer", "the answer contains no code"), {}
        try:
            compile(code, "solution.py", "exec")  # compiling runs nothing; saves one run per case
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            return self._all(names, "syntax_error", f"{type(e).__name__}: {e}"[:600]), {}
        runs = await gather_all(
            *(self.sandbox.run_program(code, case.input, limits=self.limits) for case in task.io_cases)
        )
        tests = [
            self._io_result(name, run, case.output)
            for name, run, case in zip(names, runs, task.io_cases, strict=True)
        ]
        details: dict = {
            "isolation": runs[0].isolation if runs else self.sandbox.isolation,
            "run_s": sum(r.duration_s for r in runs),
        }
        first_failed = next((r for r in runs if r.stderr and not r.ok), None)
        if first_failed is not None:
            details["stderr"] = first_failed.stderr[-_OUTPUT_TAIL:]
        return tests, details

    def _io_result(self, name: str, run: ProgramRun, expected: str) -> TestResult:
        def result(passed: bool, reason: Reason, message: str = "") -> TestResult:
            return TestResult(
                name=name,
                passed=passed,
                reason=reason,
                message=message,
                duration_s=run.duration_s,
                source=self.source,
            )

        if run.error is not None:
            return result(False, _reason(run.error), run.message)
        if run.exit_code != 0:
            return result(False, "crashed", f"exit code {run.exit_code}")
        if outputs_match(run.stdout, expected, float_tol=self.float_tol, case_sensitive=self.case_sensitive):
            return result(True, "ok")
        return result(False, "wrong_answer", first_difference(run.stdout, expected))


_REASONS: set[str] = set(get_args(Reason))


def _reason(text: str) -> Reason:
    return cast(Reason, text) if text in _REASONS else "crashed"


def _float(text: str) -> float:
    try:
        return max(0.0, float(text))
    except ValueError:
        return 0.0


@verifiers.register("python_tests")
def python_tests(
    limits: Limits | None = None,
    float_tol: NonNegative = 1e-6,
    case_sensitive: bool = True,
    max_parallel: Annotated[Int, Field(ge=1, le=1024)] | None = None,
    isolation: Isolation = "auto",
    strict_values: bool = True,
) -> PythonTestsVerifier:
    """Run the task's Python tests (HumanEval check, asserts or stdin/stdout cases) in the sandbox.

    Args:
        limits: per-run resource limits (timeout, memory, processes, output, ...).
        float_tol: numeric tolerance of stdin/stdout comparisons.
        case_sensitive: compare stdin/stdout tokens case-sensitively.
        max_parallel: concurrent runs of the pool this verifier uses (default: one per CPU);
            verifiers asking for the same pool share it.
        isolation: ``auto`` (namespaces and a uid drop when available), ``full`` (refuse to run
            without them) or ``basic``.
        strict_values: the function under test may return only built-in values (see
            :class:`PythonTestsVerifier`).
    """
    sandbox: Sandbox = shared_sandbox(max_parallel, isolation)
    return PythonTestsVerifier(
        limits,
        sandbox=sandbox,
        float_tol=float_tol,
        case_sensitive=case_sensitive,
        strict_values=strict_values,
    )
