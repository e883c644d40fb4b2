"""math_answer: answer extraction, equivalence by math-verify, GSM8K references."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
    assert good.details == {"extracted": "0.75", "reference": "\\frac{3}{4}", "answers": "math"}
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


PLAIN_PAIRS = [
    ("18", "18"),
    ("18", "17"),
    ("18", "18.0"),
    ("18", "18.0000001"),  # a near miss: decided by math-verify
    ("0.5", "0.50"),
    ("0.5", "0.5000004"),
    ("0.333333", "0.333334"),
    ("-3", "3"),
    ("007", "7"),
    ("1,000", "1000"),
    ("1,000", "999"),
    ("1000", "999.9999"),
    ("123456789012345678901", "123456789012345678902"),
    ("2.5", "2.49"),
    ("-0.0", "0"),
]


@pytest.mark.parametrize(("reference", "candidate"), PLAIN_PAIRS)
def test_plain_numbers_are_decided_as_math_verify_would(reference: str, candidate: str) -> None:
    from math_verify import parse, verify

    from forkpath.verifiers._math import _quick_equal

    quick = _quick_equal(reference, candidate, 6)
    expected = math_equal(reference, candidate)
    if quick is not None:  # decided without math-verify: it must agree with math-verify itself
        gold, pred = parse(f"${reference}$"), parse(f"${candidate}$")
        assert quick is bool(verify(gold, pred, float_rounding=6)) is expected
    assert _quick_equal("18", "18.0000001", 6) is None  # near misses are never guessed


async def test_a_pathological_comparison_is_bounded_and_does_not_block_the_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        # Expanding both 3000th powers takes sympy minutes; the 1 s limits stop it.
        verifier = MathAnswerVerifier(timeout_s=1)
        task = Task(id="p", prompt="", kind="math", answer="(x+1)^{3000}")
        verdict = await verifier.verify(task, "The answer is $\\boxed{(x+2)^{3000}}$.")
    finally:
        running.cancel()
    assert not verdict.passed
    assert verdict.tests[0].reason == "wrong_answer"
    assert ticks >= 10  # the event loop kept running while sympy worked


def test_a_worker_stuck_past_its_deadline_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forkpath.verifiers import _math

    # A worker that starts, then never answers (as sympy stuck in C code, deaf to SIGALRM).
    pid_file = tmp_path / "pid"
    stuck = tmp_path / "stuck.py"
    stuck.write_text(
        "import json, os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print(json.dumps({'ready': True}), flush=True)\n"
        "sys.stdin.readline()\n"
        "time.sleep(3600)\n"
    )
    monkeypatch.setattr(_math, "_WORKER", str(stuck))
    # In a thread of our own, which gets its own (stuck) worker; uncached arguments.
    result = ThreadPoolExecutor(1).submit(_math._verify_equal.__wrapped__, "a", "b", 6, 1).result()
    assert result is False
    assert not Path(f"/proc/{pid_file.read_text()}").exists()  # killed and reaped
