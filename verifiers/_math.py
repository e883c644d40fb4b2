"""Math answers: find the final answer in a solution and compare it with the reference.

Extraction tries, in order: the last ``\\boxed{...}`` (or ``\\fbox``), the last ``#### ...``
line (GSM8K), the last "the answer is ..." / "Answer: ...", and the last number. Comparison
uses math-verify (symbolic and numeric equivalence, fractions, percentages, LaTeX, units in
``\\text{}``), after plain-text units ("18 dollars") are stripped from numeric answers.
"""

import re
import threading
import time
from functools import lru_cache

from forkpath._errors import VerifierError
from forkpath._types import Task
from forkpath.verifiers._registry import verifiers
from forkpath.verifiers._types import Reason, TestResult, Verdict

_HASHES = re.compile(r"####\s*(.+)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+)", re.IGNORECASE)
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+"
_LAST_NUMBER = re.compile(_NUMBER)
_NUMBER_WITH_UNIT = re.compile(rf"^\s*\\?\$?\s*({_NUMBER})\s*%?\s*(?:[A-Za-z][A-Za-z .]*)?\.?\s*$")


def _boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}``, braces balanced."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    answer = re.sub(r"^(\$+|\\\(|\\\[)|(\$+|\\\)|\\\])$", "", answer).strip()  # math delimiters
    answer = answer.rstrip(".").strip()
    unit = _NUMBER_WITH_UNIT.match(answer)
    if unit and "\\" not in answer.replace("\\$", "").replace("\\%", ""):
        return unit.group(1) + ("\\%" if "%" in answer else "")
    return re.sub(r"(?<!\\)%", r"\\%", answer)  # in LaTeX a bare % starts a comment


def extract_math_answer(text: str) -> str | None:
    """The final answer in a solution, or None.

    Example:
        >>> extract_math_answer("So she makes 9 * 2 = $18.\\n#### 18")
        '18'
        >>> extract_math_answer("Thus the area is $\\\\boxed{\\\\frac{3}{4}}$.")
        '\\\\frac{3}{4}'
    """
    boxed = _boxed(text)
    if boxed:
        return _clean(boxed)
    hashes = _HASHES.findall(text)
    if hashes:
        return _clean(hashes[-1])
    stated = _ANSWER_IS.findall(text)
    if stated:
        sentence = re.split(r"(?<!\d)\.(?!\d)|\n", stated[-1])[0]
        if sentence.strip():
            return _clean(sentence)
    numbers = _LAST_NUMBER.findall(text.replace("$", " "))
    return _clean(numbers[-1]) if numbers else None


def reference_answer(reference: str) -> str:
    """The answer in a reference: its boxed or ``####`` answer if it is a full solution."""
    if "\\boxed" in reference or "\\fbox" in reference or "####" in reference:
        return extract_math_answer(reference) or reference.strip()
    return _clean(reference)


def _normal(answer: str) -> str:
    return re.sub(r"\s+|,(?=\d{3}\b)", "", answer).lower()


@lru_cache(maxsize=4096)
def math_equal(reference: str, candidate: str, *, float_rounding: int = 6, timeout_s: int = 5) -> bool:
    """Whether two final answers are mathematically equal (math-verify, with a string shortcut).

    Example:
        >>> math_equal("\\\\frac{1}{2}", "0.5")
        True
    """
    if _normal(reference) == _normal(candidate):
        return True
    from math_verify import parse, verify

    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    limit = timeout_s if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(f"${reference}$", parsing_timeout=limit)
        pred = parse(f"${candidate}$", parsing_timeout=limit)
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, float_rounding=float_rounding, timeout_seconds=limit))
    except Exception:  # math-verify raises on pathological input; that is a mismatch, not a crash
        return False


class MathAnswerVerifier:
    """Checks that the final answer of a solution equals the task's reference answer.

    Args:
        float_rounding: decimal places floats are rounded to before comparing.
        timeout_s: limit of each parse and comparison (main thread only).
    """

    def __init__(self, float_rounding: int = 6, timeout_s: int = 5) -> None:
        self.float_rounding = float_rounding
        self.timeout_s = timeout_s

    async def verify(self, task: Task, candidate: str) -> Verdict:
        if task.answer is None:
            raise VerifierError(f"task {task.id}: math_answer needs the task's reference answer")
        started = time.perf_counter()
        reference = reference_answer(task.answer)
        extracted = extract_math_answer(candidate)
        if extracted is None:
            passed, message = False, "no final answer found"
            reason: Reason = "no_answer"
        else:
            passed = math_equal(
                reference, extracted, float_rounding=self.float_rounding, timeout_s=self.timeout_s
            )
            reason = "ok" if passed else "wrong_answer"
            message = "" if passed else f"expected {reference!r}, got {extracted!r}"
        duration = time.perf_counter() - started
        test = TestResult(
            name="final answer", passed=passed, reason=reason, message=message, duration_s=duration
        )
        return Verdict(
            passed=passed,
            score=1.0 if passed else 0.0,
            tests=[test],
            verifier="math_answer",
            duration_s=duration,
            details={"extracted": extracted, "reference": reference},
        )


@verifiers.register("math_answer")
def math_answer(float_rounding: int = 6, timeout_s: int = 5) -> MathAnswerVerifier:
    """Compare a solution's final answer with the task's reference answer (GSM8K, MATH)."""
    return MathAnswerVerifier(float_rounding=float_rounding, timeout_s=timeout_s)
