"""math_answer: answer extraction, equivalence by math-verify, GSM8K references."""

from __future__ import annotations

import json

import pytest

from forkpath import Task, VerifierError
from forkpath.verifiers import MathAnswerVerifier, extract_math_answer, make_verifier, math_equal

from .conftest import GSM8K

EQUIVALENCE = [
    # (reference, candidate, equal)
    ("18", "18.0", True),
    ("\\frac{1}{2}", "0.5", True),
    ("1/2", "\\frac12", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("0.333333", "\\frac{1}{3}", True),  # equal at the default 6-digit rounding
    ("1,000", "1000", True),
    ("10^{3}", "1000", True),
    ("18", "\\$18", True),
    ("18 \\text{ dollars}", "18", True),  # units stripped
    ("5\\text{ cm}", "5", True),
    ("6", "6 \\text{ apples}", True),
    ("50\\%", "0.5", True),  # percentages
    ("12", "12\\%", True),  # math-verify accepts n and n% as the same answer
    ("x^2+2x+1", "(x+1)^2", True),  # symbolic
    ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),  # sets ignore order
    ("x=3", "3", True),
    ("\\infty", "\\infty", True),
    ("\\frac{1}{2}", "0.51", False),
    ("3", "-3", False),
    ("1000", "999.9999", False),
    ("\\pi", "3.14159", False),  # not numerically equal at 6 digits
    ("(1,2)", "(2,1)", False),  # an interval / tuple is ordered
    ("2", "3", False),
    ("x+1", "x-1", False),
]


@pytest.mark.parametrize(("reference", "candidate", "equal"), EQUIVALENCE)
def test_equivalence_table(reference: str, candidate: str, equal: bool) -> None:
    assert math_equal(reference, candidate) is equal


EXTRACTION = [
    ("So she makes 9 * 2 = $18.\n#### 18", "18"),
    ("Thus the area is $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}"),
    ("\\boxed{\\frac{a}{\\sqrt{b}}} and more text", "\\frac{a}{\\sqrt{b}}"),  # nested braces
    ("First \\boxed{1}, finally \\boxed{2}.", "2"),  # the last box
    ("The answer is 42.", "42"),
    ("The answer is $1,000.", "1,000"),
    ("Final answer: 3.5 cm", "3.5"),
    ("The answer is 18 dollars.", "18"),
    ("The answer is 50%.", "50\\%"),
    ("The answer is: \\(\\frac{1}{2}\\)", "\\frac{1}{2}"),
    ("The answer is -3.", "-3"),
    ("I think it's 7 apples and then 12 pears", "12"),  # last number
    ("no numbers here", None),
]


@pytest.mark.parametrize(("text", "answer"), EXTRACTION)
def test_extraction(text: str, answer: str | None) -> None:
    assert extract_math_answer(text) == answer


async def test_verifier_verdicts() -> None:
    verifier = MathAnswerVerifier()
    task = Task(id="m", prompt="What is 1/2 + 1/4?", kind="math", answer="\\frac{3}{4}")
    good = await verifier.verify(task, "1/2 + 1/4 = 3/4, so the answer is $\\boxed{0.75}$.")
    assert good.passed and good.score == 1.0
    assert good.details == {"extracted": "0.75", "reference": "\\frac{3}{4}"}
    bad = await verifier.verify(task, "The answer is 0.7.")
    assert not bad.passed and bad.tests[0].reason == "wrong_answer"
    assert bad.tests[0].message == "expected '\\\\frac{3}{4}', got '0.7'"
    none = await verifier.verify(task, "I am not sure.")
    assert none.tests[0].reason == "no_answer"


async def test_reference_may_be_a_full_solution() -> None:
    task = Task(id="m", prompt="p", kind="math", answer="We get $x = 5$, so $\\boxed{5}$.")
    assert (await make_verifier("math_answer").verify(task, "#### 5")).passed


async def test_task_without_answer_is_a_verifier_error() -> None:
    with pytest.raises(VerifierError, match="needs the task's reference answer"):
        await MathAnswerVerifier().verify(Task(id="m", prompt="p", kind="math"), "1")


def _gsm8k_rows() -> list[dict[str, str]]:
    assert GSM8K is not None, "GSM8K data not found"
    with GSM8K.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(200), f, strict=False)]


def test_gsm8k_reference_solutions_verify_against_themselves() -> None:
    rows = _gsm8k_rows()
    assert len(rows) == 200
    for row in rows:
        final = row["answer"].rsplit("####", 1)[1].strip()
        extracted = extract_math_answer(row["answer"])
        assert extracted is not None
        assert math_equal(final.replace(",", ""), extracted), (row["answer"][-80:], extracted)


def test_gsm8k_answer_phrasings_without_the_marker() -> None:
    rows = _gsm8k_rows()
    stated = last_number = 0
    for row in rows:
        reasoning, final = row["answer"].rsplit("####", 1)
        final = final.strip().replace(",", "")
        stated += math_equal(final, extract_math_answer(f"{reasoning}The answer is {final}.") or "")
        last_number += math_equal(final, extract_math_answer(reasoning) or "")
    assert stated == 200
    # Without any marker the last number in the reasoning is usually, not always, the answer.
    assert last_number >= 195
