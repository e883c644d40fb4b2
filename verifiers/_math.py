"""Math answers: find the final answer in a solution and compare it with the reference.

How an answer is read depends on the task's kind of answer (:func:`answer_format`):

- ``number`` (GSM8K, and any dataset that says so or whose references are all numbers): the
  number of the last stated answer, by :func:`~forkpath.verifiers.extract_number` (placeholders,
  units, currency and trailing words skipped; a stated expression with a variable abstains),
  else the last number of the text; compared exactly as numbers.
- ``math`` (free-form: MATH, anything else): the last balanced, non-empty ``\\boxed{...}`` (or
  ``\\fbox``), the last ``#### ...`` line, the last "the answer is ..." / "Answer: ..." (an
  echoed placeholder ``N`` skipped), and the last number; compared by math-verify (symbolic and
  numeric equivalence, fractions, percentages, LaTeX, units in ``\\text{}``), after plain-text
  units ("18 dollars") are stripped from numeric answers.

Plain numbers are compared here, exactly (with ``Decimal``) when the answer is clear either way.
Everything else goes to math-verify in a small pool of worker processes (see
``_mathworker.py``): sympy can take minutes on a pathological answer, and math-verify's own
timeouts use SIGALRM, which only works in a main thread. A worker that overruns its deadline
is killed, so a comparison never blocks the event loop and never outlives its time limit.
"""

import asyncio
import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from forkpath._errors import VerifierError
from forkpath._params import Int
from forkpath._types import Task
from forkpath.verifiers._numbers import canonical, extract_number
from forkpath.verifiers._registry import verifiers
from forkpath.verifiers._types import Reason, TestResult, Verdict

_HASHES = re.compile(r"####\s*(.+)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+)", re.IGNORECASE)
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+"
_LAST_NUMBER = re.compile(_NUMBER)
_PLACEHOLDER = re.compile(r"\W*N\W*")  # "The answer is N.": the prompt's instruction echoed
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
    for stated in reversed(_ANSWER_IS.findall(text)):
        sentence = re.split(r"(?<!\d)\.(?!\d)|\n", stated)[0]
        if sentence.strip() and not _PLACEHOLDER.fullmatch(sentence):
            return _clean(sentence)
    numbers = _LAST_NUMBER.findall(text.replace("$", " "))
    return _clean(numbers[-1]) if numbers else None


def reference_answer(reference: str) -> str:
    """The answer in a reference: its boxed or ``####`` answer if it is a full solution."""
    if "\\boxed" in reference or "\\fbox" in reference or "####" in reference:
        return extract_math_answer(reference) or reference.strip()
    return _clean(reference)


AnswerFormat = Literal["number", "math"]
ANSWER_FORMAT_KEY = "answer_format"
"""The task metadata key that says how answers are read: ``"number"`` or ``"math"``."""


def answer_format(task: Task) -> AnswerFormat:
    """How ``task``'s answers are read: ``number`` when its metadata says so (GSM8K tasks, and
    datasets that declare or imply numeric references), else ``math`` (free-form)."""
    return "number" if task.metadata.get(ANSWER_FORMAT_KEY) == "number" else "math"


def extract_answer(text: str, how: AnswerFormat = "math") -> str | None:
    """The final answer of a solution read as ``how``: :func:`extract_number` for numbers,
    :func:`extract_math_answer` for free-form math. None: the solution states no answer."""
    return extract_number(text) if how == "number" else extract_math_answer(text)


def numbers_equal(a: str, b: str) -> bool:
    """Whether two numbers (canonical or plain: ``1,000``, ``0.5``, ``1/2``) are equal, exactly."""
    x, y = canonical(a), canonical(b)
    return x is not None and y is not None and Fraction(x) == Fraction(y)


def _normal(answer: str) -> str:
    return re.sub(r"\s+|,(?=\d{3}\b)", "", answer).lower()


_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORKER = str(Path(__file__).with_name("_mathworker.py"))
_WORKERS = 2
_START_S = 120.0  # importing sympy on a busy machine
_pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="forkpath-math")
_local = threading.local()  # each pool thread owns one worker process
_processes: set[subprocess.Popen[bytes]] = set()


def _quick_equal(reference: str, candidate: str, float_rounding: int) -> bool | None:
    """The answer without math-verify when it is plain, else None.

    Equal text, or two plain decimal numbers that are equal, or further apart than rounding to
    ``float_rounding`` places could ever close (math-verify rounds floats, compares integers
    exactly): near misses go to math-verify, which decides them.
    """
    a, b = _normal(reference), _normal(candidate)
    if a == b:
        return True
    if _PLAIN_NUMBER.fullmatch(a) and _PLAIN_NUMBER.fullmatch(b):
        x, y = Decimal(a), Decimal(b)
        if x == y:
            return True
        if abs(x - y) > 2 * Decimal(10) ** -float_rounding:
            return False
    return None


