"""Typed trace events, written as JSONL and read back by the same types.

Every model call, cache hit, verifier verdict, strategy start/end, search expansion and routing
decision is one event with a ``type`` discriminator. Reports and viewers read traces; nothing
re-derives them. Events go to the tracers open in the current context (a context variable, so
concurrent branches of one flow write into the same trace)::

    with Tracer(path="runs/x/trace.jsonl") as tracer:
        await strategy(task, context)
    tracer.events  # also on disk, one JSON object per line

Components emit with :func:`emit`; with no tracer open it costs one context-variable lookup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time: float = Field(default_factory=time.time)
    """Unix time the event happened."""
    span: str | None = None
    """Which strategy or flow node was running (its registry name or node id)."""


class ModelCallEvent(_Event):
    type: Literal["model_call"] = "model_call"
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cached: bool
    cost: float = 0.0
    sample_index: int = 0
    finish_reason: str = "unknown"
    """Why generation ended; ``token_level`` for next-token and teacher-forcing calls."""
    calls: int = 1
    """Request-equivalents this event stands for (token-level work is charged in batches)."""


class VerdictEvent(_Event):
    type: Literal["verdict"] = "verdict"
    verifier: str
    passed: bool
    score: float
    candidate_index: int | None = None
    detail: str = ""


class StrategyEvent(_Event):
    type: Literal["strategy"] = "strategy"
    name: str
    phase: Literal["start", "end"]
    params: dict[str, Any] = Field(default_factory=dict)
    stopped: str | None = None
    """At ``end``: why it stopped (done, early_stop, budget, ...)."""
    info: dict[str, Any] = Field(default_factory=dict)
    """At ``end``: the strategy's own numbers (votes, pauses, acceptance rate, rounds, ...)."""


class ExpansionEvent(_Event):
    type: Literal["expansion"] = "expansion"
    node: str
    parent: str | None
    text: str = ""
    value: float | None = None
    visits: int = 0


class SearchPathEvent(_Event):
    """The end of a search: which tree it grew and the path to the answer it chose."""

    type: Literal["search_path"] = "search_path"
    search: str
    """The tag of the search's nodes (their ``ExpansionEvent.node`` is ``<search>:<key>``)."""
    strategy: str
    namespace: str
    """The store namespace of the tree."""
    path: list[str] = Field(default_factory=list)
    """Node ids from the root to the chosen answer."""
    nodes: int = 0
    """Nodes in the tree."""


class RoutingEvent(_Event):
    type: Literal["routing"] = "routing"
    router: str
    decision: str
    position: int | None = None
    features: dict[str, float] = Field(default_factory=dict)


class BudgetEvent(_Event):
    type: Literal["budget"] = "budget"
    exhausted: str
    """Which limit ran out: calls, tokens, seconds, cost or tool_calls."""


class ToolCallEvent(_Event):
    """One tool call an agent made, and what it gave back."""

    type: Literal["tool_call"] = "tool_call"
    agent: str
    """The agent (its node or model id)."""
    step: int
    tool: str
    arguments: str
    """As the model wrote them (JSON text, cut to 2,000 characters)."""
    output: str
    """The observation the model saw (cut to 2,000 characters)."""
    error: bool = False
    seconds: float = 0.0


class AgentStepEvent(_Event):
    """One step of an agent: what the model wrote and which tools it called."""

    type: Literal["agent_step"] = "agent_step"
    agent: str
    step: int
    text: str = ""
    """What the model wrote besides its calls (cut to 2,000 characters)."""
    tool_calls: list[str] = Field(default_factory=list)
    """Names of the tools called in this step."""
    problems: list[str] = Field(default_factory=list)
    """Calls the model tried to write that could not be read."""
    final: bool = False
    """This step gave the answer."""


class NodeEvent(_Event):
    type: Literal["node"] = "node"
    node: str
    kind: str
    phase: Literal["start", "end"]
    passed: bool | None = None
    score: float | None = None
    answer: str | None = None
    """The node's answer, cut to 200 characters."""


class FlowEdge(BaseModel):
    """One transition of a flow's graph, as :class:`FlowEvent` records it."""

    model_config = ConfigDict(extra="forbid")

    source: str
    target: str
    when: str | None = None


class FlowEvent(_Event):
    """A flow run starts (the task, the flow's graph) or ends (its answer)."""

    type: Literal["flow"] = "flow"
    flow: str
    phase: Literal["start", "end"]
    run_id: str = ""
    task_id: str | None = None
    """At ``start``: the task's id."""
    prompt: str | None = None
    """At ``start``: the task's prompt."""
    models: dict[str, str] = Field(default_factory=dict)
    """At ``start``: model role -> model id."""
    nodes: dict[str, str] = Field(default_factory=dict)
    """At ``start``: node name -> what it runs (``strategy best_of_n``, ``verifier python_tests``)."""
    edges: list[FlowEdge] = Field(default_factory=list)
    """At ``start``: the transitions, ``end`` being the finish."""
    first: str | None = None
    """At ``start``: the node the flow starts at."""
    answer: str | None = None
    """At ``end``: the flow's answer."""
    passed: bool | None = None
    score: float | None = None
    stopped: str | None = None


