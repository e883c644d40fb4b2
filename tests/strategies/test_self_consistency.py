"""self_consistency: votes on the fake model (exact choices), weighting, early stop, budget, e2e."""

from __future__ import annotations

import math

import pytest

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task
from forkpath._trace import Tracer
from forkpath.models import FakeModel, GenerateRequest, GenerateResult, ModelCapabilities
from forkpath.strategies import Ballot, Context, tally
from forkpath.strategies._self_consistency import self_consistency
from forkpath.verifiers import make_verifier

TASK = Task(id="t/0", prompt="What is 6*7?", kind="math", answer="42")
NUMERIC = TASK.model_copy(update={"metadata": {"answer_format": "number"}})


class NoLogprobs(FakeModel):
    """The fake model as a backend without logprobs (an API model that returns text only)."""

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        result = await super()._generate(request)
        return result.model_copy(update={"tokens": []})


def model(*answers: str) -> FakeModel:
    return FakeModel("fake/m", script={"6*7": list(answers)})


async def test_majority_vote_groups_equivalent_math_answers() -> None:
    m = model(
        "The answer is 41.", "#### 42", "so \\boxed{42}", "The answer is 42.0", "The answer is 41", "no idea"
    )
    result = await self_consistency(n=6, early_stop=False)(TASK, Context({"default": m}))
    assert [c.answer for c in result.candidates] == ["41", "42", "42", "42.0", "41", None]
    assert result.info["votes"] == {"42": 3.0, "41": 2.0}
    # the most likely member of the winning group is returned
    members = [1, 2, 3]
    best = max(members, key=lambda i: (result.candidates[i].mean_logprob, -i))
    assert result.chosen == best and result.info["winner"] == result.candidates[best].answer
    assert result.stopped == "done" and m.calls == 6
    assert result.usage["fake/m"].calls == 6


async def test_verifier_reports_the_chosen_answer_without_deciding_it() -> None:
    m = model("The answer is 41.", "The answer is 41.", "The answer is 42.")
    result = await self_consistency(n=3, early_stop=False)(
        TASK, Context({"default": m}, make_verifier("math_answer"))
    )
    assert result.answer == "The answer is 41." and result.passed is False
    assert result.candidates[result.chosen or 0].score == 1.0  # the vote weight, not the verdict


async def test_weighted_by_verifier_score() -> None:
    class Judge:
        name = "judge"

        async def verify(self, task: Task, candidate: str) -> object:
            from forkpath.verifiers import Verdict

            return Verdict(passed=False, score=0.9 if "42" in candidate else 0.2)

    m = model("The answer is 41.", "The answer is 41.", "The answer is 42.")
    with Tracer() as tracer:
        result = await self_consistency(n=3, weighting="verifier")(TASK, Context({"default": m}, Judge()))
    assert result.info["votes"] == {"42": 0.9, "41": 0.4}
    assert result.answer == "The answer is 42."
    assert [e.type for e in tracer.events].count("verdict") == 3


async def test_weighted_by_sequence_probability() -> None:
    m = FakeModel("fake/m", script={"6*7": ["The answer is 41.", "The answer is 42."]}, confidence=0.9)
    result = await self_consistency(n=2, weighting="probability")(TASK, Context({"default": m}))
    weights = [c.score for c in result.candidates]
    assert all(w is not None and 0 < w <= 1 for w in weights)
    assert result.chosen == (0 if weights[0] >= weights[1] else 1)  # type: ignore[operator]


def test_tally_counts_text_votes_and_keeps_the_earliest_group_on_a_plain_tie() -> None:
    counted = tally([Ballot("a"), Ballot("b"), Ballot("a"), Ballot(None), Ballot("b")])
    assert [(g.answer, g.members, g.weight) for g in counted.groups] == [
        ("a", [0, 2], 2.0),
        ("b", [1, 4], 2.0),
    ]
    assert counted.winner == 0 and counted.abstained == 1 and counted.tie


