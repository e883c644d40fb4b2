"""self_refine on the fake model: test feedback, critique loop, best version kept, budget, e2e."""

from __future__ import annotations

import pytest

from forkpath import Budget, BudgetLimits, ConfigError, Task
from forkpath._trace import Tracer
from forkpath.models import FakeModel
from forkpath.strategies import Context
from forkpath.strategies._self_refine import approves, self_refine
from forkpath.verifiers import make_verifier

CODE_TASK = Task(
    id="sq",
    prompt='def square(x):\n    """Return x squared.\n    >>> square(3)\n    9\n    """\n',
    kind="code",
    entry_point="square",
    test="def check(candidate):\n    assert candidate(3) == 9\n    assert candidate(-2) == 4\n",
)
WRONG = "```python\ndef square(x):\n    return 0\n```"
HALF = "```python\ndef square(x):\n    return x * 3\n```"
RIGHT = "```python\ndef square(x):\n    return x * x\n```"


async def test_revises_with_failing_tests_until_they_pass() -> None:
    m = FakeModel("fake/coder", script={"fails these tests": [RIGHT], "square": [WRONG]})
    with Tracer() as tracer:
        result = await self_refine(max_rounds=3)(
            CODE_TASK, Context({"default": m}, make_verifier("python_tests"))
        )
    assert [c.text for c in result.candidates] == [WRONG, RIGHT]
    assert [c.passed for c in result.candidates] == [False, True]
    assert result.chosen == 1 and result.stopped == "early_stop" and result.passed
    assert result.info["feedback"] == ["tests"] and m.calls == 2
    assert [e.type for e in tracer.events].count("verdict") == 2


async def test_feedback_names_the_failing_test_and_what_it_got() -> None:
    seen: list[str] = []

    class Recording(FakeModel):
        async def _generate(self, request):  # type: ignore[no-untyped-def]
            seen.append(request.messages[-1].content)
            return await super()._generate(request)

    m = Recording("fake/coder", script={"fails these tests": [RIGHT], "square": [HALF]})
    await self_refine()(CODE_TASK, Context({"default": m}, make_verifier("python_tests")))
    # x * 3 passes candidate(3) == 9 and fails candidate(-2) == 4: only the failure is reported
    assert "assert candidate(-2) == 4 -> wrong_answer" in seen[1] and "got -6" in seen[1]
    assert "candidate(3)" not in seen[1]


async def test_keeps_the_best_version_when_revisions_get_worse() -> None:
    # Sampled revisions (sample index = round): the first passes half the tests, the next regresses.
    m = FakeModel("fake/coder", script={"fails these tests": [RIGHT, HALF, WRONG], "square": [WRONG]})
    result = await self_refine(max_rounds=2, temperature=0.5)(
        CODE_TASK, Context({"default": m}, make_verifier("python_tests"))
    )
    assert [c.text for c in result.candidates] == [WRONG, HALF, WRONG]
    assert [c.score for c in result.candidates] == [0.0, 0.5, 0.0]
    assert result.chosen == 1 and result.answer == HALF
    assert result.stopped == "done" and not result.passed


async def test_examples_feedback_hides_the_hidden_tests() -> None:
    seen: list[str] = []

    class Recording(FakeModel):
        async def _generate(self, request):  # type: ignore[no-untyped-def]
            seen.append("\n".join(m.content for m in request.messages))
            return await super()._generate(request)

    m = Recording("fake/coder", script={"fails these tests": [HALF], "square": [WRONG]})
    result = await self_refine(feedback="examples")(
        CODE_TASK, Context({"default": m}, make_verifier("python_tests"))
    )
    # HALF passes the public example square(3) == 9, so refinement stops there ...
    assert result.stopped == "early_stop" and result.chosen == 1
    assert result.info["tester"] == "prompt_examples"
    # ... but the hidden check (which also tests square(-2)) judges the returned version.
    assert result.passed is False
    assert all("candidate(-2)" not in text for text in seen)


async def test_critique_loop_without_tests() -> None:
    task = Task(id="w", prompt="Write a haiku about rain.")
    m = FakeModel(
        "fake/w",
        script={
            "Review the answer": ["Too many syllables.", "CORRECT"],
            "reviewer found": ["rain falls soft tonight"],
            "haiku": ["rain rain rain rain rain"],
        },
        default="?",
    )
    result = await self_refine(max_rounds=3)(task, Context({"default": m}))
    # the critic is greedy (sample 0) -> always "Too many syllables." -> revisions until the cap
    assert result.info["tester"] == "critique"
    assert result.info["feedback"] == ["critique"] * 3
    assert [c.text for c in result.candidates] == ["rain rain rain rain rain"] + [
        "rain falls soft tonight"
    ] * 3
    assert result.chosen == 3 and result.stopped == "done"
    assert approves("**CORRECT**") and approves("No issues found.") and not approves("Incorrect: x")


async def test_budget_stops_with_the_best_version_so_far() -> None:
    m = FakeModel("fake/coder", script={"fails these tests": [HALF], "square": [WRONG]})
    budget = Budget(BudgetLimits(max_calls=2))
    result = await self_refine(max_rounds=5)(
        CODE_TASK, Context({"default": m}, make_verifier("python_tests"), budget=budget)
    )
    assert result.stopped == "budget" and m.calls == 2
    assert result.answer == HALF and result.chosen == 1


async def test_missing_critic_role_fails_before_any_call() -> None:
    m = FakeModel("fake/coder", script={"square": [WRONG]})
    with pytest.raises(ConfigError, match="no model named 'judge'"):
        await self_refine(critic="judge")(CODE_TASK, Context({"default": m}))
    assert m.calls == 0


@pytest.mark.slow
async def test_end_to_end_on_smollm2_with_real_tests() -> None:
    from forkpath import humaneval_task
    from forkpath.models import get_model

    m = get_model("local/smollm2-135m")
    task = humaneval_task(0)
    result = await self_refine(max_rounds=1, max_tokens=48)(
        task, Context({"default": m}, make_verifier("python_tests"))
    )
    assert 1 <= len(result.candidates) <= 2
    assert all(c.verdict is not None for c in result.candidates)  # every version ran in the sandbox
    assert result.usage[m.id].calls == len(result.candidates)
    if len(result.candidates) == 2:
        assert result.info["feedback"] == ["tests"] and not result.candidates[0].passed
