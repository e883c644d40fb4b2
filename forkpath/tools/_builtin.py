"""The built-in tools: ``python`` (a program run in the verifiers' sandbox) and ``calculator``.

``python`` runs what the model wrote exactly as a candidate program is run when it is verified:
in the sandbox of :mod:`forkpath.verifiers` (no network, resource limits, a time limit, bounded
output, a private /tmp), so hostile tool code is contained the same way hostile candidates are.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from forkpath.models import ToolSpec
from forkpath.tools._base import MAX_OUTPUT_CHARS, ToolResult, clip, tools


class PythonTool:
    """Runs a Python program in the sandbox; the observation is what it printed.

    Args:
        timeout_s: wall-clock limit of one run.
        memory_mb: address-space limit of one run.
        max_output: most characters of output shown to the model.
    """

    def __init__(
        self, timeout_s: float = 10.0, memory_mb: int = 1024, max_output: int = MAX_OUTPUT_CHARS
    ) -> None:
        from forkpath.verifiers import Limits

        self.limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb)
        self.max_output = max_output
        self.registered: Any = None

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(
            name="python",
            description=(
                "Run a Python 3 program and return what it prints (standard output). Use print() to "
                "show results; a last line that is an expression is shown as in a notebook. No "
                "network; the standard library only; "
                f"{self.limits.timeout_s:g} s time limit."
            ),
            parameters={
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The complete program."}},
                "required": ["code"],
                "additionalProperties": False,
            },
        )

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        from forkpath.verifiers import extract_code, run_program

        code = arguments.get("code")
        if not isinstance(code, str) or set(arguments) - {"code"}:
            raise ValueError('python takes one argument, "code": the program as a string')
        run = await run_program(show_last_expression(extract_code(code)), "", limits=self.limits)
        details = {"exit_code": run.exit_code, "timed_out": run.timed_out}
        if run.timed_out:
            output = f"{run.stdout}\n[timed out after {self.limits.timeout_s:g} s]".strip()
            return ToolResult(output=clip(output, self.max_output), error=True, details=details)
        if run.exit_code != 0:
            tail = (
                "\n".join(run.stderr.strip().splitlines()[-6:]) or run.message
            )  # a syntax error has no stderr
            output = f"{run.stdout}\n[exit code {run.exit_code}]\n{tail}".strip()
            return ToolResult(output=clip(output, self.max_output), error=True, details=details)
        return ToolResult(output=clip(run.stdout, self.max_output) or "(no output)", details=details)


def show_last_expression(code: str) -> str:
    """``code`` with its last statement printed when that statement is a bare expression other
    than a call to ``print`` (``123 * 457`` shows ``56211``, as a notebook cell would).
    Code that does not parse is returned as it is, so the run reports the syntax error."""
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    last = module.body[-1] if module.body else None
    if not isinstance(last, ast.Expr):
        return code
    call = last.value
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print":
        return code
    lines = code.splitlines()
    head = "\n".join([*lines[: last.lineno - 1], lines[last.lineno - 1][: last.col_offset]])
    expression = ast.get_source_segment(code, last) or ast.unparse(last)
    return f"{head}__value = ({expression})\nif __value is not None:\n    print(repr(__value))\n"


@tools.register("python")
def python(
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0,
    memory_mb: Annotated[int, Field(ge=128, le=65536)] = 1024,
    max_output: Annotated[int, Field(ge=100, le=1_000_000)] = MAX_OUTPUT_CHARS,
) -> PythonTool:
    """A Python interpreter in the sandbox (no network, resource and time limits)."""
    return PythonTool(timeout_s=timeout_s, memory_mb=memory_mb, max_output=max_output)


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "exp": math.exp,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPONENT = 10_000
_MAX_DIGITS = 4_300  # Python's own int-to-str limit


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression: numbers, ``+ - * / // % **``, parentheses and a
    few functions (sqrt, abs, round, min, max, floor, ceil, log, exp). Nothing else is evaluated.

    Example:
        >>> evaluate("3 * (4 + 5) / 2")
        13.5
    """
    if len(expression) > 2000:
        raise ValueError("expression longer than 2000 characters")
    try:
        tree = ast.parse(expression.replace("^", "**").replace(",", ", "), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {e.msg}") from None
    return _value(tree.body)


def _value(node: ast.AST) -> Any:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, int) and abs(result).bit_length() > _MAX_DIGITS * 3.33:
            raise ValueError("result is too large")
        return result
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_value(a) for a in node.args))
    raise ValueError(f"not allowed in an arithmetic expression: {ast.unparse(node)[:80]!r}")


class CalculatorTool:
    """Evaluates arithmetic exactly as written (no code runs)."""

    registered: Any = None

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(
            name="calculator",
            description="Evaluate an arithmetic expression, e.g. (12 + 30) * 1.5 / 7; sqrt, min, max, round allowed.",
            parameters={
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
                "additionalProperties": False,
            },
        )

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        expression = arguments.get("expression")
        if not isinstance(expression, str) or set(arguments) - {"expression"}:
            raise ValueError('calculator takes one argument, "expression": a string')
        try:
            value = evaluate(expression)
        except (ValueError, ZeroDivisionError, OverflowError, TypeError) as e:
            return ToolResult(output=f"error: {e}", error=True)
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)
        return ToolResult(output=str(value))


@tools.register("calculator")
def calculator() -> CalculatorTool:
    """Arithmetic without running code."""
    return CalculatorTool()
