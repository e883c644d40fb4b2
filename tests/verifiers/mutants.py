"""Deterministic mutants of HumanEval canonical solutions, for agreement with the reference harness.

Each task gets one mutant: operator ``i % len(OPERATORS)`` (or the next one that applies) is
applied to the ``k``-th node it can change inside the entry-point function. Half of the mutants
are returned as a function body (the completion shape the reference joins to the prompt), half
as a whole program that redefines the function.
"""

import ast
import copy
from collections.abc import Callable

_COMPARE_FLIP: dict[type, type] = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
}


def _flip_compare(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare) and type(node.ops[0]) in _COMPARE_FLIP:
        node.ops[0] = _COMPARE_FLIP[type(node.ops[0])]()
        return True
    return False


def _shift_constant(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        node.value += 1
        return True
    return False


def _swap_binop(node: ast.AST) -> bool:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
        node.op = _BINOP_SWAP[type(node.op)]()
        return True
    return False


def _swap_boolop(node: ast.AST) -> bool:
    if isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return True
    return False


def _negate_if(node: ast.AST) -> bool:
    if isinstance(node, ast.If):
        node.test = ast.UnaryOp(ast.Not(), node.test)
        return True
    return False


def _drop_return_value(node: ast.AST) -> bool:
    if isinstance(node, ast.Return) and node.value is not None:
        node.value = None
        return True
    return False


OPERATORS: list[tuple[str, Callable[[ast.AST], bool]]] = [
    ("flip_compare", _flip_compare),
    ("shift_constant", _shift_constant),
    ("swap_binop", _swap_binop),
    ("swap_boolop", _swap_boolop),
    ("negate_if", _negate_if),
    ("drop_return_value", _drop_return_value),
]


def _applicable(function: ast.FunctionDef, operator: Callable[[ast.AST], bool]) -> list[ast.AST]:
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    nodes = [n for stmt in body for n in ast.walk(stmt)]
    return [n for n in nodes if operator(copy.deepcopy(n))]


def mutate(prompt: str, canonical: str, entry_point: str, index: int) -> tuple[str, str] | None:
    """The ``index``-th task's mutant as (operator name, completion), or None if nothing applies."""
    tree = ast.parse(prompt + canonical)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry_point)
    for shift in range(len(OPERATORS)):
        name, operator = OPERATORS[(index + shift) % len(OPERATORS)]
        targets = _applicable(function, operator)
        if not targets:
            continue
        target = targets[(index // len(OPERATORS)) % len(targets)]
        operator(target)
        ast.fix_missing_locations(tree)
        if index % 2 == 0:
            body = function.body[1:] if ast.get_docstring(function) is not None else function.body
            text = "\n".join(ast.unparse(stmt) for stmt in body)
            return name, "".join(f"    {line}\n" for line in text.splitlines())
        return name, ast.unparse(tree) + "\n"
    return None
