"""What each kind of flow node does, and the state they read and write.

Nodes are plain async functions of the state returning an update; the compiler wires them into
LangGraph. Every key that parallel branches may write has a reducer, so branches never clash.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypedDict

import jinja2
from pydantic import BaseModel, ConfigDict, Field

from forkpath import Budget
from forkpath._errors import ConfigError, FlowError
from forkpath._trace import NodeEvent, emit, span
from forkpath._types import Task
from forkpath.flows._schema import FlowSpec, NodeSpec
from forkpath.models import Constraint, GenerateRequest, Message, Model, constrained, get_model, prepare_model
from forkpath.strategies import Context, strategies, vote_on


def _last(_: Any, new: Any) -> Any:
    return new


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


class FlowState(TypedDict, total=False):
    """The state a flow run carries from node to node."""

    task: dict[str, Any]
    prompt: Annotated[str, _last]
    answer: Annotated[str | None, _last]
    passed: Annotated[bool | None, _last]
    score: Annotated[float | None, _last]
    candidates: Annotated[list[dict[str, Any]], operator.add]
    steps: Annotated[list[dict[str, Any]], operator.add]
    visits: Annotated[dict[str, int], _add_counts]


class ModelCallParams(BaseModel):
    """Parameters of a plain model-call node."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    system: str | None = None
    """An optional system message."""


_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


class _LazyModels(Mapping[str, Model]):
    """Role -> model, created on first use (a flow may name models a run never calls)."""

    def __init__(
        self, runtime: FlowRuntime, roles: dict[str, str], constraint: Constraint | None = None
    ) -> None:
        self._runtime, self._roles, self._constraint = runtime, roles, constraint
        self._constrained: dict[str, Model] = {}
        self._prompts: set[tuple[int, ...]] = set()  # shared: the roles work on one answer

    def __getitem__(self, role: str) -> Model:
        model = self._runtime.model(self._roles[role])
        if self._constraint is None:
            return model
        if role not in self._constrained:  # one wrapper per role: it remembers its prompts
            self._constrained[role] = constrained(model, self._constraint, prompts=self._prompts)
        return self._constrained[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._roles)

    def __len__(self) -> int:
        return len(self._roles)


class FlowRuntime:
    """Everything one flow run shares: its models, verifiers, budget and store."""

    def __init__(self, spec: FlowSpec, base_dir: Path, *, store: Any = None, cache: Any = None) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.budget = Budget(spec.budget)
        self.store = store
        """The flow's open store (None without a ``store:`` block): strategies share search trees
        through it, so workers of one batch or several processes on one Redis grow one tree."""
        self.cache = cache
        self._models: dict[str, Model] = {}
        self._verifiers: dict[tuple[str, str], Any] = {}
        for model in spec.models.values():  # before any model computes
            prepare_model(model.model, model.options)

    def model(self, name: str) -> Model:
        if name not in self._models:
            spec = self.spec.models[name]
            options = dict(spec.options)
            if self.cache is not None:
                options.setdefault("cache", self.cache)
            self._models[name] = get_model(spec.model, **options)
        return self._models[name]

    def verifier(self, name: str | None = None, params: dict[str, Any] | None = None) -> Any:
        import forkpath.strategies  # noqa: F401 - registers the verifiers strategies provide (public_tests)
        from forkpath.verifiers import verifiers

        if name is None:
            if self.spec.verifier is None:
                return None
            name, params = self.spec.verifier.name, self.spec.verifier.params
        key = (name, repr(sorted((params or {}).items())))
        if key not in self._verifiers:
            self._verifiers[key] = verifiers.create(name, **(params or {}))
        return self._verifiers[key]

    def context_vars(self, state: FlowState) -> dict[str, Any]:
        """What templates and edge conditions can name."""
        task = dict(state.get("task", {}))
        visits = {name: 0 for name in self.spec.nodes} | dict(state.get("visits", {}))
        total = self.budget.total
        return {
            **task,
            "task": task,
            "prompt": state.get("prompt", task.get("prompt", "")),
            "answer": state.get("answer"),
            "passed": state.get("passed"),
            "score": state.get("score"),
            "visits": visits,
            "steps": len(state.get("steps", [])),
            "budget": {
                "exhausted": self.budget.exhausted() is not None,
                "calls": total.calls,
                "tokens": total.total_tokens,
                "cost": total.cost,
            },
        }


