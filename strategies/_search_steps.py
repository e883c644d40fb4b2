"""Steps of a step-level search: where a step ends, and how candidate next steps are drafted.

A step is a line (``line``), a paragraph (``paragraph``: up to a blank line), the end of a Python
logical line (``statement``: a newline outside brackets, strings and backslash continuations),
or up to the end of a match of a regular expression (``regex``). Line-like steps are drafted
with stop strings, so the model stops at the end of the step; a regex step is cut from a longer
draft. A partial answer is continued as a partial assistant turn (prefix continuation).

A draft whose stop string was hit gets the delimiter back (backends drop it from the text). A
backend that cannot say whether it stopped at the delimiter or at the end of its answer is
taken to have hit the delimiter when it wrote something: the next draft then comes back empty,
which ends the answer. That costs one call at the end of an answer and never cuts one short.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from forkpath._errors import ConfigError
from forkpath._types import Task
from forkpath.models import GenerateRequest, GenerateResult, Message, Model, TokenInfo, TopLogprob
from forkpath.strategies._search import OutOfBudget, SearchCounters

StepKind = Literal["line", "paragraph", "statement", "regex"]

_FENCE = re.compile(r"^```", re.MULTILINE)


class StepSplitter:
    """Where steps end.

    Args:
        kind: ``line``, ``paragraph``, ``statement`` or ``regex``.
        pattern: for ``regex``: a step ends after the first match (e.g. ``\\n(?=Step)``).

    Example:
        >>> StepSplitter("statement").split("x = f(1,\\n      2)\\ny = 3\\n")
        ['x = f(1,\\n      2)\\n', 'y = 3\\n']
    """

    def __init__(self, kind: StepKind = "line", pattern: str | None = None) -> None:
        if kind not in ("line", "paragraph", "statement", "regex"):
            raise ConfigError(f"unknown step kind {kind!r}; use line, paragraph, statement or regex")
        if (kind == "regex") != (pattern is not None):
            raise ConfigError("give step.pattern exactly when step.kind is 'regex'")
        self.kind: StepKind = kind
        self.pattern = pattern
        try:
            self._regex = re.compile(pattern) if pattern is not None else None
        except re.error as e:
            raise ConfigError(f"step.pattern {pattern!r} is not a valid regular expression: {e}") from None
        if self._regex is not None and self._regex.search("") is not None:
            raise ConfigError(f"step.pattern {pattern!r} matches the empty string; it must match a boundary")

    def __repr__(self) -> str:
        return f"StepSplitter({self.kind!r}{', ' + repr(self.pattern) if self.pattern else ''})"

    @property
    def stops(self) -> tuple[str, ...]:
        """Stop strings that end a draft at the end of a step (none for ``regex``)."""
        return {"line": ("\n",), "paragraph": ("\n\n",), "statement": ("\n",), "regex": ()}[self.kind]

    def boundary(self, text: str, before: str = "") -> int | None:
        """The end of the first step in ``text`` (an index into it), or None if it has none yet.

        ``before`` is the answer so far: a statement may have begun in it (an open string or
        bracket carries over).
        """
        if self.kind == "line":
            i = text.find("\n")
            return None if i < 0 else i + 1
        if self.kind == "paragraph":
            i = text.find("\n\n")
            return None if i < 0 else i + 2
        if self.kind == "statement":
            end = _statement_end(before + text, len(before))
            return None if end is None else end - len(before)
        assert self._regex is not None
        match = self._regex.search(text)
        return None if match is None else match.end()

    def first_end(self, text: str, before: str = "") -> int | None:
        """The end of the first step of ``text`` that is not blank (blank lines join the step
        after them), or None if ``text`` does not contain a whole step yet."""
        start = 0
        while True:
            end = self.boundary(text[start:], before + text[:start])
            if end is None:
                return None
            if text[: start + end].strip():
                return start + end
            start += end

    def cut(self, text: str, finished: bool, before: str = "") -> tuple[str, bool]:
        """The first step of ``text`` (which follows ``before``) and whether it is the last one.

        When ``text`` has no boundary, all of it is one step, the last one if ``finished``.
        """
        end = self.first_end(text, before)
        if end is None:
            return text, finished
        return text[:end], finished and end == len(text)

    def split(self, text: str, before: str = "") -> list[str]:
        """All steps of a complete ``text`` (which follows ``before``)."""
        steps = []
        while text:
            step, _ = self.cut(text, True, before)
            steps.append(step)
            before, text = before + step, text[len(step) :]
        return steps


def _statement_end(text: str, start: int = 0) -> int | None:
    """The index after the first newline at or after ``start`` that ends a Python logical
    line, if any (``text`` is scanned from its beginning, so strings and brackets opened
    before ``start`` are known).

    Tracks brackets, string literals (single-quoted ones end at a newline, so an apostrophe in
    prose costs one line at most), comments and backslash continuations.
    """
    depth, quote, i = 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
            if ch == "\n" and len(quote) == 1:
                quote = ""  # unterminated: not Python, end the line here
            else:
                i += 1
                continue
        if ch == "#":
            newline = text.find("\n", i)
            if newline < 0:
                return None
            i = newline
            continue
        if ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "\\" and text.startswith("\\\n", i):
            i += 2
            continue
        elif ch == "\n" and depth == 0 and i >= start:
            return i + 1
        i += 1
    return None


def answer_complete(task: Task, text: str) -> bool:
    """Whether a partial answer is already complete: for code, a closed fenced block."""
    return task.kind == "code" and len(_FENCE.findall(text)) >= 2


@dataclass
class StepDraft:
    """One drafted next step."""

    text: str
    """The step; empty: the model ended the answer here."""
    final: bool
    """The answer ends with this step."""
    logprob: float | None = None
    """Sum of the step's token logprobs, when the backend gives them."""
    first_top: list[TopLogprob] = field(default_factory=list)
    """Alternatives at the step's first token (when asked for)."""


