"""Verifiers: check a candidate answer to a task and return a typed :class:`Verdict`.

One protocol (:class:`Verifier`: ``await verifier.verify(task, candidate) -> Verdict``), with
factories registered by name in :data:`verifiers` so a flow YAML can say
``verifier: python_tests``:

- ``python_tests``: HumanEval ``check``, MBPP asserts or stdin/stdout cases, run in a sandbox.
- ``math_answer``: the final answer read by the task's kind (a number for GSM8K-like tasks,
  free-form math otherwise) compared with the reference (exactly, or by math-verify).
- ``model_judge``: a model's P(yes) or score, for tasks without tests (untrusted).
- ``ai_tests``: tests a model writes from the problem statement (untrusted).
- ``all_of``, ``weighted``, ``first_failure``: compositions.

Example:
    >>> from forkpath import humaneval_task
    >>> from forkpath.verifiers import make_verifier
    >>> verifier = make_verifier("python_tests")
    >>> verdict = await verifier.verify(humaneval_task(0), completion)
    >>> verdict.passed, verdict.score
"""

from forkpath.verifiers._aitests import AITestsVerifier, GeneratedTests, ai_tests, generate_tests
from forkpath.verifiers._compose import (
    AllOf,
    FirstFailure,
    Weighted,
    all_of,
    first_failure,
    verify_many,
    weighted,
)
from forkpath.verifiers._extract import extract_code, humaneval_program, outputs_match
from forkpath.verifiers._judge import ModelJudge, model_judge, parse_score, yes_probability
from forkpath.verifiers._math import (
    MathAnswerVerifier,
    answer_format,
    extract_answer,
    extract_math_answer,
    math_answer,
    math_equal,
    math_equal_async,
    numbers_equal,
)
from forkpath.verifiers._numbers import extract_number
from forkpath.verifiers._python import PythonTestsVerifier, python_tests
from forkpath.verifiers._registry import VerifierSpec, make_verifier, verifiers
from forkpath.verifiers._sandbox import Limits, ProgramRun, Sandbox, default_sandbox, run_program
from forkpath.verifiers._types import Reason, Source, TestResult, Verdict, Verifier

__all__ = [
    "AITestsVerifier",
    "AllOf",
    "FirstFailure",
    "GeneratedTests",
    "Limits",
    "MathAnswerVerifier",
    "ModelJudge",
    "ProgramRun",
    "PythonTestsVerifier",
    "Reason",
    "Sandbox",
    "Source",
    "TestResult",
    "Verdict",
    "Verifier",
    "VerifierSpec",
    "Weighted",
    "ai_tests",
    "all_of",
    "answer_format",
    "default_sandbox",
    "extract_answer",
    "extract_code",
    "extract_math_answer",
    "extract_number",
    "first_failure",
    "generate_tests",
    "humaneval_program",
    "make_verifier",
    "math_answer",
    "math_equal",
    "math_equal_async",
    "model_judge",
    "numbers_equal",
    "outputs_match",
    "parse_score",
    "python_tests",
    "run_program",
    "verifiers",
    "verify_many",
    "weighted",
    "yes_probability",
]