def task_of(state: FlowState) -> Task:
    task = Task.model_validate(state["task"])
    prompt = state.get("prompt")
    return task if prompt is None or prompt == task.prompt else task.model_copy(update={"prompt": prompt})


def make_node(name: str, node: NodeSpec, runtime: FlowRuntime) -> Any:
    """The async function LangGraph runs for node ``name``."""
    run = {
        "strategy": _run_strategy,
        "verifier": _run_verifier,
        "model": _run_model,
        "prompt": _run_prompt,
        "join": _run_join,
        "flow": _run_subflow,
        "agent": _run_agent,
    }[node.kind]

    async def execute(state: FlowState) -> dict[str, Any]:
        with span(name):
            emit(NodeEvent(node=name, kind=node.kind, phase="start"))
            update: dict[str, Any] = await run(name, node, runtime, state)
            answer = update.get("answer", state.get("answer"))
            emit(
                NodeEvent(
                    node=name,
                    kind=node.kind,
                    phase="end",
                    passed=update.get("passed"),
                    score=update.get("score"),
                    answer=None if answer is None else answer[:200],
                )
            )
        step = {
            "node": name,
            "kind": node.kind,
            "passed": update.get("passed"),
            "score": update.get("score"),
            **update.pop("_step", {}),
        }
        return {**update, "visits": {name: 1}, "steps": [step]}

    return execute


async def _run_strategy(name: str, node: NodeSpec, runtime: FlowRuntime, state: FlowState) -> dict[str, Any]:
    assert node.strategy is not None
    params = dict(node.params)
    visit = state.get("visits", {}).get(name, 0)
    if visit and "seed" in strategies.params_model(node.strategy).model_fields:
        # Each visit of a node in a loop draws fresh samples instead of replaying the last ones.
        params["seed"] = int(params.get("seed", 0)) + visit
    strategy = strategies.create(node.strategy, **params)
    roles = {n: n for n in runtime.spec.models} | node.models
    context = Context(
        models=_LazyModels(runtime, roles, node.constraint),
        verifier=runtime.verifier(),
        budget=runtime.budget,
        store=runtime.store,
    )
    result = await strategy(task_of(state), context)
    chosen = result.candidates[result.chosen] if result.chosen is not None else None
    return {
        "answer": result.answer,
        "passed": chosen.passed if chosen else None,
        "score": chosen.score if chosen else None,
        "candidates": [{**c.model_dump(mode="json"), "node": name} for c in result.candidates],
        "_step": {
            "strategy": node.strategy,
            "stopped": result.stopped,
            "usage": {m: u.model_dump() for m, u in result.usage.items()},
        },
    }


async def _run_verifier(name: str, node: NodeSpec, runtime: FlowRuntime, state: FlowState) -> dict[str, Any]:
    verifier = runtime.verifier(node.verifier, node.params)
    answer = state.get("answer")
    if answer is None:
        return {"passed": False, "score": 0.0, "_step": {"detail": "no answer to verify"}}
    with runtime.budget.open():
        verdict = await verifier.verify(task_of(state), answer)
    return {"passed": verdict.passed, "score": verdict.score}


def render(template: str, runtime: FlowRuntime, state: FlowState) -> str:
    try:
        return _env.from_string(template).render(runtime.context_vars(state))
    except jinja2.UndefinedError as e:
        raise ConfigError(f"template: {e.message}") from None
    except Exception as e:  # what validation cannot see: the values of this run (None + 1, ...)
        raise FlowError(f"template {template[:80]!r} failed: {type(e).__name__}: {e}") from None


