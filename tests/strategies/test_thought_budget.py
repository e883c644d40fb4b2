"""thought_budget on the fake model: deadline, interrupts, forced answer, user-turn mode, e2e."""

from __future__ import annotations

from typing import Any

import pytest

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task
from forkpath.models import FakeModel, GenerateRequest, GenerateResult, ModelCapabilities
from forkpath.strategies import Context
from forkpath.strategies._thought_budget import deadline_from, has_answer, thought_budget
from forkpath.verifiers import make_verifier

TASK = Task(id="m", prompt="What is 6*7?", kind="math", answer="42")


class Recording(FakeModel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[GenerateRequest] = []

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        self.requests.append(request)
        return await super()._generate(request)


def thinker(**script: list[str]) -> Recording:
    # The fake answers by the first key found in the prompt: notes first, the task last.
    return Recording(
        "fake/r1",
        script={
            "Time is up": [" 42"],
            "tokens left": ["hmm, six sevens, so"],
            "How hard": ["3"],
            **script,
            "6*7": ["Let me think step by step about it"],
        },
    )


async def test_interrupts_then_forces_the_answer_at_the_deadline() -> None:
    m = thinker()
    result = await thought_budget(budget=10, chunk=5)(
        TASK, Context({"default": m}, make_verifier("math_answer"))
    )
    info = result.info
    assert info["mode"] == "prefill" and info["budget"] == 10 and info["used"] == 10
    assert info["chunks"] == 2 and info["forced"] and info["interrupted"]
    # chunk 1: "Let m"; note; chunk 2 continues after the note: "hmm, "; then the closing note
    assert result.answer is not None and result.answer.startswith("Let mhmm, ")
    assert result.answer.endswith("Final answer: 42")
    assert result.candidates[0].answer == "42" and result.passed
    continued = m.requests[1].messages
    assert continued is not None and continued[-1].role == "assistant"
    assert "[I have used 5 tokens and have 5 tokens left." in continued[-1].content
    assert [r.max_tokens for r in m.requests] == [5, 5, 48]
    assert result.usage["fake/r1"].completion_tokens == 10 + 3


async def test_stops_early_when_the_reasoning_states_an_answer() -> None:
    m = Recording("fake/r1", script={"6*7": ["6*7 = 42. The answer is 42."]})
    result = await thought_budget(budget=200, chunk=100)(TASK, Context({"default": m}))
    assert result.info["chunks"] == 1 and not result.info["forced"] and m.calls == 1
    assert result.answer == "6*7 = 42. The answer is 42."


async def test_difficulty_estimate_sets_the_deadline() -> None:
    m = thinker()
    result = await thought_budget(min_budget=10, max_budget=100)(TASK, Context({"default": m}))
    assert result.info["budget"] == 30  # difficulty 3 of 1..10 -> 10 + 90 * (3 - 1) / 9
    assert result.info["chunk"] == 64 and result.info["estimate_reply"] == "3"
    assert deadline_from("I need about 1,500 tokens", "tokens", 100, 1000) == 1000
    assert deadline_from("no idea", "difficulty", 100, 1000) is None
    assert deadline_from("10", "difficulty", 100, 1000) == 1000


async def test_user_turn_mode_for_chat_only_models() -> None:
    m = thinker()
    m.capabilities = ModelCapabilities()
    result = await thought_budget(budget=10, chunk=5)(TASK, Context({"default": m}))
    assert result.info["mode"] == "user_turn" and result.info["forced"]
    second = m.requests[1].messages
    assert second is not None and [x.role for x in second[-2:]] == ["assistant", "user"]
    assert "tokens left" in second[-1].content
    with pytest.raises(CapabilityError, match="thought_budget needs prefix continuation"):
        await thought_budget(mode="prefill")(TASK, Context({"default": m}))


async def test_budget_stops_the_reasoning() -> None:
    m = thinker()
    result = await thought_budget(budget=100, chunk=5)(
        TASK, Context({"default": m}, budget=Budget(BudgetLimits(max_calls=2)))
    )
    assert result.stopped == "budget" and m.calls == 2 and not result.info["forced"]
    assert result.answer == "Let mhmm, "


def test_configuration_and_answer_detection() -> None:
    with pytest.raises(ConfigError, match="budget must be at least 1"):
        thought_budget(budget=0)
    with pytest.raises(ConfigError, match="min_budget <= max_budget"):
        thought_budget(min_budget=10, max_budget=5)
    assert has_answer("so \\boxed{3}", TASK) and has_answer("Final answer: 3", TASK)
    assert not has_answer("thinking about 3", TASK)
    assert has_answer("```python\nx\n```", Task(id="c", prompt="p", kind="code"))


@pytest.mark.slow
async def test_end_to_end_on_smollm2_forces_an_answer() -> None:
    from forkpath import load_task
    from forkpath.models import get_model

    m = get_model("local/smollm2-135m")
    task = load_task("gsm8k/0")
    result = await thought_budget(budget=24, chunk=12, answer_tokens=12)(
        task, Context({"default": m}, make_verifier("math_answer"))
    )
    assert result.info["used"] <= 24 and result.info["chunks"] <= 2
    usage = result.usage[m.id]
    assert usage.completion_tokens <= 24 + 2 * 12
    if result.info["forced"]:
        assert "Final answer:" in (result.answer or "")
    assert result.passed is not None
