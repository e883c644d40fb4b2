"""alphacodium on the fake model: stages, test anchors, hidden tests kept hidden, budget, e2e."""

from __future__ import annotations

from typing import Any

import pytest

from forkpath import Budget, BudgetLimits, ConfigError, Task
from forkpath.models import FakeModel, GenerateRequest, GenerateResult
from forkpath.strategies import Context
from forkpath.strategies._alphacodium import alphacodium, chosen_number, split_solutions
from forkpath.verifiers import make_verifier

TASK = Task(
    id="sq",
    prompt='def square(x):\n    """Return x squared.\n    >>> square(3)\n    9\n    """\n',
    kind="code",
    entry_point="square",
    test="def check(candidate):\n    assert candidate(3) == 9\n    assert candidate(-2) == 4\n",
)
HALF = "```python\ndef square(x):\n    return x * 3\n```"
RIGHT = "```python\ndef square(x):\n    return x * x\n```"
FOUR = "```python\ndef square(x):\n    return 4\n```"
AI_TESTS = "```python\nassert square(-2) == 4\nassert square(0) == 0\nassert square(2) == 5\n```"


class Recording(FakeModel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompts: list[str] = []

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        self.prompts.append("\n".join(m.content for m in request.messages or ()))
        return await super()._generate(request)


def coder(fix: str = RIGHT, initial: str = HALF) -> Recording:
    return Recording(
        "fake/coder",
        script={
            "It fails this test": [fix],
            "Write the complete solution": [initial],
            "new test cases": [AI_TESTS],
            "Which approach": ["2"],
            "different correct ways": ["1. Multiply by three.\n2. Multiply x by itself."],
            "bullet points": ["- goal: square a number\n- square(3) is 3*3 = 9"],
        },
    )


async def test_fixes_on_ai_tests_with_anchors_and_never_shows_hidden_tests() -> None:
    m = coder()
    result = await alphacodium(ai_tests=3)(TASK, Context({"default": m}, make_verifier("python_tests")))
    assert result.answer == RIGHT and result.passed
    assert [c.text for c in result.candidates] == [HALF, RIGHT]
    info = result.info
    assert info["public_tests"] == 1 and info["ai_tests"] == 3
    # square(-2) == 4 failed, was fixed; square(0) == 0 passed; the wrong AI test square(2) == 5 got
    # one fix call that could not make it pass, so it was not kept.
    assert info["fix_calls"] == 2 and info["fixes_kept"] == 1
    assert info["anchors"] == 3  # the public example and two AI tests
    assert info["stage_calls"] == {
        "reflection": 1,
        "solutions": 1,
        "choice": 1,
        "ai_tests": 1,
        "initial_code": 1,
        "fix": 2,
    }
    # the chosen approach (2) is the one the code prompt was given
    code_prompt = next(p for p in m.prompts if "Write the complete solution" in p)
    assert "Approach:\nMultiply x by itself." in code_prompt
    assert all("candidate(" not in p for p in m.prompts)  # the hidden check never reached the model
    assert "square(3)" in m.prompts[0]  # but the public example did
    assert result.usage["fake/coder"].calls == m.calls == 7


async def test_a_fix_that_breaks_an_anchor_is_reverted() -> None:
    m = coder(fix=FOUR)
    result = await alphacodium(ai_tests=3)(TASK, Context({"default": m}, make_verifier("python_tests")))
    # FOUR passes square(-2) == 4 but breaks the public example square(3) == 9: rejected
    assert result.answer == HALF and result.info["fixes_kept"] == 0
    assert result.passed is False


async def test_failing_public_test_is_fixed_first() -> None:
    m = coder(initial=FOUR, fix=RIGHT)
    result = await alphacodium(ai_tests=0, max_attempts=1)(TASK, Context({"default": m}))
    assert result.answer == RIGHT and result.info["fixes_kept"] == 1
    assert result.info["stage_calls"]["fix"] == 1 and "ai_tests" not in result.info["stage_calls"]
    assert [c.score for c in result.candidates] == [0.0, 1.0]  # public-test scores
    assert result.passed is None  # no verifier in the context: nobody judged the final code


async def test_budget_stops_with_the_best_code_so_far() -> None:
    m = coder()
    early = await alphacodium()(TASK, Context({"default": m}, budget=Budget(BudgetLimits(max_calls=2))))
    assert early.stopped == "budget" and early.answer is None and m.calls == 2
    m = coder()
    later = await alphacodium()(TASK, Context({"default": m}, budget=Budget(BudgetLimits(max_calls=5))))
    assert later.stopped == "budget" and later.answer == HALF and m.calls == 5


async def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        alphacodium(solutions=0)
    m = coder()
    with pytest.raises(ConfigError, match="works on code tasks"):
        await alphacodium()(Task(id="m", prompt="1+1?", kind="math"), Context({"default": m}))
    with pytest.raises(ConfigError, match="no model named 'coder'"):
        await alphacodium(model="coder")(TASK, Context({"default": m}))
    assert m.calls == 0


def test_parsing_of_approaches_and_choice() -> None:
    text = "Here:\n1. Sort it.\n2) Use a heap.\n**Approach 3:** Brute force."
    assert split_solutions(text, 3) == ["Sort it.", "Use a heap.", "Brute force."]
    assert split_solutions("just do it", 2) == ["just do it"]
    assert chosen_number("I pick approach 2.", 3) == 1 and chosen_number("none", 3) == 0


@pytest.mark.slow
async def test_end_to_end_on_smollm2_with_real_sandbox() -> None:
    from forkpath import humaneval_task
    from forkpath.models import get_model

    m = get_model("local/smollm2-135m")
    task = humaneval_task(0)
    result = await alphacodium(
        solutions=1, ai_tests=2, max_attempts=1, max_fix_calls=1, stage_tokens=24, code_tokens=48
    )(task, Context({"default": m}, make_verifier("python_tests")))
    calls = result.info["stage_calls"]
    assert calls["reflection"] == calls["solutions"] == calls["initial_code"] == 1
    assert result.usage[m.id].calls == sum(calls.values())
    assert result.info["public_tests"] == 2  # the two docstring examples of HumanEval/0
    assert result.answer is not None and result.passed is not None
