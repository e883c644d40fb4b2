"""best_of_n on the fake model: exact choices, early stop, budget stop, capability checks."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task
from forkpath._trace import Tracer
from forkpath.models import FakeModel, ModelCapabilities
from forkpath.strategies import Context, strategies

TASK = Task(id="t/0", prompt="What is 6*7?", kind="text", answer="42")


class Verdict(BaseModel):
    passed: bool
    score: float


class ExactAnswer:
    """A stand-in verifier: full score for the reference answer, partial for a near miss."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def verify(self, task: Task, candidate: str) -> Verdict:
        self.seen.append(candidate)
        if candidate == task.answer:
            return Verdict(passed=True, score=1.0)
        return Verdict(passed=False, score=0.5 if candidate.startswith("4") else 0.0)


def model(*answers: str) -> FakeModel:
    return FakeModel("fake/m", script={"6*7": list(answers)})


async def test_reranks_by_verifier_score() -> None:
    m = model("41", "13", "40", "12")
    verifier = ExactAnswer()
    result = await strategies.create("best_of_n", n=4, temperature=1.0)(
        TASK, Context({"default": m}, verifier)
    )
    assert [c.text for c in result.candidates] == ["41", "13", "40", "12"]
    assert [c.score for c in result.candidates] == [0.5, 0.0, 0.5, 0.0]
    assert result.stopped == "done"
    assert result.chosen in (0, 2) and result.answer == result.candidates[result.chosen].text
    # ties on score are broken by mean logprob
    lp = [c.mean_logprob or 0.0 for c in result.candidates]
    assert result.chosen == (0 if lp[0] >= lp[2] else 2)
    assert result.usage["fake/m"].calls == 4


async def test_stops_at_the_first_passing_candidate() -> None:
    m = model("41", "42", "42", "42")
    verifier = ExactAnswer()
    with Tracer() as tracer:
        result = await strategies.create("best_of_n", n=4, temperature=1.0)(
            TASK, Context({"default": m}, verifier)
        )
    assert result.stopped == "early_stop"
    assert result.answer == "42" and result.passed
    assert verifier.seen == ["41", "42"]
    kinds = [e.type for e in tracer.events]
    assert kinds[0] == "strategy" and kinds[-1] == "strategy"
    assert kinds.count("verdict") == 2


async def test_budget_caps_the_samples_and_says_so() -> None:
    m = model("40", "41", "43", "44")
    budget = Budget(BudgetLimits(max_calls=2))
    result = await strategies.create("best_of_n", n=4, temperature=1.0)(
        TASK, Context({"default": m}, ExactAnswer(), budget=budget)
    )
    assert result.stopped == "budget"
    assert len(result.candidates) == 2 and m.calls == 2
    assert result.answer in ("40", "41")
    assert budget.exhausted() == "calls"


async def test_mean_logprob_rerank_needs_no_verifier() -> None:
    m = model("42", "x7", "41")
    result = await strategies.create("best_of_n", n=3, temperature=1.0, rerank="mean_logprob")(
        TASK, Context({"default": m})
    )
    scores = [c.score for c in result.candidates]
    assert result.chosen == scores.index(max(scores))


async def test_configuration_errors_come_before_any_call() -> None:
    chat_only = FakeModel("fake/chat", script={"6*7": ["42"]})
    chat_only.capabilities = ModelCapabilities()
    with pytest.raises(CapabilityError, match="best_of_n needs token logprobs, which model fake/chat"):
        await strategies.create("best_of_n", rerank="mean_logprob")(TASK, Context({"default": chat_only}))
    with pytest.raises(ConfigError, match="best_of_n needs a verifier"):
        await strategies.create("best_of_n")(TASK, Context({"default": chat_only}))
    with pytest.raises(ConfigError, match="no model named 'large'"):
        await strategies.create("best_of_n", model="large")(
            TASK, Context({"default": chat_only}, ExactAnswer())
        )
    assert chat_only.calls == 0


async def test_in_flight_starts_the_next_sample_as_one_ends() -> None:
    # All at once, every sample is started before the first is checked; one at a time, the
    # sample after the first pass is never started, and without a pass the candidates are the same.
    eager, lazy = model("41", "42", "42", "42"), model("41", "42", "42", "42")
    verifier = ExactAnswer()
    first = await strategies.create("best_of_n", n=4, temperature=1.0)(
        TASK, Context({"default": eager}, verifier)
    )
    second = await strategies.create("best_of_n", n=4, temperature=1.0, in_flight=1)(
        TASK, Context({"default": lazy}, verifier)
    )
    assert first.answer == second.answer == "42" and second.stopped == "early_stop"
    assert eager.calls == 4 and lazy.calls == 2
    failing = model("41", "13", "40", "12")
    result = await strategies.create("best_of_n", n=4, temperature=1.0, in_flight=3)(
        TASK, Context({"default": failing}, ExactAnswer())
    )
    assert [c.text for c in result.candidates] == ["41", "13", "40", "12"] and failing.calls == 4
    capped = model("40", "41", "43", "44")
    budget = Budget(BudgetLimits(max_calls=2))
    result = await strategies.create("best_of_n", n=4, temperature=1.0, in_flight=1)(
        TASK, Context({"default": capped}, ExactAnswer(), budget=budget)
    )
    assert result.stopped == "budget" and capped.calls == 2
    with pytest.raises(ConfigError, match="in_flight"):
        strategies.create("best_of_n", in_flight=0)