class CandidateEvent(_Event):
    """One candidate a strategy produced, emitted when the strategy ends (``index`` is its place
    in the strategy's result; ``chosen`` marks the answer it returned)."""

    type: Literal["candidate"] = "candidate"
    strategy: str
    index: int
    text: str
    model: str
    chosen: bool = False
    answer: str | None = None
    score: float | None = None
    passed: bool | None = None
    mean_logprob: float | None = None
    tokens: int | None = None
    """Completion tokens of the call that wrote it, when one call did."""
    log_weight: float | None = None
    """Its importance weight under a constraint, as a log (``GenerateResult.log_weight``)."""
    verdict: dict[str, Any] | None = None
    """The verifier's full verdict (tests and their output, extracted answers, ...)."""


class TracedToken(BaseModel):
    """One token of an answer as :class:`TokensEvent` records it."""

    model_config = ConfigDict(extra="forbid")

    text: str
    logprob: float | None = None
    entropy: float | None = None
    """Entropy in nats of the next-token distribution it was drawn from."""
    top: list[tuple[str, float]] = Field(default_factory=list)
    """Most likely alternatives (token text, logprob), most likely first."""
    model: int = 0
    """Which model wrote it: an index into :attr:`TokensEvent.models`."""


class TokensEvent(_Event):
    """The tokens of a strategy's answer (the strategy is the event's ``span``): logprob, entropy,
    alternatives and which model wrote each (token routing, speculative decoding, cascades)."""

    type: Literal["tokens"] = "tokens"
    candidate_index: int | None = None
    """The candidate these tokens spell (its :class:`CandidateEvent` index)."""
    models: list[str]
    tokens: list[TracedToken] = Field(default_factory=list)


class NoteEvent(_Event):
    """A free-form note (for plugins; forkpath's own components emit typed events)."""

    type: Literal["note"] = "note"
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


TraceEvent = Annotated[
    ModelCallEvent
    | VerdictEvent
    | StrategyEvent
    | ExpansionEvent
    | SearchPathEvent
    | RoutingEvent
    | BudgetEvent
    | ToolCallEvent
    | AgentStepEvent
    | NodeEvent
    | FlowEvent
    | CandidateEvent
    | TokensEvent
    | NoteEvent,
    Field(discriminator="type"),
]
_adapter: TypeAdapter[TraceEvent] = TypeAdapter(TraceEvent)

_active: ContextVar[tuple[Tracer, ...]] = ContextVar("forkpath_tracers", default=())
_span: ContextVar[str | None] = ContextVar("forkpath_span", default=None)


class Tracer:
    """Collects events (and appends them to a JSONL file when ``path`` is given)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.events: list[TraceEvent] = []
        self.path = Path(path) if path else None
        self._file: Any = None
        self._token: Any = None

    def __enter__(self) -> Tracer:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._token = _active.set((*_active.get(), self))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _active.reset(self._token)
        if self._file:
            self._file.close()
            self._file = None

    def record(self, event: TraceEvent) -> None:
        self.events.append(event)
        if self._file:
            self._file.write(event.model_dump_json() + "\n")
            self._file.flush()


def emit(event: TraceEvent) -> None:
    """Send ``event`` to every tracer open in this context, stamped with the current span."""
    tracers = _active.get()
    if not tracers:
        return
    if event.span is None:
        event.span = _span.get()
    for tracer in tracers:
        tracer.record(event)


class span:
    """Mark events emitted inside the block as belonging to ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._token: Any = None

    def __enter__(self) -> str:
        self._token = _span.set(self.name)
        return self.name

    def __exit__(self, *exc: object) -> None:
        _span.reset(self._token)


def parse_event(line: str | bytes) -> TraceEvent:
    """One JSONL line back into its typed event.

    Raises:
        pydantic.ValidationError: not JSON, an unknown ``type``, or fields that do not match.
    """
    return _adapter.validate_json(line)


def event_types() -> tuple[str, ...]:
    """The ``type`` of every event this version knows."""
    members = get_args(get_args(TraceEvent)[0])
    return tuple(member.model_fields["type"].default for member in members)


def read_trace(path: str | Path) -> Iterator[TraceEvent]:
    """Read a JSONL trace back into typed events."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield _adapter.validate_python(json.loads(line))