async def test_placeholder_answers_abstain_and_never_win() -> None:
    # The run: 'N' (the instruction echoed) was the first group of a 4-way tie and won.
    m = model("The answer is N.", "The answer is N.", "The answer is 41 - 7M.", "The answer is 42.")
    result = await self_consistency(n=4, early_stop=False)(NUMERIC, Context({"default": m}))
    assert [c.answer for c in result.candidates] == [None, None, None, "42"]
    assert result.info["votes"] == {"42": 1.0} and result.info["abstained"] == 3
    assert result.chosen == 3 and result.answer == "The answer is 42."
    assert result.info["agreement"] == 0.25


async def test_a_vote_nobody_can_read_has_no_answer() -> None:
    m = model("The answer is N.", "I cannot tell.", "The answer is \\boxed{}")
    result = await self_consistency(n=3, early_stop=False)(NUMERIC, Context({"default": m}))
    assert result.answer is None and result.chosen is None
    assert result.info["votes"] == {} and result.info["abstained"] == 3 and result.info["winner"] is None
    assert len(result.candidates) == 3


async def test_numeric_answers_are_grouped_as_numbers() -> None:
    m = model("The answer is N = 49.", "#### 49.00", "The answer is $49.", "The answer is 50.")
    result = await self_consistency(n=4, early_stop=False)(NUMERIC, Context({"default": m}))
    assert [c.answer for c in result.candidates] == ["49", "49", "49", "50"]
    assert result.info["votes"] == {"49": 3.0, "50": 1.0}


async def test_a_tie_goes_to_the_more_likely_group() -> None:
    m = model("The answer is 41.", "The answer is 42.", "The answer is 42.", "The answer is 41.")
    result = await self_consistency(n=4, early_stop=False)(NUMERIC, Context({"default": m}))
    lp = [c.mean_logprob for c in result.candidates]
    assert all(x is not None for x in lp)
    forty_one, forty_two = (lp[0] + lp[3]) / 2, (lp[1] + lp[2]) / 2  # type: ignore[operator]
    assert forty_one != forty_two
    expected = "41" if forty_one > forty_two else "42"
    assert result.info["tie"] is True and result.info["winner"] == expected
    assert result.candidates[result.chosen or 0].answer == expected


async def test_without_logprobs_a_tie_goes_to_the_earliest_complete_sample() -> None:
    # Sample 0 is cut at max_tokens ("length"): the tie goes to the group of sample 1.
    m = NoLogprobs(
        "fake/m", script={"6*7": ["The answer is 41. And then some more words", "The answer is 42."]}
    )
    result = await self_consistency(n=2, early_stop=False, max_tokens=24)(NUMERIC, Context({"default": m}))
    assert [c.mean_logprob for c in result.candidates] == [None, None]
    assert [c.answer for c in result.candidates] == ["41", "42"]
    assert result.info["winner"] == "42" and result.chosen == 1


async def test_early_stop_once_the_leader_is_certain() -> None:
    m = model("The answer is 42.", "#### 42", "\\boxed{42}", "The answer is 41.", "The answer is 40.")
    result = await self_consistency(n=5)(TASK, Context({"default": m}))
    assert result.stopped == "early_stop" and m.calls == 3
    assert result.info["votes"] == {"42": 3.0}


async def test_budget_stops_with_the_vote_so_far() -> None:
    m = model("The answer is 40.", "The answer is 41.", "The answer is 41.", "The answer is 43.")
    budget = Budget(BudgetLimits(max_calls=2))
    result = await self_consistency(n=4)(TASK, Context({"default": m}, budget=budget))
    assert result.stopped == "budget" and m.calls == 2
    assert result.info["votes"] == {"40": 1.0, "41": 1.0}
    assert result.answer == "The answer is 40."