async def _run_model(name: str, node: NodeSpec, runtime: FlowRuntime, state: FlowState) -> dict[str, Any]:
    assert node.model is not None and node.prompt is not None
    params = ModelCallParams.model_validate(node.params)
    messages = [Message(role="user", content=render(node.prompt, runtime, state))]
    if params.system:
        messages.insert(0, Message(role="system", content=params.system))
    request = GenerateRequest(
        messages=tuple(messages),
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        constraint=node.constraint,
    )
    with runtime.budget.open():
        result = await runtime.model(node.model).generate(request)
    return {
        "answer": result.text,
        "passed": None,
        "score": None,
        "candidates": [{"text": result.text, "model": result.model, "node": name}],
    }


async def _run_prompt(name: str, node: NodeSpec, runtime: FlowRuntime, state: FlowState) -> dict[str, Any]:
    assert node.prompt is not None
    return {"prompt": render(node.prompt, runtime, state)}


async def _run_join(name: str, node: NodeSpec, runtime: FlowRuntime, state: FlowState) -> dict[str, Any]:
    candidates = state.get("candidates", [])
    if not candidates:
        return {"answer": None, "passed": None, "score": None}
    if node.join == "vote":  # the one voting rule (strategies' tally): abstentions, ties
        counted, winner = vote_on(task_of(state), candidates)
        if winner is None:
            return {"answer": None, "passed": None, "score": 0.0}
        chosen = candidates[winner]
        share = counted.groups[0].weight / len(candidates)
        return {"answer": chosen["text"], "passed": chosen.get("passed"), "score": share}
    if node.join == "first_passed":
        chosen = next((c for c in candidates if c.get("passed")), candidates[0])
    else:
        chosen = max(candidates, key=lambda c: (bool(c.get("passed")), c.get("score") or float("-inf")))
    return {"answer": chosen["text"], "passed": chosen.get("passed"), "score": chosen.get("score")}


async def _run_agent(name: str, node: NodeSpec, runtime: FlowRuntime, state: FlowState) -> dict[str, Any]:
    from forkpath.tools import open_tools, run_agent

    spec = node.agent
    assert spec is not None
    task = task_of(state)
    question = render(node.prompt, runtime, state) if node.prompt is not None else task.prompt
    messages = [Message(role="user", content=question)]
    if spec.system:
        messages.insert(0, Message(role="system", content=spec.system))
    visit = state.get("visits", {}).get(name, 0)
    with runtime.budget.open():
        async with open_tools(spec.tools) as kit:
            outcome = await run_agent(
                runtime.model(spec.model),
                messages,
                kit,
                max_steps=spec.max_steps,
                first_tool_choice=spec.first_tool_choice,
                max_tokens=spec.max_tokens,
                temperature=spec.temperature,
                name=name,
                budget=runtime.budget,
                sample_index=visit,
            )
    verifier = runtime.verifier()
    passed: bool | None = None
    score: float | None = None
    if verifier is not None and outcome.answer is not None:
        verdict = await verifier.verify(task, outcome.answer)
        passed, score = verdict.passed, verdict.score
    return {
        "answer": outcome.answer,
        "passed": passed,
        "score": score,
        "candidates": [
            {
                "text": outcome.answer or "",
                "model": runtime.spec.models[spec.model].model,
                "node": name,
                "passed": passed,
                "score": score,
            }
        ],
        "_step": {
            "stopped": outcome.stopped,
            "agent_steps": len(outcome.steps),
            "tool_calls": outcome.tool_calls,
            "tool_seconds": round(outcome.tool_seconds, 3),
        },
    }


async def _run_subflow(name: str, node: NodeSpec, runtime: FlowRuntime, state: FlowState) -> dict[str, Any]:
    from forkpath.flows._flow import Flow

    assert node.flow is not None
    sub = Flow.from_yaml(runtime.base_dir / node.flow)
    result = await sub.run(task_of(state), budget=runtime.budget, trace=False)
    return {
        "answer": result.answer,
        "passed": result.passed,
        "score": result.score,
        "candidates": [{**c, "node": name} for c in result.candidates],
    }
