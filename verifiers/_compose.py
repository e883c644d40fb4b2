"""Verifiers made of verifiers: all of them, a weighted mix, or in order until the first failure."""

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo

from forkpath import gather_all
from forkpath._errors import ConfigError
from forkpath._params import NonNegative, Probability
from forkpath._types import Task
from forkpath.verifiers._registry import make_verifier, verifier_name
from forkpath.verifiers._registry import verifiers as registry
from forkpath.verifiers._types import TestResult, Verdict, Verifier


def _combine(name: str, verdicts: list[Verdict], *, passed: bool, score: float) -> Verdict:
    tests = [
        TestResult(**{**t.model_dump(), "name": f"{v.verifier}: {t.name}"}) for v in verdicts for t in v.tests
    ]
    isolations = sorted({v.isolation for v in verdicts if v.isolation != "none"})
    return Verdict(
        passed=passed,
        score=min(max(score, 0.0), 1.0),
        tests=tests,
        verifier=name,
        isolation="; ".join(isolations) or "none",
        duration_s=sum(v.duration_s for v in verdicts),
        trusted=all(v.trusted for v in verdicts),
        parts=verdicts,
    )


class AllOf:
    """Passes when every part passes; the score is the mean of the parts' scores. Parts run concurrently."""

    def __init__(self, parts: list[Verifier]) -> None:
        if not parts:
            raise ConfigError("all_of needs at least one verifier")
        self.parts = parts

    async def verify(self, task: Task, candidate: str) -> Verdict:
        verdicts = list(await gather_all(*(p.verify(task, candidate) for p in self.parts)))
        return _combine(
            "all_of",
            verdicts,
            passed=all(v.passed for v in verdicts),
            score=sum(v.score for v in verdicts) / len(verdicts),
        )


class Weighted:
    """The weighted mean of the parts' scores; passes at ``threshold`` (default: when every part passes)."""

    def __init__(self, parts: list[Verifier], weights: list[float], threshold: float | None = None) -> None:
        if not parts:
            raise ConfigError("weighted needs at least one verifier")
        if len(weights) != len(parts):
            raise ConfigError(f"weighted has {len(parts)} verifiers but {len(weights)} weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"weighted needs non-negative weights with a positive sum, got {weights}")
        self.parts = parts
        self.weights = weights
        self.threshold = threshold

    async def verify(self, task: Task, candidate: str) -> Verdict:
        verdicts = list(await gather_all(*(p.verify(task, candidate) for p in self.parts)))
        score = sum(w * v.score for w, v in zip(self.weights, verdicts, strict=True)) / sum(self.weights)
        passed = all(v.passed for v in verdicts) if self.threshold is None else score >= self.threshold
        return _combine("weighted", verdicts, passed=passed, score=score)


class FirstFailure:
    """Runs the parts in order and stops at the first that fails (cheap, trusted checks first).

    The score counts each passed stage as one and the failing stage by its own score, over the
    number of stages, so a candidate that gets further scores higher.
    """

    def __init__(self, parts: list[Verifier]) -> None:
        if not parts:
            raise ConfigError("first_failure needs at least one verifier")
        self.parts = parts

    async def verify(self, task: Task, candidate: str) -> Verdict:
        verdicts: list[Verdict] = []
        for part in self.parts:
            verdict = await part.verify(task, candidate)
            verdicts.append(verdict)
            if not verdict.passed:
                break
        passed = all(v.passed for v in verdicts) and len(verdicts) == len(self.parts)
        score = (sum(1.0 for v in verdicts if v.passed) + (0.0 if passed else verdicts[-1].score)) / len(
            self.parts
        )
        combined = _combine("first_failure", verdicts, passed=passed, score=score)
        if not passed:
            combined.details["failed_at"] = verifier_name(self.parts[len(verdicts) - 1])
        return combined


async def verify_many(verifier: Verifier, task: Task, candidates: list[str]) -> list[Verdict]:
    """Verify many candidates of one task concurrently (the sandbox pool bounds the parallelism)."""
    return list(await gather_all(*(verifier.verify(task, c) for c in candidates)))


def _parts(specs: list[Any]) -> list[Verifier]:
    return [make_verifier(spec) for spec in specs]


def _known_part(spec: Any) -> Any:
    """Check a part's name and parameters when the composite's parameters are validated, so a
    wrong part is found before anything runs (making it is left to the factory)."""
    try:
        if isinstance(spec, str):
            registry.get(spec)
        elif isinstance(spec, Mapping):
            params = dict(spec)
            name = params.pop("name", None)
            if not isinstance(name, str):
                raise ValueError(
                    f"a verifier spec needs a 'name' naming a registered one; got {dict(spec)!r:.200}"
                )
            registry.validate(name, params)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    return spec


def _matching_weights(weights: list[float] | None, info: ValidationInfo) -> list[float] | None:
    parts = info.data.get("verifiers")
    if weights is not None and parts is not None and len(weights) != len(parts):
        raise ValueError(f"{len(weights)} weights for {len(parts)} verifiers: give one weight per verifier")
    if weights is not None and sum(weights) <= 0:
        raise ValueError("the weights need a positive sum")
    return weights


Parts = Annotated[
    list[Annotated[str | dict[str, Any] | Verifier, AfterValidator(_known_part)]], Field(min_length=1)
]
"""At least one verifier spec: names, ``{"name": ..., **params}`` mappings or objects."""


@registry.register("all_of")
def all_of(verifiers: Parts) -> AllOf:
    """Pass only when every verifier passes.

    Args:
        verifiers: verifier specs: names, ``{"name": ..., **params}`` mappings or objects.
    """
    return AllOf(_parts(verifiers))


@registry.register("weighted")
def weighted(
    verifiers: Parts,
    weights: Annotated[list[NonNegative] | None, AfterValidator(_matching_weights)] = None,
    threshold: Probability | None = None,
) -> Weighted:
    """Score as the weighted mean of the verifiers' scores.

    Args:
        verifiers: verifier specs.
        weights: one per verifier (default: equal).
        threshold: score that passes (default: pass only when every verifier passes).
    """
    parts = _parts(verifiers)
    return Weighted(parts, weights if weights is not None else [1.0] * len(parts), threshold)


@registry.register("first_failure")
def first_failure(verifiers: Parts) -> FirstFailure:
    """Run the verifiers in order, stopping at the first failure.

    Args:
        verifiers: verifier specs, cheapest and most trusted first.
    """
    return FirstFailure(_parts(verifiers))
