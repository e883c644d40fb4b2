"""Numeric answers (GSM8K): every placeholder and echo case of issue 19, the reading rules, and
how tasks and datasets say their answers are numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forkpath import ConfigError, Task, load_task
from forkpath._datasets import DatasetSpec, load_tasks
from forkpath.verifiers import answer_format, extract_answer, extract_number, make_verifier, numbers_equal

# The votes forkpath's server run counted in issue 19, each inside the sentence it came from.
ISSUE_CASES = [
    # the model echoing the instruction: no number stated there, the solution's last number counts
    ("She has 3 + 4 = 7 apples.\nThe answer is N.", "7"),
    ('So she sells 12 cups.\n\nEnd: "The answer is N." where N is the final number.', "12"),
    ("The answer is N.", None),
    # a correct sample counted wrong (reference 49)
    ("7 rows of 7 trees.\nThe answer is N = 49.", "49"),
    ("The answer is N, which equals 30,000.", "30000"),
    # unbalanced or empty boxes fall through to the next rule, never a fragment
    ("He pays 5 * 6 = 30 dollars, so \\boxed", "30"),
    ("Total: 20 + 13 = 33, so \\boxed{33", "33"),
    ("The answer is \\boxed{33", "33"),
    ("We round 10.5 to 11. Therefore, the answer is \\(\\boxed{1", "11"),  # cut off inside the box
    ("So 40 - 8 = 32 left. \\boxed{}", "32"),
    ("\\boxed{} The answer is 32.", "32"),
    # an expression with a variable is not a number: the sample abstains
    ("The answer is 41 - 7M.", None),
    ("She had 41 marbles. The answer is 41 - 7M.", None),
]


@pytest.mark.parametrize(("text", "number"), ISSUE_CASES)
def test_the_issue_cases(text: str, number: str | None) -> None:
    assert extract_number(text) == number


READING = [
    # stated-answer sentences of every form
    ("The answer is 18.", "18"),
    ("so the answer is: 18 apples", "18"),
    ("The final answer is $\\boxed{18}$.", "18"),
    ("Answer: **18**", "18"),
    ("**Answer:** 18", "18"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
    ("The answer to the question is 12.", "12"),
    ("So, the final answer is:\n\n18 apples.", "18"),
    # units, currency, thousands separators, trailing words
    ("The answer is $1,000.50.", "1000.5"),
    ("The answer is \\$18 per hour.", "18"),
    ("The answer is 18 dollars.", "18"),
    ("The answer is 3.5 hours.", "3.5"),
    ("The answer is 50%.", "50"),
    ("The answer is 5km.", "5"),
    ("The answer is 18.00", "18"),
    ("The answer is -3.", "-3"),
    ("The answer is approximately 33.33 hours.", "33.33"),
    # placeholders and variables before the number
    ("The answer is x = 5.", "5"),
    ("The answer is N = 7 * 7 = 49.", "49"),
    # arithmetic: the value after the last =, or the value of a numeric expression
    ("The answer is 7 * 7 = 49.", "49"),
    ("The answer is 12 apples - 3 apples = 9 apples.", "9"),
    ("The answer is \\( 20 \\times 3 = 60 \\)", "60"),
    ("The answer is 18 x 2 = 36.", "36"),
    ("The answer is 3 + 4.", "7"),
    ("The answer is (3 + 4) * 2.", "14"),
    ("The answer is 5x.", None),
    ("The final answer is: \\[ N = \\frac{R}{2} + 5 \\] Since we do not know R", None),
    ("The answer is R/2 + 5.", None),
    ("The answer is x + 5 = 12.", "12"),
    # fractions
    ("The answer is 3/4.", "0.75"),
    ("The answer is \\frac{6}{4}.", "1.5"),
    ("The answer is \\dfrac{1}{3}.", "1/3"),
    # spelled numbers
    ("The answer is twenty-five.", "25"),
    ("The answer is eighteen.", "18"),
    # the last statement with a number wins; a later placeholder does not override it
    ("The answer is 10. Wait, recount: the answer is 12.", "12"),
    ("The answer is 31.82. The final number is 23.", "31.82"),
    ("The answer is 18.\nRemember: The answer is N.", "18"),
    # no statement: the last number of the text
    ("I think it's 7 apples and then 12 pears", "12"),
    ("She has 41 apples and 7M left", "41"),
    # a fraction with signs, a fraction glued to a variable (a coefficient), in the fallback
    ("Divide by -2: \\[ N = \\frac{-8}{-2} \\] so \\[ N", "4"),
    ("x = 8/-2 and then", "-4"),
    ("mod 75, so x = \\frac{75}{2}x and then", "75"),
    ("so Y = (1/3) * B", "1/3"),
    # a solution cut off inside a number: the fragment is not read
    ("Job B pays $10.\n- The difference is \\(15,0", "10"),
    ("The answer is 1,20", None),
    ("A is 3. The answer is 1,234,5", "3"),
    ("The total is 15,000", "15000"),
    ("They bought 4, 5, 6", "6"),
    ("no numbers here", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "number"), READING)
def test_reading_rules(text: str, number: str | None) -> None:
    assert extract_number(text) == number


def test_numbers_compare_exactly() -> None:
    assert numbers_equal("1,000", "1000") and numbers_equal("0.5", "1/2") and numbers_equal("18.00", "18")
    assert not numbers_equal("18", "18.0000001") and not numbers_equal("N", "N")


def test_tasks_say_how_answers_are_read(tmp_path: Path) -> None:
    assert answer_format(load_task("gsm8k/1")) == "number"
    assert answer_format(Task(id="m", prompt="p", kind="math", answer="\\frac12")) == "math"
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "answer": a}) + "\n" for i, a in enumerate(["3", "1,250", "-2.5"])
        )
    )
    free = tmp_path / "free.jsonl"
    free.write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "answer": a}) + "\n" for i, a in enumerate(["3", "\\frac{1}{2}"])
        )
    )
    fields = {"answer": "answer"}
    inferred = load_tasks(DatasetSpec(name="jsonl", path=str(numbers), fields=fields))
    assert [answer_format(t) for t in inferred] == ["number"] * 3
    mixed = load_tasks(DatasetSpec(name="jsonl", path=str(free), fields=fields))
    assert [answer_format(t) for t in mixed] == ["math", "math"]
    forced = load_tasks(DatasetSpec(name="jsonl", path=str(free), fields=fields, answers="number"))
    assert [answer_format(t) for t in forced] == ["number", "number"]
    with pytest.raises(ValueError, match="answers"):
        DatasetSpec(name="jsonl", path=str(free), answers="numbers")  # type: ignore[arg-type]
    assert isinstance(ConfigError("x"), Exception)


async def test_the_verifier_reads_numbers_for_numeric_tasks() -> None:
    task = Task(id="t", prompt="p", kind="math", answer="1,624", metadata={"answer_format": "number"})
    verifier = make_verifier("math_answer")
    good = await verifier.verify(task, "He pays 1624 dollars. The answer is N = $1,624.00.")
    assert good.passed and good.details == {"extracted": "1624", "reference": "1624", "answers": "number"}
    echo = await verifier.verify(task, "The answer is N.")
    assert not echo.passed and echo.tests[0].reason == "no_answer"
    wrong = await verifier.verify(task, "The answer is $1,625.")
    assert wrong.tests[0].message == "expected '1624', got '1625'"
    # read as free-form math, the stated answer is the expression after the marker
    free_form = make_verifier({"name": "math_answer", "answers": "math"})
    free = await free_form.verify(task, "The answer is N = 1624.")
    assert free.details["answers"] == "math" and free.details["extracted"] == "N = 1624"


def test_free_form_math_keeps_its_reading() -> None:
    assert extract_answer("so $\\boxed{\\frac{3}{4}}$", "math") == "\\frac{3}{4}"
    assert extract_answer("so $\\boxed{\\frac{3}{4}}$", "number") == "0.75"
    # the echoed placeholder is skipped in free-form reading too
    assert extract_answer("We get 12.\nThe answer is N.", "math") == "12"
