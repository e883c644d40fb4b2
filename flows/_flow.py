"""The flow SDK: build flows in code or load them from YAML; validate, draw and run them.

    flow = Flow("bon", models={"default": "local/smollm2-135m"}, verifier="python_tests")
    flow.node("draft", strategy="best_of_n", n=4)
    flow.edge("draft", "end")
    result = flow.run_sync(task)

``Flow.from_yaml(path)`` and the SDK build the same :class:`FlowSpec`; ``to_yaml`` writes it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forkpath import Budget, BudgetLimits
from forkpath._errors import ConfigError
from forkpath._trace import FlowEdge, FlowEvent, TraceEvent, Tracer, emit
from forkpath._types import Task
from forkpath.flows._lines import LineMap, render_validation_error
from forkpath.flows._schema import END, EdgeSpec, FlowSpec, ModelSpec, NodeSpec, VerifierSpec, spec_from_data
from forkpath.flows._validate import flow_graph, validate
from forkpath.flows._yaml import load_yaml, load_yaml_file
from forkpath.models import Usage, usage_meter
from forkpath.store import StoreConfig


class FlowResult(BaseModel):
    """What one run of a flow produced."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    flow: str
    answer: str | None
    passed: bool | None
    score: float | None
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    """Every candidate any node produced, with the node's name."""
    steps: list[dict[str, Any]] = Field(default_factory=list)
    """One entry per node execution, in order: node, kind, passed, score, ..."""
    usage: dict[str, Usage] = Field(default_factory=dict)
    """Calls, tokens and cost per model over the whole run."""
    stopped: Literal["done", "budget"] = "done"
    """``budget`` when the run's budget ran out (the answer is the best found before it did)."""
    trace: list[TraceEvent] = Field(default_factory=list)
    trace_path: str | None = None


