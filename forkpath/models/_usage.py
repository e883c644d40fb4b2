"""Usage accounting: every model call is recorded into the meters active in its context.

A strategy opens a meter, runs, and reads what its calls cost, per model::

    with usage_meter() as meter:
        await model.generate(request)
    meter.by_model["local/smollm2-135m"].completion_tokens

Meters nest: a call is recorded into every meter open around it, so a flow's meter sees the
sum of its strategies'. The active meters live in a context variable, which asyncio copies
into each task, so concurrent branches record into the meters of the scope that spawned them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from forkpath.models._types import GenerateResult, Usage


class UsageMeter:
    """Calls, tokens and cost per model id, and tool calls, accumulated while the meter is open."""

    def __init__(self) -> None:
        self.by_model: dict[str, Usage] = {}
        self.tool_calls = 0
        """Tool calls made by agents inside the meter."""
        self.tool_seconds = 0.0
        """Wall seconds those tool calls took."""

    def record_tool(self, seconds: float) -> None:
        self.tool_calls += 1
        self.tool_seconds += seconds

    def record(self, result: GenerateResult) -> None:
        self.by_model[result.model] = self.by_model.get(result.model, Usage()) + result.usage

    @property
    def total(self) -> Usage:
        return sum(self.by_model.values(), Usage())


_active: ContextVar[tuple[UsageMeter, ...]] = ContextVar("forkpath_usage_meters", default=())


@contextmanager
def usage_meter(meter: UsageMeter | None = None) -> Iterator[UsageMeter]:
    """Open ``meter`` (default: a new one) to record every model call made inside the block."""
    meter = meter if meter is not None else UsageMeter()
    if any(open_meter is meter for open_meter in _active.get()):
        yield meter  # already open further out (a budget shared by nested strategies): count once
        return
    token = _active.set((*_active.get(), meter))
    try:
        yield meter
    finally:
        _active.reset(token)


def record_usage(result: GenerateResult) -> None:
    """Record one call into every open meter (called by :class:`Model` after each call)."""
    for meter in _active.get():
        meter.record(result)


def record_tool_call(seconds: float) -> None:
    """Record one tool call into every open meter (called by the agent loop after each call)."""
    for meter in _active.get():
        meter.record_tool(seconds)
