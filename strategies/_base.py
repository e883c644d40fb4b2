"""The strategy protocol: a task and a context in; candidates, the chosen answer, usage out.

A strategy is made by a *factory* whose parameters are its configuration, registered by name::

    @strategies.register("best_of_n")
    def best_of_n(n: int = 8, temperature: float = 0.8) -> Strategy:
        async def run(task: Task, context: Context) -> StrategyResult: ...
        return Strategy(run, needs={"default": ModelCapabilities()})

Calling a :class:`Strategy` checks the capabilities it needs against the context's models
(before any model call), charges every call to the context's budget, emits start/end trace
events and fills in the usage of this run per model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forkpath._answer import strategy_scope
from forkpath._budget import Budget
from forkpath._errors import ConfigError
from forkpath._registry import Registered, Registry
from forkpath._trace import CandidateEvent, StrategyEvent, emit, span
from forkpath._types import Task
from forkpath.models import Model, ModelCapabilities, Usage, usage_meter

Stopped = Literal["done", "early_stop", "budget"]


class Candidate(BaseModel):
    """One answer a strategy produced, with what is known about it."""

    model_config = ConfigDict(extra="forbid")

    text: str
    """The model's full answer."""
    model: str
    """Which model wrote it."""
    answer: str | None = None
    """The extracted final answer (math) or program (code), when extracted."""
    score: float | None = None
    """The ranking score the strategy used (verifier score, mean logprob, judge probability)."""
    passed: bool | None = None
    """The verifier's verdict, when one ran."""
    mean_logprob: float | None = None
    tokens: int | None = None
    """Completion tokens of the call that wrote it, when one call did."""
    log_weight: float | None = None
    """The sample's log importance weight under a constraint (``GenerateResult.log_weight``),
    when one call wrote it: weigh candidates by ``exp(log_weight)`` to estimate what the model
    would answer if only whole valid answers counted (self_consistency ``weighting: importance``)."""
    verdict: dict[str, Any] | None = None
    """The verifier's full verdict, as JSON."""


class StrategyResult(BaseModel):
    """What a strategy returns."""

    model_config = ConfigDict(extra="forbid")

    answer: str | None
    """The chosen answer's text (None when no candidate was produced)."""
    chosen: int | None = None
    """Index of the chosen candidate."""
    candidates: list[Candidate] = Field(default_factory=list)
    stopped: Stopped = "done"
    """Why it stopped: done, early_stop (a candidate passed), or budget (a limit ran out)."""
    usage: dict[str, Usage] = Field(default_factory=dict)
    """Calls, tokens and cost per model, of this run only."""
    info: dict[str, Any] = Field(default_factory=dict)
    """Strategy-specific numbers (votes, rounds, deferral rate, ...)."""
    strategy: str = ""
    """The strategy's registry name (filled in by :class:`Strategy` when it returns)."""

    @property
    def passed(self) -> bool | None:
        return None if self.chosen is None else self.candidates[self.chosen].passed


@dataclass
class Context:
    """What a strategy runs with: named models, a verifier, the shared budget, the store.

    Args:
        models: role name to model; ``"default"`` is used when a strategy names no role.
        verifier: checks candidates (``forkpath.verifiers``); strategies that need one say so.
        budget: shared by every strategy run in this context.
        store: the trajectory/result store, for strategies that share partial work.
    """

    models: Mapping[str, Model]
    verifier: Any = None
    budget: Budget = field(default_factory=Budget)
    store: Any = None

    def model(self, role: str = "default") -> Model:
        try:
            return self.models[role]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(f"no model named {role!r} in this context (models: {known})") from None


RunFn = Callable[[Task, Context], Awaitable[StrategyResult]]


class Strategy:
    """A configured strategy: call it with a task and a context.

    Its name is the one its factory was registered under (recorded by the registry in
    :attr:`registered`), so a factory never writes its own name.
    """

    def __init__(
        self,
        run: RunFn,
        *,
        needs: dict[str, ModelCapabilities] | None = None,
        needs_verifier: bool = False,
    ) -> None:
        self._run = run
        self.needs = needs or {}
        """Capabilities required of each model role (checked before any call)."""
        self.needs_verifier = needs_verifier
        self.registered: Registered | None = None

    @property
    def name(self) -> str:
        """The registry name (or the run function's name for a strategy made by hand)."""
        return (
            self.registered.name
            if self.registered is not None
            else getattr(self._run, "__name__", "strategy")
        )

    def __repr__(self) -> str:
        params = self.registered.params if self.registered else {}
        return f"Strategy({self.name!r}, {params})"

    def check(self, context: Context) -> None:
        """Raise :class:`ConfigError` / :class:`CapabilityError` if ``context`` cannot serve this strategy."""
        for role, needs in self.needs.items():
            context.model(role).require(needs, by=self.name)
        if self.needs_verifier and context.verifier is None:
            raise ConfigError(f"{self.name} needs a verifier, and none was given")

    async def __call__(self, task: Task, context: Context) -> StrategyResult:
        self.check(context)
        params = self.registered.params if self.registered else {}
        with span(self.name), strategy_scope(), context.budget.open(), usage_meter() as meter:
            emit(StrategyEvent(name=self.name, phase="start", params=params))
            result = await self._run(task, context)
            for i, c in enumerate(result.candidates):
                emit(CandidateEvent(strategy=self.name, index=i, chosen=i == result.chosen, **c.model_dump()))
            emit(StrategyEvent(name=self.name, phase="end", stopped=result.stopped, info=result.info))
        result.usage = dict(meter.by_model)
        result.strategy = self.name
        return result


strategies: Registry[Strategy] = Registry("strategies", noun="strategy")
"""Every strategy factory, by name (entry-point group ``forkpath.strategies`` for plugins)."""
