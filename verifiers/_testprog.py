"""Turning a task's tests into a generator that reports each test on its own.

A HumanEval ``check(candidate)`` is one function full of asserts; run as is, the first failure
hides the rest and the score can only be 0 or 1. We rewrite it: every top-level statement of
``check`` that contains an ``assert`` becomes one test, wrapped so that it yields
``(index, exception or None)`` and the run goes on. Other statements (imports, setup) run as
they are, so a test sees exactly the state it would have seen in the original. MBPP-style
assert lists get the same treatment. An ``assert x == y`` without a message also reports the
value it got (``x`` is evaluated once, as before). The rewritten code runs inside the sandbox
harness.
"""

import ast
from dataclasses import dataclass
from functools import lru_cache

from forkpath._errors import VerifierError

ASSERTS_FUNCTION = "__forkpath_asserts__"
_MAX_NAME = 120
_ACTUAL = "__forkpath_actual__"
_SHOW = ast.parse(
    """
def __forkpath_got__(value):
    try:
        text = repr(value)
    except BaseException:
        text = '<unprintable>'
    return 'got ' + (text if len(text) <= 300 else text[:300] + '...')
"""
).body


@dataclass(frozen=True)
class TestProgram:
    """Test code for the harness: ``function`` (called with the entry point, if any) yields per test."""

    __test__ = False  # not a pytest test class

    source: str
    function: str
    names: tuple[str, ...]
    entry_point: str | None


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """The statement lists nested in a compound statement (not inside definitions)."""
    if isinstance(stmt, _DEFINITIONS):
        return []  # a helper defined in the test is not itself a test
    blocks = [
        getattr(stmt, f) for f in ("body", "orelse", "finalbody") if isinstance(getattr(stmt, f, None), list)
    ]
    blocks += [handler.body for handler in getattr(stmt, "handlers", [])]
    blocks += [case.body for case in getattr(stmt, "cases", [])]
    return blocks


def _contains_assert(stmt: ast.stmt) -> bool:
    # Only statements are walked: asserts are statements, and test code holds big literals.
    return isinstance(stmt, ast.Assert) or any(_contains_assert(s) for block in _blocks(stmt) for s in block)


def _show_actual(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """``assert a == b`` becomes ``actual = a; assert actual == b, got(actual)``, at any depth."""
    out: list[ast.stmt] = []
    for stmt in stmts:
        test = stmt.test if isinstance(stmt, ast.Assert) else None
        if (
            isinstance(stmt, ast.Assert)
            and stmt.msg is None
            and isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
        ):
            actual = ast.Name(_ACTUAL, ast.Load())
            message = ast.Call(ast.Name("__forkpath_got__", ast.Load()), [actual], [])
            out.append(ast.copy_location(ast.Assign([ast.Name(_ACTUAL, ast.Store())], test.left), stmt))
            out.append(
                ast.copy_location(ast.Assert(ast.Compare(actual, test.ops, test.comparators), message), stmt)
            )
            continue
        for block in _blocks(stmt):
            block[:] = _show_actual(block)
        out.append(stmt)
    return out


def _test(stmt: ast.stmt, index: int) -> ast.stmt:
    """One test statement, rewritten to show actual values and wrapped to yield its outcome."""
    return _wrap(_show_actual([stmt]), index)


def _wrap(stmt: ast.stmt | list[ast.stmt], index: int) -> ast.stmt:
    """``try: <stmt> except BaseException as e: yield (i, e) else: yield (i, None)``."""
    exc = "__forkpath_exc__"

    def yield_of(value: ast.expr) -> ast.stmt:
        return ast.Expr(ast.Yield(ast.Tuple([ast.Constant(index), value], ast.Load())))

    return ast.Try(
        body=stmt if isinstance(stmt, list) else [stmt],
        handlers=[
            ast.ExceptHandler(
                type=ast.Name("BaseException", ast.Load()),
                name=exc,
                body=[yield_of(ast.Name(exc, ast.Load()))],
            )
        ],
        orelse=[yield_of(ast.Constant(None))],
        finalbody=[],
    )


def _name(lines: list[bytes], stmt: ast.stmt, fallback: str) -> str:
    """The statement's source, on one line and shortened (offsets are UTF-8 byte columns)."""
    end_line, end_col = stmt.end_lineno, stmt.end_col_offset
    if end_line is None or end_col is None or end_line > len(lines):
        return fallback
    chunk = lines[stmt.lineno - 1 : end_line]
    chunk[-1] = chunk[-1][:end_col]
    chunk[0] = chunk[0][stmt.col_offset :]
    text = " ".join(b"".join(chunk).decode("utf-8", "replace").split()) or fallback
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 3] + "..."


