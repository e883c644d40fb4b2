"""The flow file format: every field YAML can say, as pydantic models with ``extra="forbid"``.

A flow names its models, declares nodes (a strategy, a verifier, a plain model call, a prompt
template, a join of parallel branches, or a sub-flow) and the edges between them::

    name: best-of-n-then-refine
    models:
      default: local/smollm2-135m
    verifier: python_tests
    nodes:
      draft:  {strategy: best_of_n, params: {n: 4}}
      refine: {strategy: self_refine, max_visits: 2}
    edges:
      - {from: draft, to: end, when: passed}
      - {from: draft, to: refine}
      - {from: refine, to: draft}

Edges leaving a node are tried in order; the first whose ``when`` holds (no ``when``: always)
is taken, skipping targets that have used up their ``max_visits``; none left: the flow ends.
An edge whose ``to`` is a list runs those nodes in parallel; a node with ``join`` merges them.

A node name is an identifier (letters, digits and ``_``, not starting with a digit or ``__``;
at most 64 characters; not ``end``), so it can be a graph node, a Mermaid id and a name in a
condition (``visits.refine``). A model name is letters, digits, ``_``, ``-`` and ``.``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from forkpath import BudgetLimits, DatasetSpec
from forkpath._params import Int, Temperature, Tokens
from forkpath.flows._lines import LineMap, render_validation_error
from forkpath.models import Constraint
from forkpath.store import StoreConfig

END = "end"
NodeKind = Literal["strategy", "verifier", "model", "prompt", "join", "flow", "agent"]
_KINDS = ("strategy", "verifier", "model", "join", "flow", "agent")
_NODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _node_name(name: str) -> str:
    if name == END:
        raise ValueError(f"{END!r} is reserved for the end of the flow; name the node something else")
    if not _NODE_NAME.fullmatch(name) or name.startswith("__"):
        raise ValueError(
            f"node name {name[:70]!r} is not an identifier: use letters, digits and _ "
            "(not starting with a digit or __, at most 64 characters)"
        )
    return name


def _model_name(name: str) -> str:
    if not _MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name[:70]!r}: use letters, digits, _, - and . (at most 64 characters)")
    return name


NodeName = Annotated[str, AfterValidator(_node_name)]
"""A node's name: an identifier, not ``end``."""
ModelName = Annotated[str, AfterValidator(_model_name)]
"""A flow model's name, e.g. ``default``, ``small``, ``qwen-1.5b``."""
Text = Annotated[str, Field(min_length=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSpec(_Spec):
    """A named model. In YAML a bare string is shorthand for ``{model: <string>}``."""

    model: Text
    """Any model string of the model layer: ``local/...``, ``llamacpp/<path>``, a litellm model."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend options, e.g. ``api_base``, ``n_ctx``, ``max_concurrency``."""


class VerifierSpec(_Spec):
    """A verifier by registry name. In YAML a bare string is shorthand for ``{name: <string>}``."""

    name: Text
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the verifier's factory."""


class AgentSpec(_Spec):
    """An agent node: a model that calls tools in a loop until it answers (ReAct)."""

    model: ModelName
    """The flow model that thinks and calls tools (it needs the tool_calls capability)."""
    tools: list[str | dict[str, Any]] = Field(default_factory=list)
    """Tools by name (``python``, ``calculator``), with parameters (``{name: python, timeout_s:
    5}``), or MCP servers (``{mcp: {command: python, args: [server.py]}}``)."""
    system: str | None = None
    """The agent's system message."""
    max_steps: Annotated[Int, Field(ge=1, le=100)] = 8
    """Most model calls (each may call several tools)."""
    first_tool_choice: Text = "auto"
    """The first step's ``tool_choice``: ``auto``, ``required`` (start by calling a tool: small
    models otherwise tend to write a program and imagine its output) or a tool's name."""
    max_tokens: Tokens = 512
    """Most tokens per model call."""
    temperature: Temperature = 0.0

    @field_validator("first_tool_choice")
    @classmethod
    def _known_first_tool_choice(cls, choice: str, info: ValidationInfo) -> str:
        refs = info.data.get("tools") or []
        if choice in ("auto", "none", "required") or any(isinstance(t, dict) and "mcp" in t for t in refs):
            return choice  # an MCP server's tool names are known only once it is connected
        names = [t if isinstance(t, str) else str(t.get("name")) for t in refs]
        if choice not in names:
            raise ValueError(
                f"must be auto, required or the name of one of the agent's tools "
                f"({', '.join(names) or 'none given'}), not {choice!r}"
            )
        return choice


class NodeSpec(_Spec):
    """One step of a flow. Exactly one of ``strategy``, ``verifier``, ``model``, ``join``, ``flow``,
    ``agent`` is set, or ``prompt`` alone (a prompt node rewrites the prompt that later nodes see)."""

    strategy: Text | None = None
    """Registry name of a strategy (``best_of_n``, ...)."""
    verifier: Text | None = None
    """Registry name of a verifier that checks the current answer."""
    model: Text | None = None
    """A plain model call: the flow model name to call with ``prompt``."""
    prompt: str | None = None
    """A Jinja template over the task's fields (``{{ prompt }}``, ``{{ entry_point }}``, ...) and
    the flow state (``{{ answer }}``, ``{{ score }}``, ``{{ passed }}``)."""
    join: Literal["best", "vote", "first_passed"] | None = None
    """Merge parallel branches: the best-scoring candidate, a majority vote, or the first that passed."""
    flow: Text | None = None
    """Path of a sub-flow file (relative to this flow's file)."""
    agent: AgentSpec | None = None
    """An agent loop over a model with tools; the node's ``prompt`` (a template) is its task,
    by default the task's prompt."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the strategy/verifier factory (or max_tokens/temperature of a model call)."""
    models: dict[str, str] = Field(default_factory=dict)
    """Strategy model role -> flow model name, when they differ (``{default: small}``)."""
    max_visits: Annotated[Int, Field(ge=1, le=10_000)] | None = None
    """How often this node may run in one flow run: the bound every loop needs."""
    constraint: Constraint | None = None
    """What every output of this node's models must match: ``{json_schema: ...}``,
    ``{regex: ...}`` or ``{grammar: ...}`` (strategy and model nodes; ``docs/constraints.md``)."""
    description: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> NodeSpec:
        set_kinds = [k for k in _KINDS if getattr(self, k)]
        if len(set_kinds) > 1:
            raise ValueError(f"a node is one kind; this one sets {' and '.join(set_kinds)}")
        if not set_kinds and self.prompt is None:
            raise ValueError("a node needs one of strategy, verifier, model, prompt, join, flow, agent")
        if self.model and self.prompt is None:
            raise ValueError("a model node needs a prompt template")
        kind = self.kind
        if self.prompt is not None and kind not in ("model", "prompt", "agent"):
            hint = " (a strategy's own template goes in params: {prompt: ...})" if kind == "strategy" else ""
            raise ValueError(f"a {kind} node takes no prompt{hint}")
        if self.params and kind not in ("strategy", "verifier", "model"):
            raise ValueError(f"a {kind} node takes no params (strategy, verifier and model nodes do)")
        if self.constraint is not None and kind not in ("strategy", "model"):
            raise ValueError(f"a {kind} node takes no constraint (strategy and model nodes do)")
        if self.models and kind != "strategy":
            raise ValueError(f"a {kind} node takes no models mapping (only strategy nodes map model roles)")
        return self

    @property
    def kind(self) -> NodeKind:
        for k in _KINDS:
            if getattr(self, k):
                return k  # type: ignore[return-value]
        return "prompt"


class EdgeSpec(_Spec):
    """A transition from one node to the next (``end`` finishes the flow)."""

    source: str = Field(alias="from")
    """The node the edge leaves."""
    to: str | list[str]
    """The next node, or a list of nodes to run in parallel."""
    when: Text | None = None
    """A Jinja expression over the state: ``passed``, ``score >= 0.5``, ``visits.refine < 2``,
    ``budget.exhausted``, ``answer``. No ``when``: always taken."""

    @field_validator("to", mode="before")
    @classmethod
    def _node_or_nodes(cls, to: Any) -> Any:
        if isinstance(to, list) and not to:
            raise ValueError("an empty list; name the next node, or list the nodes to run in parallel")
        names = [to] if isinstance(to, str) else to if isinstance(to, list) else [None]
        if not all(isinstance(t, str) and t for t in names):
            raise ValueError("give the next node's name, or a list of node names to run in parallel")
        return to

    @field_validator("to")
    @classmethod
    def _distinct_targets(cls, to: str | list[str]) -> str | list[str]:
        if isinstance(to, list):
            twice = sorted({t for t in to if to.count(t) > 1})
            if twice:
                raise ValueError(f"runs {', '.join(twice)} twice in one fan-out; list each node once")
            if len(to) > 1 and END in to:
                raise ValueError(f"{END!r} cannot run in parallel with other nodes; give it its own edge")
        return to

    @property
    def targets(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


class TraceSpec(_Spec):
    """Where the JSONL trace of each run goes."""

    dir: Text = "runs"
    """Each run writes ``<dir>/<run_id>/trace.jsonl`` and its checkpoints beside it."""
    checkpoints: bool = True
    """Keep LangGraph checkpoints (SQLite) so an interrupted run can resume."""


class FlowSpec(_Spec):
    """A whole flow file."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    models: dict[ModelName, ModelSpec]
    """Named models; ``default`` is what strategies use when a node maps no role."""
    verifier: VerifierSpec | None = None
    """The verifier strategies and verifier nodes use unless a node names its own."""
    start: Text | None = None
    """The first node (default: the first one listed)."""
    nodes: dict[NodeName, NodeSpec]
    """The steps, by name (an identifier); at least one."""
    edges: list[EdgeSpec] = Field(default_factory=list)
    budget: BudgetLimits = Field(default_factory=BudgetLimits)
    """Limits shared by every node of one run."""
    store: StoreConfig | None = None
    """Where model calls are cached (``url``, ``fallback``, ``cache: {namespace, ttl_s, max_entries}``,
    ``cache: null`` for no cache); omit the block for no store."""
    trace: TraceSpec = Field(default_factory=TraceSpec)
    dataset: DatasetSpec | None = None
    """The task set ``forkpath batch`` runs this flow over when no ``--dataset`` is given."""
    max_steps: Annotated[Int, Field(ge=1, le=100_000)] = 50
    """Most node executions in one run (a safety net on top of ``max_visits``)."""

    @field_validator("models", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"model": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("models", "nodes")
    @classmethod
    def _not_empty(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        if not value:
            example = (
                "default: local/smollm2-135m"
                if info.field_name == "models"
                else "draft: {strategy: best_of_n}"
            )
            raise ValueError(f"is empty; a flow needs at least one entry, e.g. {example}")
        return value

    @field_validator("verifier", mode="before")
    @classmethod
    def _verifier_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def first(self) -> str:
        return self.start or next(iter(self.nodes))


def spec_from_data(data: Any, lines: LineMap) -> FlowSpec:
    """The :class:`FlowSpec` of parsed YAML; every problem is a ``ConfigError`` at ``file:line``."""
    if data is None:
        raise lines.error("the flow file is empty; a flow is a mapping with name, models, nodes and edges")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
        raise lines.error(f"a flow file is a mapping with name, models, nodes and edges, not {kind}")
    try:
        return FlowSpec.model_validate(data)
    except ValidationError as e:
        raise render_validation_error(e, lines, FlowSpec) from None