async def test_configuration_errors_come_before_any_call() -> None:
    chat_only = model("The answer is 42.")
    chat_only.capabilities = ModelCapabilities()
    with pytest.raises(CapabilityError, match="self_consistency needs token logprobs"):
        await self_consistency(weighting="probability")(TASK, Context({"default": chat_only}))
    with pytest.raises(ConfigError, match="self_consistency needs a verifier"):
        await self_consistency(weighting="verifier")(TASK, Context({"default": chat_only}))
    assert chat_only.calls == 0


@pytest.mark.slow
async def test_end_to_end_on_smollm2_with_math_verifier() -> None:
    from forkpath import load_task
    from forkpath.models import get_model
    from forkpath.verifiers import extract_number

    task = load_task("gsm8k/0")  # a GSM8K task: its answers are read as numbers
    m = get_model("local/smollm2-135m")
    result = await self_consistency(n=3, max_tokens=48, temperature=0.7, early_stop=False)(
        task, Context({"default": m}, make_verifier("math_answer"))
    )
    assert len(result.candidates) == 3 and result.usage[m.id].calls == 3
    assert result.usage[m.id].completion_tokens <= 3 * 48
    assert [c.answer for c in result.candidates] == [extract_number(c.text) for c in result.candidates]
    voted = sum(result.info["votes"].values())
    assert voted == sum(c.answer is not None for c in result.candidates) == 3 - result.info["abstained"]
    if voted:
        assert result.passed is not None  # the chosen answer was judged by the real math verifier
    else:
        assert result.answer is None and result.chosen is None


class Weighted(FakeModel):
    """The fake model with a constrained sample's importance weight on each answer: 41 was
    sampled often but from prefixes the constraint mostly refused (small weight)."""

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        result = await super()._generate(request)
        return result.model_copy(update={"log_weight": -4.0 if "41" in result.text else -1.0})


async def test_importance_weighting_votes_with_the_samples_weights() -> None:
    answers = ["The answer is 41.", "The answer is 41.", "The answer is 41.", "The answer is 42."]
    m = Weighted("fake/m", script={"6*7": answers})
    plain = await self_consistency(n=4, early_stop=False)(TASK, Context({"default": m}))
    assert plain.info["winner"] == "41"
    weighted = await self_consistency(n=4, weighting="importance")(TASK, Context({"default": m}))
    assert weighted.info["winner"] == "42"
    assert [c.log_weight for c in weighted.candidates] == [-4.0, -4.0, -4.0, -1.0]
    # self-normalised: exp(log_weight - max); three of e^-3 against one of 1
    assert weighted.info["votes"] == pytest.approx({"42": 1.0, "41": 3 * math.exp(-3.0)}, abs=1e-5)
    assert weighted.info["agreement"] == pytest.approx(1 / (1 + 3 * math.exp(-3.0)))
    # without weights (no constraint) importance weighting is a majority vote
    unweighted = await self_consistency(n=4, weighting="importance")(
        TASK, Context({"default": model(*answers)})
    )
    assert unweighted.info["winner"] == "41" and unweighted.info["votes"] == {"41": 3.0, "42": 1.0}


async def test_importance_weighting_on_smollm2_under_a_constraint() -> None:
    from forkpath.models import Constraint, constrained, get_model

    m = constrained(get_model("local/smollm2-135m"), Constraint(regex="[0-9]{1,3}", method="rejection"))
    result = await self_consistency(n=4, weighting="importance", max_tokens=4, extract="full")(
        TASK, Context({"default": m})
    )
    weights = [c.log_weight for c in result.candidates]
    assert len(weights) == 4 and all(w is not None and w <= 0.0 for w in weights)
    top = max(w for w in weights if w is not None)
    for c in result.candidates:
        assert c.text.isdigit() and c.log_weight is not None
        assert c.score == pytest.approx(math.exp(c.log_weight - top))
    assert sum(result.info["votes"].values()) == pytest.approx(sum(c.score or 0.0 for c in result.candidates))
