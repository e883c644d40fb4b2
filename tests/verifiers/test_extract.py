"""Getting code out of model answers, joining it with HumanEval prompts, comparing outputs."""

from __future__ import annotations

import pytest

from forkpath.verifiers import extract_code, humaneval_program, outputs_match
from forkpath.verifiers._extract import fenced_blocks

PROMPT = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'


def test_fenced_block_defining_the_entry_point_wins() -> None:
    answer = (
        "First a helper:\n```python\nimport math\n```\nThen the function:\n"
        "```py\ndef total(xs):\n    return sum(xs)\n```\nUsage:\n```python\nprint(total([1]))\n```"
    )
    assert extract_code(answer, "total") == "def total(xs):\n    return sum(xs)\n"


def test_longest_python_block_without_an_entry_point_and_other_languages_ignored() -> None:
    answer = (
        "```bash\npip install nothing\n```\n```\nx = 1\n```\n```python\nn = int(input())\nprint(n * 2)\n```"
    )
    assert extract_code(answer) == "n = int(input())\nprint(n * 2)\n"


def test_unterminated_fence_runs_to_the_end() -> None:
    assert fenced_blocks("```python\ndef f():\n    return 1\n") == [("python", "def f():\n    return 1\n")]


def test_function_cut_out_of_prose() -> None:
    answer = "Sure! Here it is.\nimport math\ndef total(xs):\n    return sum(xs)\n\nThis sums the list."
    assert extract_code(answer, "total") == "import math\ndef total(xs):\n    return sum(xs)\n"


def test_body_completion_is_concatenated_like_the_reference() -> None:
    body = "    return sum(xs)\n"
    assert humaneval_program(PROMPT, body, "total") == PROMPT + body


def test_full_function_runs_after_the_prompt() -> None:
    program = humaneval_program(PROMPT, "```python\ndef total(xs):\n    return 0\n```", "total")
    assert program.startswith(PROMPT.rstrip("\n"))
    assert program.endswith("def total(xs):\n    return 0\n")
    compile(program, "x", "exec")


def test_unindented_body_is_indented_when_that_makes_it_compile() -> None:
    program = humaneval_program(PROMPT, "result = sum(xs)\nreturn result\n", "total")
    assert program == PROMPT + "    result = sum(xs)\n    return result\n"


@pytest.mark.parametrize(
    ("actual", "expected", "same"),
    [
        ("1 2 3\n", "1 2 3", True),
        ("1  2\n\n3\n\n\n", "1 2 3\n", True),  # whitespace-tolerant
        ("0.3333333\n", "0.33333333\n", True),  # float-tolerant
        ("1e-7", "0", True),  # absolute tolerance near zero
        ("1.0", "1", True),  # a float against an integer token
        ("2", "1", False),
        ("10", "10.000001", True),
        ("10", "10.0001", False),
        ("YES", "yes", False),  # case matters by default
        ("1 2", "1 2 3", False),
        ("", "", True),
    ],
)
def test_outputs_match(actual: str, expected: str, same: bool) -> None:
    assert outputs_match(actual, expected) is same


def test_outputs_match_options() -> None:
    assert outputs_match("YES", "yes", case_sensitive=False)
    assert outputs_match("0.5", "0.51", float_tol=0.05)
    assert not outputs_match("100", "101", float_tol=0.5)  # integers compare exactly


def test_model_written_asserts_come_from_python_fences_of_any_spelling() -> None:
    from forkpath.verifiers._aitests import parse_asserts

    reply = "```python3\nassert add(1, 2) == 3\n```\n```text\nassert add(0, 0) == 1\n```\n"
    assert parse_asserts(reply, "add", 5) == ["assert add(1, 2) == 3"]
