"""Running a job: a model, a strategy or a flow, with usage and trace collected for the request.

:func:`prepare` loads the models and checks the strategy against them (so its errors are still a
4xx before a stream starts); :func:`execute` runs it. While it runs, every trace event and every
piece of final answer text can be sent to ``emit`` (a streaming response's queue): model targets
stream their tokens; strategies stream what their final stage writes into the answer stream
(``forkpath._answer``) and their progress; flows stream their progress, then the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forkpath import Budget, gather_all
from forkpath._answer import AnswerStream, answer_stream
from forkpath._trace import ModelCallEvent, TraceEvent, Tracer
from forkpath.models import GenerateRequest, GenerateResult, TokenInfo, Usage, usage_meter
from forkpath.server._targets import Job, ModelPool, ServedFlows
from forkpath.strategies import Context

log = logging.getLogger("forkpath.server")


@dataclass
class TextDelta:
    """New answer text of choice ``index``."""

    index: int
    text: str
    tokens: list[TokenInfo] = field(default_factory=list)


@dataclass
class Progress:
    """A trace event, as it happens."""

    event: TraceEvent


Item = TextDelta | Progress
Emit = Callable[[Item], None]


@dataclass
class Choice:
    index: int
    text: str
    finish_reason: str
    tokens: list[TokenInfo] = field(default_factory=list)


@dataclass
class Outcome:
    """What a job produced: the choices, every model call's usage, forkpath's own account."""

    choices: list[Choice]
    usage: dict[str, Usage]
    extension: dict[str, Any]
    """forkpath's account (``forkpath`` in the response), as Python values: serialized with
    :func:`json_bytes` where it is sent."""
    trace: list[TraceEvent]

    @property
    def total(self) -> Usage:
        return sum(self.usage.values(), Usage())


@dataclass
class Prepared:
    job: Job
    context: Context | None = None
    model: Any = None
    flow_store: Any = None


class _ForwardingTracer(Tracer):
    """Collects the request's events and hands each to ``forward`` as it is recorded."""

    def __init__(self, forward: Callable[[TraceEvent], None] | None) -> None:
        super().__init__()
        self._forward = forward

    def record(self, event: TraceEvent) -> None:
        super().record(event)
        # Token-level calls (one per token in token routing) would drown the progress.
        if self._forward is not None and not (
            isinstance(event, ModelCallEvent) and event.finish_reason == "token_level"
        ):
            self._forward(event)


async def prepare(job: Job, pool: ModelPool, flows: ServedFlows, store: Any) -> Prepared:
    """Load what ``job`` runs on and check it (errors here are still the request's 4xx)."""
    if job.kind == "model":
        assert job.model_id is not None
        return Prepared(job, model=await pool.get(job.model_id))
    if job.kind == "flow":
        assert job.flow is not None
        return Prepared(job, flow_store=flows.stores.get(job.flow.spec.name))
    assert job.strategy is not None
    models = {role: await pool.get(model_id) for role, model_id in job.roles.items()}
    context = Context(models=models, verifier=job.verifier, budget=Budget(job.budget), store=store)
    job.strategy.check(context)
    return Prepared(job, context=context)


async def execute(prepared: Prepared, emit: Emit | None = None) -> Outcome:
    """Run a prepared job; with ``emit``, stream text and progress into it as they come."""
    job = prepared.job
    forward = None
    if emit is not None and job.options.progress != "off" and job.kind != "model":
        forward = lambda event: emit(Progress(event))  # noqa: E731
    with _ForwardingTracer(forward) as tracer, usage_meter() as meter:
        if job.kind == "model":
            choices, extension = await _run_model(prepared, emit)
        elif job.kind == "strategy":
            choices, extension = await _run_strategy(prepared, emit)
        else:
            choices, extension = await _run_flow(prepared, emit)
    usage = dict(meter.by_model)
    total = sum(usage.values(), Usage())
    extension = {
        **extension,
        "usage": {m: u.model_dump() for m, u in usage.items()},
        "calls": total.calls,
        "cached_calls": total.cached_calls,
        "cost": total.cost,
    }
    if job.options.trace:
        extension["trace"] = [e.model_dump() for e in tracer.events]
    return Outcome(choices, usage, extension, tracer.events)


async def _run_model(prepared: Prepared, emit: Emit | None) -> tuple[list[Choice], dict[str, Any]]:
    job, model = prepared.job, prepared.model

    async def one(index: int, request: GenerateRequest) -> GenerateResult:
        if emit is None:
            return await model.generate(request)
        result = None
        async for chunk in model.stream(request):
            if chunk.text or chunk.tokens:
                emit(TextDelta(index, chunk.text, chunk.tokens))
            if chunk.result is not None:
                result = chunk.result
        assert result is not None
        return result

    results = await gather_all(*(one(i, r) for i, r in enumerate(job.requests)))
    choices = [
        Choice(
            i, r.text, "length" if r.finish_reason == "length" else "stop", r.tokens if job.logprobs else []
        )
        for i, r in enumerate(results)
    ]
    return choices, {"target": "model", "model": job.model_id}


async def _run_strategy(prepared: Prepared, emit: Emit | None) -> tuple[list[Choice], dict[str, Any]]:
    job, context = prepared.job, prepared.context
    assert job.strategy is not None and job.task is not None and context is not None
    if emit is None:
        result = await job.strategy(job.task, context)
    else:
        stream = AnswerStream(lambda text: emit(TextDelta(0, text)))
        with answer_stream(stream):
            result = await job.strategy(job.task, context)
        _finish_text(result.answer or "", stream.text, emit)
    candidates = [
        {"model": c.model, "passed": c.passed, "score": c.score, "chosen": i == result.chosen}
        for i, c in enumerate(result.candidates)
    ]
    extension = {
        "target": "strategy",
        "strategy": result.strategy,
        "params": job.strategy.registered.params if job.strategy.registered else {},
        "roles": job.roles,
        "stopped": result.stopped,
        "info": result.info,
        "candidates": candidates,
    }
    finish = "length" if result.stopped == "budget" else "stop"
    return [Choice(0, result.answer or "", finish)], extension


async def _run_flow(prepared: Prepared, emit: Emit | None) -> tuple[list[Choice], dict[str, Any]]:
    job = prepared.job
    assert job.flow is not None and job.task is not None
    result = await job.flow.run(job.task, budget=Budget(job.budget), trace=False, store=prepared.flow_store)
    if emit is not None:
        _finish_text(result.answer or "", "", emit)
    extension = {
        "target": "flow",
        "flow": result.flow,
        "run_id": result.run_id,
        "passed": result.passed,
        "score": result.score,
        "stopped": result.stopped,
        "steps": result.steps,
    }
    finish = "length" if result.stopped == "budget" else "stop"
    return [Choice(0, result.answer or "", finish)], extension


def _finish_text(answer: str, streamed: str, emit: Emit) -> None:
    """Send what the client has not seen of the chosen answer."""
    if answer.startswith(streamed):
        if len(answer) > len(streamed):
            emit(TextDelta(0, answer[len(streamed) :]))
    else:  # cannot happen unless a strategy streams one text and returns another
        log.warning("the streamed text is not a prefix of the final answer; the client has the streamed one")


def _fallback(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def json_bytes(value: Any) -> bytes:
    """``value`` as strict JSON in one pass: numpy numbers and arrays, pydantic models and dict
    keys as strings, NaN and infinities as null, UTF-8 unescaped."""
    from pydantic_core import to_json

    return to_json(value, inf_nan_mode="null", fallback=_fallback)
