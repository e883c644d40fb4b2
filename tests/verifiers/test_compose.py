"""Composite verifiers: all_of, weighted, first_failure; built from registry specs."""

from __future__ import annotations

import pytest

from forkpath import ConfigError, Task
from forkpath.verifiers import (
    AllOf,
    FirstFailure,
    TestResult,
    Verdict,
    Weighted,
    make_verifier,
)

TASK = Task(id="t", prompt="p", kind="math", answer="4")


class Fixed:
    """A verifier with a fixed verdict that counts its calls."""

    def __init__(self, name: str, passed: bool, score: float, trusted: bool = True) -> None:
        self.name, self.passed, self.score, self.trusted = name, passed, score, trusted
        self.calls = 0

    async def verify(self, task: Task, candidate: str) -> Verdict:
        self.calls += 1
        test = TestResult(name="check", passed=self.passed, reason="ok" if self.passed else "wrong_answer")
        return Verdict(
            passed=self.passed, score=self.score, tests=[test], verifier=self.name, trusted=self.trusted
        )


async def test_all_of_needs_every_part() -> None:
    verdict = await AllOf([Fixed("a", True, 1.0), Fixed("b", False, 0.5)]).verify(TASK, "x")
    assert not verdict.passed
    assert verdict.score == pytest.approx(0.75)
    assert [t.name for t in verdict.tests] == ["a: check", "b: check"]
    assert [p.verifier for p in verdict.parts] == ["a", "b"]
    assert (await AllOf([Fixed("a", True, 1.0), Fixed("b", True, 1.0)]).verify(TASK, "x")).passed


async def test_weighted_mixes_scores_and_marks_untrusted_parts() -> None:
    given, ai = Fixed("given", True, 1.0), Fixed("ai", False, 0.5, trusted=False)
    verdict = await Weighted([given, ai], [3.0, 1.0]).verify(TASK, "x")
    assert verdict.score == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)
    assert not verdict.passed  # default: every part must pass
    assert not verdict.trusted
    lenient = await Weighted([given, ai], [3.0, 1.0], threshold=0.8).verify(TASK, "x")
    assert lenient.passed


async def test_first_failure_stops_early_and_scores_progress() -> None:
    cheap, failing, expensive = (
        Fixed("syntax", True, 1.0),
        Fixed("tests", False, 0.5),
        Fixed("judge", True, 1.0),
    )
    verdict = await FirstFailure([cheap, failing, expensive]).verify(TASK, "x")
    assert not verdict.passed
    assert expensive.calls == 0
    assert verdict.score == pytest.approx((1 + 0.5) / 3)
    assert verdict.details["failed_at"] == "Fixed"
    everything = await FirstFailure([cheap, expensive]).verify(TASK, "x")
    assert everything.passed and everything.score == 1.0


async def test_specs_build_nested_composites_from_the_registry() -> None:
    verifier = make_verifier(
        {
            "name": "first_failure",
            "verifiers": [
                "math_answer",
                {
                    "name": "weighted",
                    "verifiers": ["math_answer", {"name": "math_answer"}],
                    "weights": [1, 3],
                },
            ],
        }
    )
    assert isinstance(verifier, FirstFailure)
    verdict = await verifier.verify(TASK, "2 + 2 = \\boxed{4}")
    assert verdict.passed and verdict.verifier == "first_failure"
    assert [p.verifier for p in verdict.parts] == ["math_answer", "weighted"]
    failed = await verifier.verify(TASK, "\\boxed{5}")
    assert failed.details["failed_at"] == "math_answer"


def test_objects_are_valid_specs_too() -> None:
    part = Fixed("a", True, 1.0)
    built = make_verifier({"name": "all_of", "verifiers": [part, "math_answer"]})
    assert isinstance(built, AllOf) and built.parts[0] is part


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ({"name": "all_of", "verifiers": []}, ConfigError, "verifiers: List should have at least 1 item"),
        (
            {"name": "weighted", "verifiers": ["math_answer"], "weights": [1, 2]},
            ConfigError,
            "2 weights for 1 verifiers",
        ),
        (
            {"name": "weighted", "verifiers": ["math_answer"], "weights": [-1]},
            ConfigError,
            "greater than or equal to 0",
        ),
        ({"name": "all_of", "verifiers": ["math_anwser"]}, ConfigError, "did you mean math_answer"),
        ({"name": "all_of", "verifiers": [{"timeout_s": 3}]}, ConfigError, "needs a 'name'"),
        ({"name": "math_answer", "rounding": 3}, ConfigError, "rounding: Extra inputs"),
        (42, ConfigError, "not a verifier spec"),
    ],
)
def test_bad_specs_are_one_line_config_errors(spec: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        make_verifier(spec)
    assert "\n" not in str(info.value)
