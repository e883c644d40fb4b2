"""Small pieces shared by the strategies of this package: verdicts, choices, public tests.

*Public tests* are the tests a strategy may look at while it generates. For HumanEval they are
the examples written in the prompt's docstring (``>>> f(1)`` / ``f(1) == 2`` / ``f(1) ➞ 2``
lines), never the hidden ``check`` function, which only judges the final answer. For tasks whose
tests are stated in the problem (MBPP asserts, stdin/stdout examples) they are the task's own
tests. :class:`ExamplesVerifier` runs them, so any strategy that takes a verifier can be
pointed at the public tests instead of the hidden ones.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from forkpath._params import Int
from forkpath._trace import TokensEvent, TracedToken, VerdictEvent, emit
from forkpath._types import Task
from forkpath.strategies._base import Candidate, Context

_SEPARATORS = ("==>", "=>", "➞", "->", "==", "returns", "should return", "# returns", "# =>")
_BUILTINS = frozenset(dir(builtins))
_WORDS = {"true": "True", "false": "False", "none": "None", "null": "None"}


def traced_token(
    logprobs: np.ndarray,
    token: int,
    detokenize: Callable[[Sequence[int]], str],
    *,
    model: int = 0,
    entropy: float | None = None,
    k: int = 5,
) -> TracedToken:
    """A token drawn from a full next-token distribution, as the trace's :class:`TokensEvent` keeps
    it: its logprob, the distribution's entropy and the ``k`` likeliest alternatives."""
    k = min(k, logprobs.shape[0])
    top = np.argpartition(-logprobs, k - 1)[:k]
    top = top[np.argsort(-logprobs[top])]
    if entropy is None:
        probs = np.exp(logprobs)
        entropy = float(-(probs * np.where(probs > 0, logprobs, 0.0)).sum())
    return TracedToken(
        text=detokenize([token]),
        logprob=float(logprobs[token]),
        entropy=entropy,
        top=[(detokenize([int(t)]), float(logprobs[t])) for t in top],
        model=model,
    )


def answer_tokens(result: Any, index: int | None) -> TokensEvent:
    """The tokens of one generated answer (a :class:`GenerateResult`) for the trace: one model
    wrote them all; alternatives as the request asked for them."""
    return TokensEvent(
        candidate_index=index,
        models=[result.model],
        tokens=[
            TracedToken(
                text=t.token,
                logprob=t.logprob,
                entropy=t.entropy,
                top=[(alt.token, alt.logprob) for alt in t.top],
            )
            for t in result.tokens
        ],
    )


def verifier_name(verifier: Any) -> str:
    """The registry name a verifier reports, else its class name."""
    return str(getattr(verifier, "name", None) or type(verifier).__name__)


async def verify_into(
    verifier: Any,
    task: Task,
    candidate: Candidate,
    index: int | None,
    *,
    detail: str = "",
    set_score: bool = True,
) -> Any:
    """Verify ``candidate`` with ``verifier``, record the verdict on it and emit a VerdictEvent.

    ``set_score=False`` keeps the candidate's ranking score (the verdict is then reported only).
    """
    verdict = await verifier.verify(task, candidate.text)
    candidate.passed = verdict.passed
    if set_score:
        candidate.score = verdict.score
    candidate.verdict = verdict.model_dump(mode="json")
    emit(
        VerdictEvent(
            verifier=verifier_name(verifier),
            passed=verdict.passed,
            score=verdict.score,
            candidate_index=index,
            detail=detail,
        )
    )
    return verdict


def best_index(candidates: list[Candidate], *, prefer_latest: bool = False) -> int | None:
    """Highest score, then highest mean logprob, then earliest (or latest) candidate."""
    if not candidates:
        return None

    def key(i: int) -> tuple[float, float, int]:
        c = candidates[i]
        return (
            c.score if c.score is not None else float("-inf"),
            c.mean_logprob if c.mean_logprob is not None else float("-inf"),
            i if prefer_latest else -i,
        )

    return max(range(len(candidates)), key=key)


def budget_reached(context: Context) -> bool:
    """True when the context's shared budget has run out (the caller stops and says so)."""
    return context.budget.exhausted() is not None


# -- public tests from the prompt -------------------------------------------------------------------
def _docstring_lines(prompt: str) -> list[str]:
    # A docstring may open on an example line: '"""' + '>>> f(1)'.
    return [re.sub(r"^(\"\"\"|\'\'\')", "", line.strip()).strip() for line in prompt.splitlines()]


def _balanced_call(text: str, start: int) -> int | None:
    """Index just past the call's closing parenthesis, ``text[start] == "("``; None if unbalanced."""
    depth, quote = 0, ""
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _python_value(text: str) -> str | None:
    """``text`` as a Python expression (lower-case true/false/none fixed), or None if it is not one."""
    text = text.strip().rstrip(".").strip()
    if not text:
        return None
    fixed = re.sub(r"\b(true|false|none|null)\b", lambda m: _WORDS[m.group(1)], text)
    for candidate in (text, fixed):
        try:
            tree = ast.parse(candidate, mode="eval")
        except SyntaxError:
            continue
        # Expected values are literals (or a negative number, a tuple of literals): not calls.
        if all(
            not isinstance(node, ast.Call | ast.Name | ast.Attribute) or _is_constant_name(node)
            for node in ast.walk(tree.body)
        ):
            return candidate
    return None


