"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

A request is parsed and checked (:class:`~forkpath.server._targets.Planner`), admitted (or
refused with 429), its models loaded and checked, then run. A plain request waits for the answer
while watching the connection: a client that goes away cancels the run. A streamed one answers
with server-sent events: the answer's text as it is final, progress as SSE comments (or chunks
with an empty ``choices`` list when ``forkpath.progress`` is ``chunks``), a last chunk with the
finish reason and forkpath's account, ``usage`` when ``stream_options.include_usage``, then
``[DONE]``. An error after the stream started is an ``{"error": ...}`` event, as OpenAI sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from forkpath import cancel_all
from forkpath._errors import ConfigError, UnknownNameError, VerifierError
from forkpath.models import TokenInfo, Usage
from forkpath.server._errors import Problem, problem_for
from forkpath.server._limits import Busy, Ticket
from forkpath.server._run import Outcome, Progress, TextDelta, execute, json_bytes, prepare
from forkpath.server._targets import Job, parse_target

if TYPE_CHECKING:
    from forkpath.server._app import Serving

log = logging.getLogger("forkpath.server")


class ClientGone(Exception):
    """The client closed the connection before the answer."""


def routes() -> list[Route]:
    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model_entry, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ]


def _serving(request: Request) -> Serving:
    serving: Serving = request.app.state.forkpath
    return serving


# -- models ------------------------------------------------------------------------------------------
def _model_entry(serving: Serving, model_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(serving.started),
        "owned_by": "forkpath",
        "forkpath": {"kind": kind, **extra},
    }


async def list_models(request: Request) -> Response:
    """Every loaded flow and every concrete model requests may name; the strategies by name."""
    from forkpath.models import bundled_models, model_present
    from forkpath.strategies import strategies

    serving = _serving(request)
    data = [
        _model_entry(serving, name, "flow", description=flow.spec.description)
        for name, flow in serving.flows.flows.items()
    ]
    concrete = set(serving.pool.also) | set(serving.pool.loaded)
    concrete |= {f"local/{m.name}" for m in bundled_models() if model_present(m.name)}
    data += [_model_entry(serving, m, "model") for m in sorted(concrete) if serving.pool.allowed(m)]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "forkpath": {
                "strategies": strategies.names(),
                "syntax": "FLOW | STRATEGY:MODEL | STRATEGY:ROLE=MODEL,ROLE=MODEL | MODEL",
                "allowed_models": serving.pool.describe(),
            },
        }
    )


async def get_model_entry(request: Request) -> Response:
    serving = _serving(request)
    model_id = request.path_params["model_id"]
    try:
        kind, name, roles = parse_target(model_id, serving.flows.flows)
        if kind == "flow":
            entry = _model_entry(
                serving, model_id, "flow", description=serving.flows.flows[name].spec.description
            )
        elif kind == "model":
            serving.pool.check(model_id, what="model")
            entry = _model_entry(serving, model_id, "model")
        else:
            from forkpath.strategies import strategies

            try:
                strategies.get(name)
            except UnknownNameError as e:
                raise UnknownNameError(str(e), where="model") from None
            for model in roles.values():
                serving.pool.check(model, what="model")
            entry = _model_entry(serving, model_id, "strategy", strategy=name)
    except Exception as e:
        return error_response(serving, problem_for(e))
    return JSONResponse(entry)


# -- completions ---------------------------------------------------------------------------------------
async def chat_completions(request: Request) -> Response:
    return await _serve(request, "chat")


async def completions(request: Request) -> Response:
    return await _serve(request, "completions")


def error_response(serving: Serving, problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(serving.redact), status_code=problem.status, headers=problem.headers)


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ConfigError("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        detail = (
            f"{e.msg} at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
        )
        raise ConfigError(f"the request body is not valid JSON: {detail}") from None