class StepWriter:
    """Drafts steps and completions of a partial answer with one model.

    Args:
        model: the model that writes.
        messages: the chat messages that ask for the answer.
        splitter: where steps end.
        task: the task (to know when a code answer is complete).
        counters: where calls are counted.
        budget_left: returns False when no further model call may be made.
        max_step_tokens: most tokens of one step.
        seed: sampling seed.
    """

    def __init__(
        self,
        model: Model,
        messages: tuple[Message, ...],
        splitter: StepSplitter,
        task: Task,
        counters: SearchCounters,
        budget_left: Callable[[], bool],
        *,
        max_step_tokens: int = 96,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.messages = messages
        self.splitter = splitter
        self.task = task
        self.counters = counters
        self.budget_left = budget_left
        """False when no further model call may be made."""
        self.max_step_tokens = max_step_tokens
        self.seed = seed

    def request(self, partial: str, **options: object) -> GenerateRequest:
        """A request continuing ``partial`` as the assistant's answer."""
        messages = self.messages + ((Message(role="assistant", content=partial),) if partial else ())
        return GenerateRequest(messages=messages, seed=self.seed, **options)  # type: ignore[arg-type]

    async def call(self, request: GenerateRequest) -> GenerateResult:
        """One model call, refused (:class:`OutOfBudget`) when the budget says no."""
        if not self.budget_left():
            raise OutOfBudget
        result = await self.model.generate(request)
        self.counters.count_call(result.cached)
        return result

    async def draft(
        self,
        partial: str,
        *,
        lead: str = "",
        temperature: float = 0.0,
        sample_index: int = 0,
        top_logprobs: int = 0,
    ) -> StepDraft:
        """Draft the step that follows ``partial`` (and starts with ``lead``, when given).

        A draft stops at the step's delimiter. A blank line asks for another round; so does a
        statement still open at the end of a line, and that round runs without stop strings
        and is cut where the statement ends (one call for a long literal, not one per line).
        """
        logprob: float | None = 0.0
        text, first_top = lead, list[TopLogprob]()
        for round_ in range(8):
            open_statement = round_ > 0 and bool(text.strip())
            stops = () if open_statement else self.splitter.stops
            result = await self.call(
                self.request(
                    partial + text,
                    max_tokens=self.max_step_tokens,
                    temperature=temperature,
                    sample_index=sample_index,
                    stop=stops,
                    top_logprobs=top_logprobs if round_ == 0 else 0,
                    logprobs=self.model.capabilities.logprobs,
                )
            )
            if round_ == 0 and result.tokens:
                first_top = list(result.tokens[0].top)
            piece, final, hit = self._interpret(result, stops)
            if open_statement:
                end = self.splitter.first_end(text + piece, partial)
                if end is not None:
                    piece, final = piece[: end - len(text)], final and end == len(text) + len(piece)
                used = _tokens_within(result, len(piece))
            else:
                used = list(result.tokens)
            logprob = _add_logprobs(logprob, used, bool(result.tokens) or not result.text)
            text += piece
            if final or not hit or self.splitter.first_end(text, partial) is not None:
                break
        step, last = self.splitter.cut(text, final, partial)
        if not step.strip():
            return StepDraft(text="", final=True, logprob=logprob, first_top=first_top)
        if answer_complete(self.task, partial + step):
            last = True
        return StepDraft(text=step, final=last, logprob=logprob, first_top=first_top)

    def _interpret(self, result: GenerateResult, stops: tuple[str, ...]) -> tuple[str, bool, bool]:
        """(text, the answer ended, a delimiter was hit) of one draft made with ``stops``."""
        if not stops:
            return result.text, result.finish_reason == "stop", False
        if result.finish_reason != "stop":
            return result.text, False, False
        pieces = "".join(t.token for t in result.tokens)
        if not result.text and not pieces:
            return "", True, False
        tail = pieces[len(result.text) :] if pieces.startswith(result.text) else ""
        delimiter = next((s for s in stops if tail.startswith(s)), stops[0])
        return result.text + delimiter, False, True

    async def complete(self, partial: str, *, max_tokens: int, top_logprobs: int = 0) -> GenerateResult:
        """The greedy completion of ``partial`` to the end of the answer (a rollout)."""
        return await self.call(
            self.request(
                partial,
                max_tokens=max_tokens,
                temperature=0.0,
                top_logprobs=top_logprobs,
                logprobs=self.model.capabilities.logprobs,
            )
        )


def _tokens_within(result: GenerateResult, length: int) -> list[TokenInfo]:
    """The tokens of ``result`` that start within its first ``length`` characters."""
    used: list[TokenInfo] = []
    seen = 0
    for token in result.tokens:
        if seen >= length:
            break
        used.append(token)
        seen += len(token.token)
    return used


def _add_logprobs(total: float | None, tokens: list[TokenInfo], known: bool) -> float | None:
    """``total`` plus the tokens' logprobs; None once any logprob is unknown."""
    if total is None or not known or any(t.logprob is None for t in tokens):
        return None
    return total + sum(t.logprob for t in tokens if t.logprob is not None)


def step_priors(drafts: list[StepDraft]) -> list[float]:
    """Priors of distinct drafted steps: their sequence probabilities, normalised.

    Uniform when a draft has no logprob. Logprobs are shifted by the largest before
    exponentiating, so long steps do not all underflow to zero.
    """
    if not drafts:
        return []
    if any(d.logprob is None for d in drafts):
        return [1.0 / len(drafts)] * len(drafts)
    top = max(d.logprob for d in drafts if d.logprob is not None)
    weights = [math.exp((d.logprob or 0.0) - top) for d in drafts]
    total = sum(weights)
    return [w / total for w in weights]