class Flow:
    """A flow: a :class:`FlowSpec` plus where it came from (for ``file:line`` errors)."""

    def __init__(
        self,
        name: str,
        *,
        models: dict[str, str | ModelSpec | dict[str, Any]] | None = None,
        verifier: str | VerifierSpec | None = None,
        budget: BudgetLimits | None = None,
        store: StoreConfig | None = None,
        description: str = "",
    ) -> None:
        self._name = name
        self._description = description
        self._models = {
            k: _sdk(ModelSpec, {"model": v} if isinstance(v, str) else v, f"models.{k}")
            for k, v in (models or {}).items()
        }
        self._verifier = (
            _sdk(VerifierSpec, {"name": verifier}, "verifier") if isinstance(verifier, str) else verifier
        )
        self._budget = budget or BudgetLimits()
        self._store = store
        self._nodes: dict[str, NodeSpec] = {}
        self._edges: list[EdgeSpec] = []
        self._start: str | None = None
        self._spec: FlowSpec | None = None
        self.lines = LineMap("<sdk>")
        self.base_dir = Path.cwd()
        self.path: Path | None = None
        """The flow's file, when it was loaded from one (sub-flow cycles are checked from it)."""

    # -- building --------------------------------------------------------------------------------
    def node(
        self,
        name: str,
        *,
        strategy: str | None = None,
        verifier: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        join: str | None = None,
        flow: str | None = None,
        models: dict[str, str] | None = None,
        max_visits: int | None = None,
        **params: Any,
    ) -> Flow:
        """Add a node; keyword arguments beyond the kind are the factory's parameters."""
        if name in self._nodes:
            raise ConfigError(f"node {name!r} is defined twice", where="<sdk>")
        self._nodes[name] = _sdk(
            NodeSpec,
            {
                "strategy": strategy,
                "verifier": verifier,
                "model": model,
                "prompt": prompt,
                "join": join,
                "flow": flow,
                "models": models or {},
                "max_visits": max_visits,
                "params": params,
            },
            f"nodes.{name}",
        )
        self._spec = None
        return self

    def edge(self, source: str, to: str | list[str], *, when: str | None = None) -> Flow:
        """Add a transition; ``to="end"`` finishes, a list fans out in parallel."""
        self._edges.append(
            _sdk(EdgeSpec, {"from": source, "to": to, "when": when}, f"edges[{len(self._edges)}]")
        )
        self._spec = None
        return self

    def start(self, name: str) -> Flow:
        self._start = name
        self._spec = None
        return self

    @property
    def spec(self) -> FlowSpec:
        if self._spec is None:
            try:
                self._spec = FlowSpec(
                    name=self._name,
                    description=self._description,
                    models=self._models,
                    verifier=self._verifier,
                    start=self._start,
                    nodes=self._nodes,
                    edges=self._edges,
                    budget=self._budget,
                    store=self._store,
                )
            except ValidationError as e:
                raise render_validation_error(e, self.lines, FlowSpec) from None
        return self._spec

    @classmethod
    def from_spec(cls, spec: FlowSpec, lines: LineMap | None = None, base_dir: Path | None = None) -> Flow:
        flow = cls(spec.name)
        flow._spec = spec
        flow.lines = lines or LineMap("<spec>")
        flow.base_dir = base_dir or Path.cwd()
        return flow

    @classmethod
    def from_yaml(cls, path: str | Path, *, check: bool = True) -> Flow:
        """Load and (by default) validate a flow file; errors point at ``file:line``.

        Every malformed file is one :class:`ConfigError` (see ``docs/architecture.md``, "What
        validation guarantees"): unreadable, too large or not UTF-8, hostile YAML, wrong
        fields or types, parameters out of range, broken templates, bad graphs and sub-flows.
        """
        data, lines = load_yaml_file(path)
        flow = cls._from_data(data, lines, Path(path).resolve().parent, check=False)
        flow.path = Path(path).resolve()
        if check:
            flow.validate()
        return flow

    @classmethod
    def from_yaml_text(cls, text: str | bytes, *, source: str = "<flow>", check: bool = True) -> Flow:
        """:meth:`from_yaml` of text (sub-flow paths are relative to the working directory)."""
        data, lines = load_yaml(text, source)
        return cls._from_data(data, lines, Path.cwd(), check)

    @classmethod
    def _from_data(cls, data: Any, lines: LineMap, base_dir: Path, check: bool) -> Flow:
        flow = cls.from_spec(spec_from_data(data, lines), lines, base_dir)
        if check:
            flow.validate()
        return flow

    def to_yaml(self) -> str:
        """The flow as YAML, in the file format (defaults left out)."""
        data = self.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return yaml.safe_dump(data, sort_keys=False)

    # -- checking and drawing --------------------------------------------------------------------
    def validate(self) -> Flow:
        """Raise the first problem as a :class:`ConfigError` at ``file:line``; return self if none."""
        validate(self.spec, self.lines, self.base_dir, chain=(self.path,) if self.path else ())
        return self

    def mermaid(self) -> str:
        """The flow as a Mermaid flowchart."""
        from forkpath.flows._draw import mermaid

        return mermaid(self.spec, flow_graph(self.spec))

    def draw(self, path: str | Path) -> Path:
        """Draw the flow to an ``.svg`` or ``.png`` file."""
        from forkpath.flows._draw import draw

        path = Path(path)
        if path.suffix not in (".svg", ".png"):
            raise ConfigError(f"a drawing goes to an .svg or .png file, not {path.suffix or 'no suffix'}")
        draw(self.spec, flow_graph(self.spec), path)
        return path

    # -- running -----------------------------------------------------------------------------------
    def open_store(self) -> Any:
        """The store the flow's ``store:`` block names (None without one); the caller closes it."""
        return self.spec.store.open() if self.spec.store is not None else None

    async def stream(
        self,
        task: Task,
        *,
        run_id: str | None = None,
        resume: bool = False,
        budget: Budget | None = None,
        trace: bool = True,
        runs_dir: str | Path | None = None,
        store: Any = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Run the flow, yielding ``(node, update)`` as each node finishes, then ``("__result__",
        {"result": FlowResult})``.

        With ``resume`` and a known ``run_id``, continue from the last checkpoint of that run;
        without it, a run id that has a checkpoint starts again from scratch. ``store`` is an open
        store to use (a batch passes one for all its tasks); by default the flow opens its own.
        """
        from forkpath.flows._compile import stream_run
        from forkpath.flows._nodes import FlowRuntime

        spec = self.spec
        run_id = run_id or uuid.uuid4().hex[:12]
        run_dir = Path(runs_dir or spec.trace.dir) / run_id
        trace_path = run_dir / "trace.jsonl" if trace else None
        checkpoint_path = run_dir / "checkpoints.sqlite" if trace and spec.trace.checkpoints else None
        own_store = store is None and spec.store is not None
        if own_store:
            store = self.open_store()
        cache = spec.store.generation_cache(store) if spec.store is not None and store is not None else None
        runtime = FlowRuntime(spec, self.base_dir, store=store, cache=cache)
        if budget is not None:
            runtime.budget = budget
        initial: Any = (
            None
            if resume and checkpoint_path and checkpoint_path.exists()
            else {
                "task": task.model_dump(mode="json"),
                "prompt": task.prompt,
                "answer": None,
                "passed": None,
                "score": None,
                "candidates": [],
                "steps": [],
                "visits": {},
            }
        )
        tracer = Tracer(trace_path)
        state: dict[str, Any] = {}
        try:
            with tracer, runtime.budget.open(), usage_meter() as meter:
                emit(_start_event(spec, run_id, task))
                async for node, update, latest in stream_run(runtime, initial, run_id, checkpoint_path):
                    if node == "__end__":
                        state = dict(latest)
                    else:
                        yield node, update
                emit(
                    FlowEvent(
                        flow=spec.name,
                        phase="end",
                        run_id=run_id,
                        answer=state.get("answer"),
                        passed=state.get("passed"),
                        score=state.get("score"),
                        stopped="budget"
                        if _budget_stopped(runtime.budget, state.get("steps", []))
                        else "done",
                    )
                )
        finally:
            if own_store and store is not None:
                with contextlib.suppress(Exception):
                    await store.aclose()
        result = FlowResult(
            run_id=run_id,
            flow=spec.name,
            answer=state.get("answer"),
            passed=state.get("passed"),
            score=state.get("score"),
            candidates=state.get("candidates", []),
            steps=state.get("steps", []),
            usage=dict(meter.by_model),
            stopped="budget" if _budget_stopped(runtime.budget, state.get("steps", [])) else "done",
            trace=tracer.events,
            trace_path=str(trace_path) if trace_path else None,
        )
        yield "__result__", {"result": result}

    async def run(self, task: Task, **options: Any) -> FlowResult:
        """Run the flow on ``task`` and return its result (see :meth:`stream` for options)."""
        result: FlowResult | None = None
        async for node, update in self.stream(task, **options):
            if node == "__result__":
                result = update["result"]
        assert result is not None
        return result

    def run_sync(self, task: Task, **options: Any) -> FlowResult:
        """:meth:`run` for scripts: runs its own event loop."""
        return asyncio.run(self.run(task, **options))


def _sdk(model: Any, data: Any, label: str) -> Any:
    """``model.model_validate(data)`` for the SDK: a problem is one ``ConfigError`` naming ``label``."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        message = str(render_validation_error(e, LineMap(""), model)).removeprefix(": ")
        message = f"{label}: {message[6:]}" if message.startswith("flow: ") else f"{label}.{message}"
        raise ConfigError(message, where="<sdk>") from None


def _start_event(spec: FlowSpec, run_id: str, task: Task) -> FlowEvent:
    """What a viewer needs to show a run: the task, the models and the graph."""
    what = {k: (n.strategy or n.verifier or n.model or n.join or n.flow or "") for k, n in spec.nodes.items()}
    return FlowEvent(
        flow=spec.name,
        phase="start",
        run_id=run_id,
        task_id=task.id,
        prompt=task.prompt,
        models={role: m.model for role, m in spec.models.items()},
        nodes={k: f"{spec.nodes[k].kind} {w}".strip() for k, w in what.items()},
        edges=[FlowEdge(source=e.source, target=t, when=e.when) for e in spec.edges for t in e.targets],
        first=spec.first,
    )


def _budget_stopped(budget: Budget, steps: list[dict[str, Any]]) -> bool:
    """Whether the budget cut the run short: it ran out, or a strategy stopped because of it."""
    return budget.exhausted() is not None or any(step.get("stopped") == "budget" for step in steps)


__all__ = ["END", "Flow", "FlowResult"]