async def _serve(request: Request, endpoint: str) -> Response:
    serving = _serving(request)
    started = time.perf_counter()
    kind = "unknown"
    job: Job | None = None
    ticket: Ticket | None = None
    handed_over = False
    try:
        data = await _read_json(request)
        job = serving.planner.chat(data) if endpoint == "chat" else serving.planner.completion(data)
        kind = job.kind
        ticket = serving.admission.admit()
        async with _Watch(request):
            await ticket.start()
            async with _time_limit(job.options.timeout_s):
                prepared = await prepare(job, serving.pool, serving.flows, serving.store)
                if job.stream:
                    handed_over = True
                    return _StreamResponse(serving, job, prepared, ticket, started)
                outcome = await execute(prepared)
        serving.metrics.record_usage(outcome.usage)
        serving.metrics.answered(endpoint, kind, "200", time.perf_counter() - started)
        return Response(json_bytes(_render(job, outcome)), media_type="application/json")
    except Busy as e:
        serving.metrics.rejected.inc()
        serving.metrics.count(endpoint, kind, "429")
        problem = Problem(429, str(e), "rate_limit_error", "server_busy", headers={"Retry-After": "1"})
        return error_response(serving, problem)
    except ClientGone:
        serving.metrics.cancelled.inc()
        serving.metrics.count(endpoint, kind, "499")
        return Response(status_code=499)
    except Exception as e:
        problem = _problem(e, job)
        serving.metrics.count(endpoint, kind, str(problem.status))
        return error_response(serving, problem)
    finally:
        if ticket is not None and not handed_over:
            ticket.release()


def _problem(error: Exception, job: Job | None) -> Problem:
    """:func:`problem_for`, knowing the request: a verifier that cannot run on a task that
    carries no tests and no answer was not given what it checks against (the request's fault)."""
    task = job.task if job is not None else None
    given = task is not None and (task.test or task.asserts or task.io_cases or task.answer)
    if isinstance(error, VerifierError) and task is not None and not given:
        return Problem(
            400,
            f"the verifier could not run: {error}; give the task's tests or reference answer in forkpath.task",
            code="verifier_needs_task",
            param="forkpath.task",
        )
    return problem_for(error)


class _Watch:
    """Watches the connection while the handler's own task queues, prepares and runs a request:
    a client that goes away cancels that task, and the block raises :class:`ClientGone`. One
    watcher task per request, whatever the stages."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.gone = False
        self.active = True
        self.owner: asyncio.Task[Any] | None = None
        self.watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Watch:
        self.owner = asyncio.current_task()
        self.watcher = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        await _disconnected(self.request)
        if self.active and self.owner is not None:  # not once the block is left
            self.gone = True
            self.owner.cancel()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self.active = False
        assert self.watcher is not None and self.owner is not None
        if not self.watcher.done():
            await cancel_all([self.watcher])
        if self.gone:
            self.owner.uncancel()
            raise ClientGone from None


@contextlib.asynccontextmanager
async def _time_limit(timeout_s: float | None) -> AsyncIterator[None]:
    """Cancel the block after ``timeout_s`` (the request's time limit, from its admission)."""
    limit = asyncio.timeout(timeout_s)
    try:
        async with limit:
            yield
    except TimeoutError:
        if limit.expired():
            raise TimeoutError(f"the request took longer than its time limit of {timeout_s:g} s") from None
        raise


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# -- rendering -------------------------------------------------------------------------------------------
def _usage(total: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "total_tokens": total.total_tokens,
    }


def _top_k(job: Job) -> int:
    return job.requests[0].top_logprobs if job.requests else 0


def _chat_logprobs(tokens: list[TokenInfo], k: int) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.token.encode()),
                "top_logprobs": [
                    {"token": a.token, "logprob": a.logprob, "bytes": list(a.token.encode())}
                    for a in t.top[:k]
                ],
            }
            for t in tokens
        ],
        "refusal": None,
    }


def _text_logprobs(tokens: list[TokenInfo], k: int, offset: int = 0) -> dict[str, Any]:
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{a.token: a.logprob for a in t.top[:k]} for t in tokens] if k else None,
        "text_offset": offsets,
    }


