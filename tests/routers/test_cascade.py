"""cascade on the fake model: exact deferrals for each rule, verdict rule, configuration checks."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from forkpath import Budget, BudgetLimits, ConfigError, Task
from forkpath._trace import RoutingEvent, Tracer
from forkpath.models import FakeModel
from forkpath.strategies._base import Context
from forkpath.strategies._cascade import cascade

SHORT = Task(id="t/short", prompt="short?", kind="text", answer="42")
LONG = Task(id="t/long", prompt="long?", kind="text", answer="yes")


def models() -> Context:
    small = FakeModel("fake/small", script={"short": ["42"], "long": ["a long and winding answer"]})
    large = FakeModel("fake/large", script={"short": ["forty-two"], "long": ["yes"]})
    return Context({"small": small, "large": large})


class Verdict(BaseModel):
    passed: bool
    score: float


class ExactAnswer:
    async def verify(self, task: Task, candidate: str) -> Verdict:
        return Verdict(passed=candidate == task.answer, score=float(candidate == task.answer))


async def test_chow_sum_defers_the_long_answer_only() -> None:
    context = models()
    strategy = cascade(router={"name": "chow_sum", "threshold": -1.0})
    with Tracer() as tracer:
        short = await strategy(SHORT, context)
        long = await strategy(LONG, context)
    # Every fake token has log-probability about log(0.9): 2 tokens sum to ~-0.2, 25 to ~-2.6.
    assert (short.answer, short.info["deferred"], short.chosen) == ("42", False, 0)
    assert (long.answer, long.info["deferred"], long.chosen) == ("yes", True, 1)
    assert [c.model for c in long.candidates] == ["fake/small", "fake/large"]
    assert short.info["score"] == pytest.approx(short.info["features"]["sum_logprob"])
    assert -0.5 < short.info["score"] < -0.1 and long.info["score"] < -2.0
    decisions = [e.decision for e in tracer.events if isinstance(e, RoutingEvent)]
    assert decisions == ["keep", "request"]
    assert "fake/large" not in short.usage and long.usage["fake/large"].calls == 1


async def test_chow_mean_and_quantile_read_their_features() -> None:
    context = models()
    never = await cascade(router={"name": "chow_mean", "threshold": -5.0})(LONG, context)
    always = await cascade(router={"name": "chow_quantile", "alpha": 0.5, "threshold": 0.0})(SHORT, context)
    assert not never.info["deferred"] and always.info["deferred"]
    assert always.info["features"]["q0.5_logprob"] == pytest.approx(always.info["score"])


async def test_the_verdict_rule_defers_failing_answers() -> None:
    context = models()
    context.verifier = ExactAnswer()
    strategy = cascade(router="verdict")
    kept = await strategy(SHORT, context)
    deferred = await strategy(LONG, context)
    assert (kept.answer, kept.candidates[0].passed) == ("42", True)
    assert (deferred.answer, deferred.candidates[0].passed, deferred.info["deferred"]) == ("yes", False, True)


async def test_misconfiguration_and_budget() -> None:
    with pytest.raises(ConfigError, match="needs a verifier"):
        await cascade(router="verdict")(SHORT, models())
    with pytest.raises(ConfigError, match="not an answer feature"):
        cascade(router="entropy")
    with pytest.raises(ConfigError, match="hands over a 'token'"):
        cascade(router={"name": "threshold", "feature": "mean_logprob", "threshold": 0.0})
    budget = Budget(BudgetLimits(max_calls=1))
    context = models()
    context.budget = budget
    capped = await cascade(router={"name": "chow_sum", "threshold": -1.0})(LONG, context)
    assert capped.stopped == "budget" and capped.answer == "a long and winding answer"