def _split_body(body: list[ast.stmt], source: str) -> tuple[list[ast.stmt], list[str]]:
    lines = source.encode().splitlines(keepends=True)
    new_body: list[ast.stmt] = []
    names: list[str] = []
    for stmt in body:
        if _contains_assert(stmt):
            names.append(_name(lines, stmt, f"test {len(names) + 1}"))
            new_body.append(_test(stmt, len(names) - 1))
        else:
            new_body.append(stmt)
    return new_body, names


@lru_cache(maxsize=1024)
def humaneval_tests(test: str, entry_point: str) -> TestProgram:
    """Rewrite HumanEval test code (defining ``check(candidate)``) into a per-test generator."""
    try:
        tree = ast.parse(test)
    except SyntaxError as e:
        raise VerifierError(f"the task's test code does not compile: {e.msg} (line {e.lineno})") from None
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None:
        raise VerifierError("the task's test code defines no check(candidate) function")
    docstring = check.body[:1] if check.body and _is_docstring(check.body[0]) else []
    body, names = _split_body(check.body[len(docstring) :], test)
    if not names:
        # No assert at top level of check (e.g. all in a helper): the whole call is one test.
        check.name = "__forkpath_check__"
        call = ast.parse("__forkpath_check__(candidate)").body[0]
        wrapper = ast.parse("def check(candidate):\n    pass").body[0]
        assert isinstance(wrapper, ast.FunctionDef)
        wrapper.body = [_wrap(call, 0)]
        tree.body.append(wrapper)
        names = [f"check({entry_point})"]
    else:
        check.body = docstring + body
    tree.body[:0] = _SHOW
    source = ast.unparse(ast.fix_missing_locations(tree))
    return TestProgram(source=source, function="check", names=tuple(names), entry_point=entry_point)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


@lru_cache(maxsize=1024)
def assert_tests(asserts: tuple[str, ...]) -> TestProgram:
    """MBPP-style statements as one generator; statements without ``assert`` are setup."""
    body: list[ast.stmt] = []
    names: list[str] = []
    for i, text in enumerate(asserts):
        try:
            statements = ast.parse(text).body
        except SyntaxError as e:
            raise VerifierError(
                f"test {i + 1} of the task does not compile: {e.msg}: {text[:80]!r}"
            ) from None
        lines = text.encode().splitlines(keepends=True)
        for stmt in statements:
            if _contains_assert(stmt):
                names.append(_name(lines, stmt, f"assert {len(names) + 1}"))
                body.append(_test(stmt, len(names) - 1))
            else:
                body.append(stmt)
    if not names:
        raise VerifierError("the task's asserts contain no assert statement")
    # Module-level names the asserts assign stay local to the generator; globals are the candidate's.
    function = ast.FunctionDef(
        name=ASSERTS_FUNCTION,
        args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=body,
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    module = ast.Module(body=[*_SHOW, function], type_ignores=[])
    source = ast.unparse(ast.fix_missing_locations(module))
    return TestProgram(source=source, function=ASSERTS_FUNCTION, names=tuple(names), entry_point=None)
