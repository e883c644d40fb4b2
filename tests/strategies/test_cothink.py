"""cothink on fake models: outline then solve, leak check, token accounting, budget, e2e."""

from __future__ import annotations

from typing import Any

import pytest

from forkpath import Budget, BudgetLimits, ConfigError, Task
from forkpath._trace import Tracer
from forkpath.models import FakeModel, GenerateRequest, GenerateResult
from forkpath.strategies import Context
from forkpath.strategies._cothink import cothink, leaked_numbers
from forkpath.verifiers import make_verifier

TASK = Task(id="g", prompt="Tom has 3 bags with 4 apples each. How many apples?", kind="math", answer="12")
OUTLINE = "1. Find the apples per bag.\n2. Multiply by the number of bags."
SOLUTION = "Following the outline: 3 * 4 = 12. The answer is 12."
LONG = (
    "Let me think. Each bag has 4 apples. Wait, let me check again. 3 bags ... 3 * 4 = 12. The answer is 12."
)


class Recording(FakeModel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompts: list[str] = []

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        self.prompts.append("\n".join(m.content for m in request.messages or ()))
        return await super()._generate(request)


def pair(outlines: list[str] | None = None) -> tuple[Recording, Recording]:
    instruct = Recording("fake/instruct", script={"high-level steps": outlines or [OUTLINE]})
    reasoning = Recording("fake/reasoner", script={"high-level outline": [SOLUTION], "apples": [LONG]})
    return instruct, reasoning


async def test_outline_guides_the_solver_and_tokens_are_split_by_model() -> None:
    instruct, reasoning = pair()
    with Tracer() as tracer:
        result = await cothink(baseline=True)(
            TASK, Context({"instruct": instruct, "reasoning": reasoning}, make_verifier("math_answer"))
        )
    assert result.answer == SOLUTION and result.passed and result.chosen == 0
    assert OUTLINE in reasoning.prompts[0]  # the solver saw the outline
    assert instruct.calls == 1 and reasoning.calls == 2  # outline; solution and the baseline alone
    info = result.info
    assert info["outline_tokens"] == result.usage["fake/instruct"].total_tokens
    assert info["total_tokens"] == info["outline_tokens"] + info["solve_tokens"]
    assert info["baseline_tokens"] + info["solve_tokens"] == result.usage["fake/reasoner"].total_tokens
    assert info["saving"] == pytest.approx(1 - info["total_tokens"] / info["baseline_tokens"])
    assert result.candidates[1].text == LONG and result.candidates[1].passed
    ends = [e for e in tracer.events if e.type == "strategy" and e.phase == "end"]  # type: ignore[union-attr]
    assert ends[-1].info["total_tokens"] == info["total_tokens"]  # type: ignore[union-attr]


async def test_an_outline_with_computed_numbers_is_drawn_again() -> None:
    instruct, reasoning = pair(["1. Compute 3 * 4 = 12.", OUTLINE])
    result = await cothink(outline_retries=1, outline_temperature=0.0)(
        TASK, Context({"instruct": instruct, "reasoning": reasoning})
    )
    assert result.info["outline_draws"] == 2 and result.info["outline"] == OUTLINE
    assert result.info["outline_leaks"] == []
    assert leaked_numbers("1. Compute 3 * 4 = 12.", TASK.prompt) == ["12"]
    assert leaked_numbers("Step 2: multiply the 3 bags", TASK.prompt) == []


async def test_budget_stops_after_the_outline() -> None:
    instruct, reasoning = pair()
    result = await cothink()(
        TASK,
        Context({"instruct": instruct, "reasoning": reasoning}, budget=Budget(BudgetLimits(max_calls=1))),
    )
    assert result.stopped == "budget" and result.answer is None and reasoning.calls == 0
    assert result.info["outline"] == OUTLINE


async def test_missing_role_fails_before_any_call() -> None:
    instruct, _ = pair()
    with pytest.raises(ConfigError, match="no model named 'reasoning'"):
        await cothink()(TASK, Context({"instruct": instruct}))
    assert instruct.calls == 0


@pytest.mark.slow
async def test_end_to_end_on_smollm2() -> None:
    from forkpath import load_task
    from forkpath.models import get_model

    small = get_model("local/smollm2-135m")
    task = load_task("gsm8k/0")
    result = await cothink(outline_tokens=24, max_tokens=32, outline_retries=0, baseline=True)(
        task, Context({"instruct": small, "reasoning": small}, make_verifier("math_answer"))
    )
    assert result.info["outline"] and len(result.candidates) == 2
    assert result.usage[small.id].calls == 3
    assert result.info["total_tokens"] + result.info["baseline_tokens"] == result.usage[small.id].total_tokens
    assert result.passed is not None
