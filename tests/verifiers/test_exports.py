"""The public API of forkpath.verifiers, pinned: changing it is a deliberate act."""

from __future__ import annotations

import forkpath.verifiers


def test_public_names_are_pinned() -> None:
    assert sorted(forkpath.verifiers.__all__) == [
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


def test_every_public_name_exists_and_callables_are_documented() -> None:
    for name in forkpath.verifiers.__all__:
        obj = getattr(forkpath.verifiers, name)
        if callable(obj) and not isinstance(obj, type(forkpath.verifiers.Reason)):
            assert obj.__doc__, f"{name} has no docstring"


def test_registry_names_the_documented_verifiers() -> None:
    # public_tests (the prompt's examples only) is registered by forkpath.strategies.
    assert [n for n in forkpath.verifiers.verifiers.names() if n != "public_tests"] == [
        "ai_tests",
        "all_of",
        "first_failure",
        "math_answer",
        "model_judge",
        "python_tests",
        "weighted",
    ]


def test_the_cli_exposes_a_verify_command() -> None:
    from forkpath._cli._verify import app

    assert [c.name for c in app.registered_commands] == ["verify"]


def test_the_registry_docstring_examples_are_valid_specs() -> None:
    import ast

    from forkpath.verifiers import _registry, make_verifier

    text = (_registry.__doc__ or "") + (_registry.make_verifier.__doc__ or "")
    specs = []
    start = text.find('{"name"')
    while start >= 0:
        end = text.index("}", start)
        while True:  # grow to the end of the (possibly nested) literal
            try:
                specs.append(ast.literal_eval(text[start : end + 1]))
                break
            except SyntaxError:
                end = text.index("}", end + 1)
        start = text.find('{"name"', end)
    assert len(specs) >= 3
    for spec in specs:
        assert make_verifier(spec).registered.name == spec["name"]  # type: ignore[attr-defined]