def _is_constant_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("True", "False", "None")


def _calls(expression: str, name: str) -> bool:
    """Whether ``expression`` parses and calls function ``name``."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return False
    nodes = list(ast.walk(tree))
    # Only literals, builtins and the function itself: "f(a)" in prose names no real input.
    if any(isinstance(n, ast.Name) and n.id != name and n.id not in _BUILTINS for n in nodes):
        return False
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in nodes)


def _expected_after(rest: str) -> str | None:
    for sep in _SEPARATORS:
        stripped = rest.lstrip()
        if stripped.startswith(sep):
            return _python_value(stripped[len(sep) :])
    return None


def _assertion(call: str, expected: str) -> str | None:
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", expected.strip()):
        statement = f"assert abs(({call}) - ({expected})) < 1e-6"
    else:
        statement = f"assert ({call}) == ({expected})"
    try:
        ast.parse(statement)
    except SyntaxError:
        return None
    return statement


def prompt_examples(task: Task, *, limit: int = 10) -> list[str]:
    """Assert statements for the input/output examples written in a function task's prompt.

    Understood shapes: a ``>>> call`` line followed by its output line, and one-line
    ``call SEP value`` where SEP is ``==``, ``=>``, ``==>``, ``➞``, ``->`` or ``returns``. Lines
    whose call or value is not a Python expression are skipped, so some prompts give none.

    Example:
        >>> prompt_examples(Task(id="t", prompt="def f(x):\\n    '''f(2) == 4'''\\n", entry_point="f"))
        ['assert (f(2)) == (4)']
    """
    name = task.entry_point
    if not name:
        return []
    lines = _docstring_lines(task.prompt)
    found: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith(">>>"):
            call = line[3:].strip()
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            expected = _python_value(nxt) if nxt and not nxt.startswith(">>>") else None
            if not _calls(call, name):
                continue
        else:
            if not line.startswith(f"{name}("):
                continue  # prose before the call ("For example, if f(1) ..."): not an example
            end = _balanced_call(line, len(name))
            if end is None or not _calls(line[:end], name):
                continue
            call, expected = line[:end], _expected_after(line[end:])
        if expected is None:
            continue
        statement = _assertion(call, expected)
        if statement and statement not in found:
            found.append(statement)
    return found[:limit]


def public_task(task: Task, *, limit: int = 10) -> Task | None:
    """A copy of ``task`` that carries only its public tests, or None when it has none.

    HumanEval-style tasks (a hidden ``test``): the prompt's examples as asserts. Tasks with
    asserts or stdin/stdout cases: those, as given (their datasets state them in the problem).
    """
    if task.test is not None:
        examples = prompt_examples(task, limit=limit)
        if not examples:
            return None
        return task.model_copy(update={"test": None, "asserts": examples, "io_cases": []})
    if task.asserts or task.io_cases:
        return task
    return None


class ExamplesVerifier:
    """Verifies a candidate against the task's public tests only (see :func:`public_task`).

    A task without public tests gets a failing verdict with no tests and score 0, so rankings
    fall back to their tie-breakers. The verdict says ``public_tests`` in its details.

    Args:
        runner: the verifier that runs tests (default: ``python_tests`` with default limits).
    """

    name = "prompt_examples"

    def __init__(self, runner: Any = None, *, limit: int = 10) -> None:
        self.limit = limit
        if runner is None:
            from forkpath.verifiers import make_verifier

            runner = make_verifier("python_tests")
        self.runner = runner

    async def verify(self, task: Task, candidate: str) -> Any:
        from forkpath.verifiers import Verdict

        public = public_task(task, limit=self.limit)
        if public is None:
            return Verdict(
                passed=False, score=0.0, verifier=self.name, details={"public_tests": 0, "no_examples": True}
            )
        verdict = await self.runner.verify(public, candidate)
        verdict.verifier = self.name
        verdict.details["public_tests"] = len(verdict.tests)
        return verdict


def public_tests(max_examples: Annotated[Int, Field(ge=1, le=100)] = 10) -> ExamplesVerifier:
    """The ``public_tests`` verifier: a candidate against the task's public tests only
    (:func:`public_task`), so a flow's strategies can rank by tests without seeing the hidden
    ones. Registered here, beside the examples it reads; ``forkpath sweep`` gives it to the
    strategies of a code grid and judges answers with the hidden tests.

    Args:
        max_examples: at most this many of the prompt's examples become tests.
    """
    return ExamplesVerifier(limit=max_examples)


def failure_report(verdict: Any, *, limit: int = 4, max_chars: int = 1200) -> str:
    """Failing tests of a verdict as short lines for a prompt (name, reason, message)."""
    lines: list[str] = []
    for test in verdict.failures[:limit]:
        message = f": {test.message}" if test.message else ""
        lines.append(f"- {test.name} -> {test.reason}{message}")
    stderr = verdict.details.get("stderr") if hasattr(verdict, "details") else None
    if stderr and not lines:
        lines.append(f"- error output: {str(stderr).strip().splitlines()[-1]}")
    text = "\n".join(lines)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."
