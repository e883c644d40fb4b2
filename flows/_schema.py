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
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forkpath import BudgetLimits, DatasetSpec
from forkpath.store import StoreConfig

END = "end"
NodeKind = Literal["strategy", "verifier", "model", "prompt", "join", "flow", "agent"]
_KINDS = ("strategy", "verifier", "model", "join", "flow", "agent")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSpec(_Spec):
    """A named model. In YAML a bare string is shorthand for ``{model: <string>}``."""

    model: str
    """Any model string of the model layer: ``local/...``, ``llamacpp/<path>``, a litellm model."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend options, e.g. ``api_base``, ``n_ctx``, ``max_concurrency``."""


class VerifierSpec(_Spec):
    """A verifier by registry name. In YAML a bare string is shorthand for ``{name: <string>}``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the verifier's factory."""


class AgentSpec(_Spec):
    """An agent node: a model that calls tools in a loop until it answers (ReAct)."""

    model: str
    """The flow model that thinks and calls tools (it needs the tool_calls capability)."""
    tools: list[str | dict[str, Any]] = Field(default_factory=list)
    """Tools by name (``python``, ``calculator``), with parameters (``{name: python, timeout_s:
    5}``), or MCP servers (``{mcp: {command: python, args: [server.py]}}``)."""
    system: str | None = None
    """The agent's system message."""
    max_steps: int = Field(default=8, ge=1, le=100)
    """Most model calls (each may call several tools)."""
    max_tokens: int = Field(default=512, ge=1)
    """Most tokens per model call."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


class NodeSpec(_Spec):
    """One step of a flow. Exactly one of ``strategy``, ``verifier``, ``model``, ``join``, ``flow``,
    ``agent`` is set, or ``prompt`` alone (a prompt node rewrites the prompt that later nodes see)."""

    strategy: str | None = None
    """Registry name of a strategy (``best_of_n``, ...)."""
    verifier: str | None = None
    """Registry name of a verifier that checks the current answer."""
    model: str | None = None
    """A plain model call: the flow model name to call with ``prompt``."""
    prompt: str | None = None
    """A Jinja template over the task's fields (``{{ prompt }}``, ``{{ entry_point }}``, ...) and
    the flow state (``{{ answer }}``, ``{{ score }}``, ``{{ passed }}``)."""
    join: Literal["best", "vote", "first_passed"] | None = None
    """Merge parallel branches: the best-scoring candidate, a majority vote, or the first that passed."""
    flow: str | None = None
    """Path of a sub-flow file (relative to this flow's file)."""
    agent: AgentSpec | None = None
    """An agent loop over a model with tools; the node's ``prompt`` (a template) is its task,
    by default the task's prompt."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the strategy/verifier factory (or max_tokens/temperature of a model call)."""
    models: dict[str, str] = Field(default_factory=dict)
    """Strategy model role -> flow model name, when they differ (``{default: small}``)."""
    max_visits: int | None = Field(default=None, ge=1)
    """How often this node may run in one flow run: the bound every loop needs."""
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
    when: str | None = None
    """A Jinja expression over the state: ``passed``, ``score >= 0.5``, ``visits.refine < 2``,
    ``budget.exhausted``, ``answer``. No ``when``: always taken."""

    @property
    def targets(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


class TraceSpec(_Spec):
    """Where the JSONL trace of each run goes."""

    dir: str = "runs"
    """Each run writes ``<dir>/<run_id>/trace.jsonl`` and its checkpoints beside it."""
    checkpoints: bool = True
    """Keep LangGraph checkpoints (SQLite) so an interrupted run can resume."""


class FlowSpec(_Spec):
    """A whole flow file."""

    name: str
    description: str = ""
    models: dict[str, ModelSpec]
    """Named models; ``default`` is what strategies use when a node maps no role."""
    verifier: VerifierSpec | None = None
    """The verifier strategies and verifier nodes use unless a node names its own."""
    start: str | None = None
    """The first node (default: the first one listed)."""
    nodes: dict[str, NodeSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)
    budget: BudgetLimits = Field(default_factory=BudgetLimits)
    """Limits shared by every node of one run."""
    store: StoreConfig | None = None
    """Where model calls are cached (``url``, ``fallback``, ``cache: {namespace, ttl_s, max_entries}``,
    ``cache: null`` for no cache); omit the block for no store."""
    trace: TraceSpec = Field(default_factory=TraceSpec)
    dataset: DatasetSpec | None = None
    """The task set ``forkpath batch`` runs this flow over when no ``--dataset`` is given."""
    max_steps: int = Field(default=50, ge=1)
    """Most node executions in one run (a safety net on top of ``max_visits``)."""

    @field_validator("models", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"model": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("verifier", mode="before")
    @classmethod
    def _verifier_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def first(self) -> str:
        return self.start or next(iter(self.nodes))
