"""A shared budget that nested strategies draw from and stop cleanly at.

A :class:`Budget` is a usage meter with limits: while it is open, every model call made in its
context is charged to it automatically (the model layer records into open meters), so a
strategy inside a strategy spends from the same budget without passing anything around.
Running out is not an error: strategies check :meth:`Budget.exhausted` before spending and
return their best result so far, saying ``stopped="budget"``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, ConfigDict, Field

from forkpath._trace import BudgetEvent, emit
from forkpath.models import UsageMeter, usage_meter


class BudgetLimits(BaseModel):
    """Limits of a budget; any left unset is unlimited."""

    model_config = ConfigDict(extra="forbid")

    max_calls: int | None = Field(default=None, ge=0)
    """Model calls that reached a model (cache hits are free)."""
    max_tokens: int | None = Field(default=None, ge=0)
    """Prompt plus completion tokens, over all models."""
    max_seconds: float | None = Field(default=None, ge=0)
    """Wall-clock seconds since the budget was first opened."""
    max_cost: float | None = Field(default=None, ge=0)
    """US dollars, where providers' prices are known."""
    max_tool_calls: int | None = Field(default=None, ge=0)
    """Tool calls made by agents."""


class Budget(UsageMeter):
    """Usage so far, per model, against :class:`BudgetLimits`.

    Example:
        >>> budget = Budget(BudgetLimits(max_calls=16))
        >>> with budget.open():
        ...     result = await best_of_n(n=32)(task, context)   # stops after 16 calls
    """

    def __init__(self, limits: BudgetLimits | None = None) -> None:
        super().__init__()
        self.limits = limits or BudgetLimits()
        self.started: float | None = None
        self._reported = False

    @contextmanager
    def open(self) -> Iterator[Budget]:
        """Charge every model call made inside the block to this budget."""
        if self.started is None:
            self.started = time.monotonic()
        with usage_meter(self):
            yield self

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def exhausted(self) -> str | None:
        """The name of the first limit reached (``calls``, ``tokens``, ``seconds``, ``cost``,
        ``tool_calls``), or None."""
        total, limits = self.total, self.limits
        reached = None
        if limits.max_calls is not None and total.calls >= limits.max_calls:
            reached = "calls"
        elif limits.max_tokens is not None and total.total_tokens >= limits.max_tokens:
            reached = "tokens"
        elif limits.max_seconds is not None and self.elapsed_s >= limits.max_seconds:
            reached = "seconds"
        elif limits.max_cost is not None and total.cost >= limits.max_cost:
            reached = "cost"
        elif limits.max_tool_calls is not None and self.tool_calls >= limits.max_tool_calls:
            reached = "tool_calls"
        if reached and not self._reported:
            self._reported = True
            emit(BudgetEvent(exhausted=reached))
        return reached

    def calls_left(self) -> int | None:
        """Model calls still allowed (None: unlimited)."""
        if self.limits.max_calls is None:
            return None
        return max(0, self.limits.max_calls - self.total.calls)
