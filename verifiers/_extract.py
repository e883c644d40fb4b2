"""Getting runnable code out of a model's answer, and comparing program outputs.

A model answers with prose, fenced blocks, a whole function or only a function body. For
HumanEval the reference harness runs ``prompt + completion``; a completion that defines the
entry point itself is run after the prompt instead, so the prompt's imports and helper
functions stay available.
"""

import ast
import math
import re

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3", "pycon"})
"""Fence languages that mark Python code (``""``: an untagged fence)."""
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block; an unterminated last fence runs to the end."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def defines(code: str, name: str) -> bool:
    """Whether ``code`` parses and defines function or class ``name`` at top level."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name
        for node in tree.body
    )


def extract_code(answer: str, entry_point: str | None = None) -> str:
    """The code in a model's answer.

    Fenced blocks win over the raw text: the first Python block defining ``entry_point`` if
    there is one, else the longest Python block. Unfenced text is returned as is, except that
    prose around a ``def entry_point(`` is cut away when the whole text does not parse.

    Example:
        >>> extract_code("Sure:\\n```python\\ndef f(x):\\n    return x\\n```\\nDone.", "f")
        'def f(x):\\n    return x\\n'
    """
    blocks = [code for lang, code in fenced_blocks(answer) if lang in PYTHON_TAGS]
    if blocks:
        if entry_point:
            for code in blocks:
                if defines(code, entry_point):
                    return code
        return max(blocks, key=len)
    if entry_point and not _parses(answer):
        cut = _function_from_prose(answer, entry_point)
        if cut is not None:
            return cut
    return answer


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _function_from_prose(text: str, entry_point: str) -> str | None:
    """Top-level imports plus the block of ``def entry_point`` from text with prose around them."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"def {entry_point}(")), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][:1] in (" ", "\t", ")")):
        end += 1
    imports = [line for line in lines[:start] if re.match(r"(import|from)\s+\w", line)]
    code = "\n".join([*imports, *lines[start:end]]).rstrip() + "\n"
    return code if _parses(code) else None


def humaneval_program(prompt: str, answer: str, entry_point: str) -> str:
    """The program to test for a HumanEval-style task: the prompt joined with the candidate.

    A candidate that defines ``entry_point`` runs after the prompt (which keeps its imports and
    helpers); anything else is a completion of the prompt's function, concatenated exactly as
    the reference harness does. A body written without indentation is indented when that is
    what makes it compile.
    """
    code = extract_code(answer, entry_point)
    if defines(code, entry_point):
        return prompt.rstrip("\n") + "\n\n\n" + code
    program = prompt + code
    if not _compiles(program) and code.strip():
        indented = prompt + "".join(f"    {line}" if line.strip() else line for line in code.splitlines(True))
        if _compiles(indented):
            return indented
    return program


def _compiles(code: str) -> bool:
    """Compiles (which also catches ``return`` outside a function); nothing is run."""
    try:
        compile(code, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def outputs_match(
    actual: str, expected: str, *, float_tol: float = 1e-6, case_sensitive: bool = True
) -> bool:
    """Whether a program's output matches the expected output, as judges compare them.

    Whitespace-tolerant (tokens split on any whitespace, so spacing, line ends and trailing
    blank lines do not matter) and float-tolerant (two numeric tokens match within
    ``float_tol``, absolute or relative, when either has a decimal point or exponent).

    Example:
        >>> outputs_match("1 2\\n0.3333333\\n", "1 2 0.33333333")
        True
    """
    got, want = actual.split(), expected.split()
    if len(got) != len(want):
        return False
    for a, b in zip(got, want, strict=True):
        if a == b or (not case_sensitive and a.lower() == b.lower()):
            continue
        numeric = _NUMBER.match(a) and _NUMBER.match(b)
        integers = a.lstrip("+-").isdigit() and b.lstrip("+-").isdigit()
        if (
            numeric
            and not integers
            and math.isclose(float(a), float(b), rel_tol=float_tol, abs_tol=float_tol)
        ):
            continue
        return False
    return True


def first_difference(actual: str, expected: str) -> str:
    """A short description of where two outputs differ, for failure messages."""
    got, want = actual.split(), expected.split()
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"token {i + 1}: expected {b[:60]!r}, got {a[:60]!r}"
    if len(got) != len(want):
        return f"expected {len(want)} tokens, got {len(got)}"
    return "outputs differ"