def _worker() -> "subprocess.Popen[bytes]":
    process: subprocess.Popen[bytes] | None = getattr(_local, "process", None)
    if process is not None and process.poll() is None:
        return process
    process = subprocess.Popen(
        [sys.executable, "-I", _WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # math-verify logs warnings; nobody would read them
    )
    _processes.add(process)
    _local.process = process
    answer = _answer(process, time.monotonic() + _START_S)
    if answer is None or "ready" not in answer:
        _stop(process)
        problem = answer.get("error") if answer else "it did not start"
        raise VerifierError(f"math_answer: the math-verify worker failed: {problem}")
    return process


def _answer(process: "subprocess.Popen[bytes]", deadline: float) -> dict | None:
    """The worker's next JSON line, or None if it does not come before ``deadline``."""
    assert process.stdout is not None
    fd, data = process.stdout.fileno(), b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    answer: dict = json.loads(data)
    return answer


def _stop(process: "subprocess.Popen[bytes]") -> None:
    process.kill()
    process.wait()
    _processes.discard(process)
    if getattr(_local, "process", None) is process:
        _local.process = None


@lru_cache(maxsize=4096)
def _verify_equal(reference: str, candidate: str, float_rounding: int, timeout_s: int) -> bool:
    """math-verify's verdict from this thread's worker, killed if it overruns.

    Its three steps (two parses, one comparison) each have ``timeout_s``; one more second of
    slack covers the messages.
    """
    process = _worker()
    assert process.stdin is not None
    request = {
        "reference": reference,
        "candidate": candidate,
        "float_rounding": float_rounding,
        "timeout_s": timeout_s,
    }
    try:
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        answer = _answer(process, time.monotonic() + 3 * timeout_s + 1)
    except (OSError, ValueError):
        answer = None
    if answer is None:  # stuck in C code, or dead: it cannot be trusted with the next request
        _stop(process)
        return False
    return bool(answer.get("equal"))


@atexit.register
def _stop_workers() -> None:
    for process in list(_processes):
        process.kill()


def math_equal(reference: str, candidate: str, *, float_rounding: int = 6, timeout_s: int = 5) -> bool:
    """Whether two final answers are mathematically equal (math-verify, after plain checks).

    Blocks the calling thread for at most about ``3 * timeout_s`` seconds; async code should
    use :class:`MathAnswerVerifier`, which waits without blocking its event loop.

    Example:
        >>> math_equal("\\\\frac{1}{2}", "0.5")
        True
    """
    quick = _quick_equal(reference, candidate, float_rounding)
    if quick is not None:
        return quick
    return _pool.submit(_verify_equal, reference, candidate, float_rounding, timeout_s).result()


async def math_equal_async(
    reference: str, candidate: str, *, float_rounding: int = 6, timeout_s: int = 5
) -> bool:
    """:func:`math_equal` without blocking the event loop."""
    quick = _quick_equal(reference, candidate, float_rounding)
    if quick is not None:
        return quick
    future = _pool.submit(_verify_equal, reference, candidate, float_rounding, timeout_s)
    return await asyncio.wrap_future(future)


class MathAnswerVerifier:
    """Checks that the final answer of a solution equals the task's reference answer.

    Args:
        float_rounding: decimal places floats are rounded to before comparing.
        timeout_s: limit of each parse and of the comparison (whole seconds).
        answers: how answers are read: ``auto`` (the task's :func:`answer_format`), ``number``
            or ``math`` (free-form, math-verify).
    """

    def __init__(
        self, float_rounding: int = 6, timeout_s: int = 5, answers: Literal["auto", "number", "math"] = "auto"
    ) -> None:
        self.float_rounding = float_rounding
        self.timeout_s = timeout_s
        self.answers = answers

    async def verify(self, task: Task, candidate: str) -> Verdict:
        if task.answer is None:
            raise VerifierError(f"task {task.id}: math_answer needs the task's reference answer")
        started = time.perf_counter()
        how = answer_format(task) if self.answers == "auto" else self.answers
        reference = reference_answer(task.answer)
        number = canonical(reference) if how == "number" else None
        if number is not None:
            reference = number
        else:
            how = "math"  # a reference that is not a number is compared as free-form math
        extracted = extract_answer(candidate, how)
        reason: Reason = "no_answer"
        passed, message = False, "no final answer found"
        if extracted is not None:
            if how == "number":
                passed = numbers_equal(reference, extracted)
            else:
                passed = await math_equal_async(
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
            details={"extracted": extracted, "reference": reference, "answers": how},
        )


@verifiers.register("math_answer")
def math_answer(
    float_rounding: Annotated[Int, Field(ge=0, le=15)] = 6,
    timeout_s: Annotated[Int, Field(ge=1, le=3600)] = 5,
    answers: Literal["auto", "number", "math"] = "auto",
) -> MathAnswerVerifier:
    """Compare a solution's final answer with the task's reference answer (GSM8K, MATH).

    ``answers``: ``auto`` reads numbers for tasks whose answers are numbers (GSM8K) and free-form
    math otherwise; ``number`` or ``math`` forces one way.
    """
    return MathAnswerVerifier(float_rounding=float_rounding, timeout_s=timeout_s, answers=answers)
