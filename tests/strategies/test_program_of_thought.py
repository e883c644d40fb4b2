"""program_of_thought: programs run in the sandbox, their printed numbers vote, crashes abstain."""

from __future__ import annotations

import pytest

from forkpath import Task, load_task
from forkpath.models import FakeModel, get_model, usage_meter
from forkpath.strategies import Context, strategies
from forkpath.strategies._program_of_thought import printed_answer
from forkpath.verifiers import make_verifier

TASK = Task(id="m", prompt="Tom has 3 bags of 14 apples. How many apples?", kind="math", answer="42")


def program(body: str) -> str:
    return f"```python\n{body}\n```"


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("42\n", "42"),
        ("Total: 1,234\n", "1234"),
        ("42.0", "42"),
        ("0.5", "0.5"),
        ("none", None),
        ("", None),
        ("29.999999999999996\n", "30"),  # 0.1 * 3 * 100: floating-point noise, a person reads 30
        ("5.857142857142858", "5.85714285714"),  # 41 / 7 to 12 significant digits
        ("0.30000000000000004", "0.3"),
        ("1234567890123456", "1234567890123456"),  # a whole number keeps its digits
    ],
)
def test_the_printed_answer_is_the_last_number(stdout: str, expected: str | None) -> None:
    assert printed_answer(stdout) == expected


async def test_programs_vote_and_crashes_abstain() -> None:
    fake = FakeModel(
        script={
            "apples": [
                program("bags = 3\nper_bag = 14\nprint(bags * per_bag)"),
                program("print(3 + 14)"),
                program("raise SystemExit(1)"),
                program("print(14 * 3)"),
                program("while True: pass"),
            ]
        }
    )
    pot = strategies.create("program_of_thought", n=5, temperature=0.7, timeout_s=1)
    with usage_meter() as meter:
        result = await pot(TASK, Context(models={"default": fake}, verifier=make_verifier("math_answer")))
    assert (
        meter.tool_calls == 5 and meter.tool_seconds >= 1.0
    )  # every run counts; the loop ran to its 1 s limit
    assert [c.answer for c in result.candidates] == ["42", "17", None, "42", None]
    # The winning group's representative is its most likely member (the shared voting rule).
    assert result.chosen in (0, 3) and result.passed is True
    assert result.info["votes"] == {"42": 2.0, "17": 1.0} and result.info["answered"] == 3
    assert result.info["abstained"] == 2
    assert result.answer is not None and result.answer.endswith("The answer is 42.")


async def test_no_readable_output_means_no_answer() -> None:
    fake = FakeModel(script={"apples": [program("print('many')")]})
    result = await strategies.create("program_of_thought")(TASK, Context(models={"default": fake}))
    assert result.answer is None and result.chosen is None


@pytest.mark.slow
async def test_on_qwen_coder_the_answer_is_what_the_program_prints() -> None:
    from forkpath.verifiers import Limits, extract_code, run_program

    task = load_task("gsm8k/0")
    model = get_model("local/qwen2.5-coder-0.5b", n_ctx=2048)
    pot = strategies.create("program_of_thought", max_tokens=256)
    result = await pot(task, Context(models={"default": model}, verifier=make_verifier("math_answer")))
    candidate = result.candidates[0]
    assert "```python" in candidate.text and "print(" in candidate.text
    ran = await run_program(extract_code(candidate.text), "", limits=Limits(timeout_s=10))
    assert candidate.answer == (printed_answer(ran.stdout) if ran.ok else None)
    assert result.usage["local/qwen2.5-coder-0.5b"].completion_tokens < 256