def _render(job: Job, outcome: Outcome) -> dict[str, Any]:
    created = int(time.time())
    k = _top_k(job)
    if job.endpoint == "chat":
        choices = [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": c.text, "refusal": None},
                "logprobs": _chat_logprobs(c.tokens, k) if job.logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in outcome.choices
        ]
        kind, prefix = "chat.completion", "chatcmpl-"
    else:
        choices = [
            {
                "index": c.index,
                "text": c.text,
                "logprobs": _text_logprobs(c.tokens, k) if job.logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in outcome.choices
        ]
        kind, prefix = "text_completion", "cmpl-"
    return {
        "id": prefix + uuid.uuid4().hex,
        "object": kind,
        "created": created,
        "model": job.requested,
        "system_fingerprint": None,
        "choices": choices,
        "usage": _usage(outcome.total),
        "forkpath": outcome.extension,
    }


class _Chunks:
    """Builds the chunks of one streamed response."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.chat = job.endpoint == "chat"
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.k = _top_k(job)
        self.offsets: dict[int, int] = {}

    def _wrap(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.job.requested,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.job.include_usage:
            chunk["usage"] = None
        chunk.update(extra)
        return chunk

    def role(self, index: int) -> dict[str, Any]:
        return self._wrap(
            [
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )

    def text(self, delta: TextDelta) -> dict[str, Any]:
        lp = None
        if self.job.logprobs and delta.tokens:
            if self.chat:
                lp = _chat_logprobs(delta.tokens, self.k)
            else:
                lp = _text_logprobs(delta.tokens, self.k, self.offsets.get(delta.index, 0))
        self.offsets[delta.index] = self.offsets.get(delta.index, 0) + len(delta.text)
        if self.chat:
            choice = {
                "index": delta.index,
                "delta": {"content": delta.text},
                "logprobs": lp,
                "finish_reason": None,
            }
        else:
            choice = {"index": delta.index, "text": delta.text, "logprobs": lp, "finish_reason": None}
        return self._wrap([choice])

    def finish(self, index: int, reason: str, extension: dict[str, Any] | None) -> dict[str, Any]:
        if self.chat:
            choice = {"index": index, "delta": {}, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": index, "text": "", "logprobs": None, "finish_reason": reason}
        return self._wrap([choice], **({"forkpath": extension} if extension is not None else {}))

    def progress(self, event: dict[str, Any]) -> dict[str, Any]:
        return self._wrap([], forkpath={"progress": event})

    def usage(self, total: Usage) -> dict[str, Any]:
        return self._wrap([], usage=_usage(total))


_DONE = object()


def _data(payload: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(_json(payload))


def _json(payload: Any) -> str:
    """Strict JSON (numpy numbers converted, NaN and infinities as null)."""
    return json_bytes(payload).decode()


class _StreamResponse(Response):
    """The SSE response of a streamed request; gives its admission slot back however it ends
    (even when the client left before the first byte and the body never started)."""

    def __init__(self, serving: Serving, job: Job, prepared: Any, ticket: Ticket, started: float) -> None:
        self.serving, self.job, self.prepared, self.ticket, self.started = (
            serving,
            job,
            prepared,
            ticket,
            started,
        )
        self.status = "499"  # until the stream ends on its own
        self.inner = EventSourceResponse(self._events(), ping=15, send_timeout=60)
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.ticket.release()
            if self.status == "499":
                self.serving.metrics.cancelled.inc()
            self.serving.metrics.answered(
                self.job.endpoint, self.job.kind, self.status, time.perf_counter() - self.started
            )

    async def _events(self) -> AsyncIterator[ServerSentEvent]:
        job, serving = self.job, self.serving
        chunks = _Chunks(job)
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def work() -> Outcome:
            try:
                return await execute(self.prepared, queue.put_nowait)
            finally:
                queue.put_nowait(_DONE)

        task = asyncio.create_task(work())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(job.options.timeout_s or 600)
        first_text = True
        try:
            for index in range(max(1, len(job.requests))):
                if self.chat_like:
                    yield _data(chunks.role(index))
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    self.status = "504"
                    yield _data(
                        Problem(
                            504,
                            f"the request took longer than its time limit of {job.options.timeout_s:g} s",
                            "timeout_error",
                            "timeout",
                        ).body(serving.redact)
                    )
                    return
                if item is _DONE:
                    break
                if isinstance(item, TextDelta):
                    if first_text:
                        first_text = False
                        serving.metrics.first_token.labels(job.kind).observe(
                            time.perf_counter() - self.started
                        )
                    yield _data(chunks.text(item))
                elif isinstance(item, Progress):
                    event = item.event.model_dump()
                    if job.options.progress == "chunks":
                        yield _data(chunks.progress(event))
                    else:
                        yield ServerSentEvent(comment="forkpath " + _json(event))
            try:
                outcome = task.result()
            except Exception as e:
                problem = _problem(e, job)
                self.status = str(problem.status)
                yield _data(problem.body(serving.redact))
                return
            serving.metrics.record_usage(outcome.usage)
            last = len(outcome.choices) - 1
            for i, choice in enumerate(outcome.choices):
                yield _data(
                    chunks.finish(
                        choice.index, choice.finish_reason, outcome.extension if i == last else None
                    )
                )
            if job.include_usage:
                yield _data(chunks.usage(outcome.total))
            yield ServerSentEvent("[DONE]")
            self.status = "200"
        finally:
            if not task.done():
                task.cancel()  # the client left or the time ran out: stop the run and its decoding
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({task}, timeout=10)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved (it was reported above, or the client is gone)

    @property
    def chat_like(self) -> bool:
        return self.job.endpoint == "chat"
