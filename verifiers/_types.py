"""The verifier protocol and its typed verdict.

A verifier takes a task and a candidate answer and returns a :class:`Verdict`: whether it
passed, a score in [0, 1] usable as a search reward (the fraction of tests passed), and one
:class:`TestResult` per test with the failure reason. A failing candidate is a verdict; a
verifier that cannot run at all raises :class:`~forkpath.VerifierError`.
"""

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from forkpath._types import Task

Reason = Literal[
    "ok",
    "wrong_answer",
    "exception",
    "timeout",
    "memory",
    "crashed",
    "syntax_error",
    "output_limit",
    "not_run",
    "no_answer",
]
"""Why a test passed or failed.

``ok`` passed; ``wrong_answer`` a failed assertion or mismatched output; ``exception`` an error
raised by the candidate (message: the last traceback line); ``timeout`` the wall-clock or CPU
limit; ``memory`` the memory limit; ``crashed`` the process died (signal, early exit);
``syntax_error`` the code does not compile; ``output_limit`` too much output; ``not_run`` an
earlier fatal failure stopped the run first; ``no_answer`` nothing to check was found (no code
block, no final answer, an unparseable judge reply).
"""

Source = Literal["given", "ai", "model"]
"""Where a test came from: the task (``given``), tests a model wrote (``ai``), a model's judgment."""


class TestResult(BaseModel):
    """The outcome of one test."""

    __test__ = False  # not a pytest test class, despite the name

    model_config = ConfigDict(extra="forbid")

    name: str
    """What the test checks, e.g. the assert statement or ``case 3``."""
    passed: bool
    reason: Reason
    message: str = ""
    """Failure detail: assertion text, exception line, expected vs actual output."""
    duration_s: float = 0.0
    source: Source = "given"


class Verdict(BaseModel):
    """What a verifier concluded about one candidate."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    score: float = Field(ge=0.0, le=1.0)
    """Fraction of tests passed (or the judge's probability); usable as a reward."""
    tests: list[TestResult] = Field(default_factory=list)
    verifier: str = ""
    """Registry name of the verifier that produced it."""
    isolation: str = "none"
    """Safeguards in force while candidate code ran (``none`` when no code ran)."""
    duration_s: float = 0.0
    """Time spent checking: sandbox run time for code (queueing for the pool excluded)."""
    trusted: bool = True
    """False when the verdict rests on a model's judgment or on model-written tests."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Verifier-specific facts: extracted answer, judge probability, stderr excerpt, ..."""
    parts: list["Verdict"] = Field(default_factory=list)
    """Verdicts of the parts of a composite verifier."""

    @property
    def failures(self) -> list[TestResult]:
        return [t for t in self.tests if not t.passed]

    def summary(self) -> str:
        """One line: verdict, score, first failure."""
        head = (
            f"{'PASS' if self.passed else 'FAIL'} {self.score:.2f} ({len(self.tests)} tests, {self.verifier})"
        )
        first = next(iter(self.failures), None)
        return head if first is None else f"{head}: {first.name}: {first.reason} {first.message}".rstrip()


@runtime_checkable
class Verifier(Protocol):
    """Checks one candidate answer to one task."""

    async def verify(self, task: Task, candidate: str) -> Verdict:
        """Return the verdict; raise :class:`~forkpath.VerifierError` only if checking is impossible."""
        ...


def score_of(tests: list[TestResult]) -> float:
    """Fraction of ``tests`` that passed (0 when there are none)."""
    return sum(t.passed for t in tests) / len(tests) if tests else 0.0
