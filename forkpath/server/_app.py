"""The ASGI app factory and what guards every route: API key, body size, CORS, errors.

:func:`create_app` builds one Starlette app from route modules (the OpenAI routes in
``_openai.py``; a viewer adds its own module to :data:`ROUTE_MODULES`) and wraps it in:

- an API key check when a key is set: ``Authorization: Bearer KEY`` on every route but
  ``/health``, compared in constant time (``hmac.compare_digest``); a missing or wrong key is a
  401 that never repeats what was sent;
- a request body limit (413 past it), enforced while the body is read, before any route runs;
- CORS only for the origins given (none by default);
- OpenAI-style JSON errors for unknown routes and methods.

The server binds loopback unless told otherwise (:class:`ServerConfig`), and keeps no state of
its own beyond its models: several processes pointed at one Redis store (``store``) share the
generation cache and search trajectories, so they serve as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forkpath.flows import Flow
from forkpath.models import check_model, get_model, prepare_model
from forkpath.server._errors import Redactor
from forkpath.server._limits import Admission
from forkpath.server._metrics import Metrics
from forkpath.server._targets import DEFAULT_ALLOWED, ModelPool, Planner, ServedFlows

log = logging.getLogger("forkpath.server")

ROUTE_MODULES: tuple[str, ...] = ("forkpath.server._openai",)
"""Modules whose ``routes()`` the app mounts (each a list of Starlette routes)."""

OPEN_PATHS = frozenset({"/health"})
"""Routes that answer without the API key (load balancers probe them)."""


class ServerConfig(BaseModel):
    """How ``forkpath serve`` runs; every field has a CLI option of the same name."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    """Interface to bind; loopback by default (set ``0.0.0.0`` to listen on every interface)."""
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: str | None = None
    """Require ``Authorization: Bearer <api_key>`` on every route but ``/health``."""
    allow_models: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED))
    """Glob patterns of the model strings requests may name (the flows' own models always)."""
    store: str | None = None
    """Store URL (``redis://...``, a SQLite path) for the generation cache and search trees of
    strategy and model targets; None: no cache. Flows use their own ``store:`` block."""
    cache_namespace: str = "serve"
    """Namespace of the generation cache in the store (servers that share one serve as one)."""

    @field_validator("cache_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        from forkpath.store import check_namespace

        return check_namespace(value)

    max_running: int = Field(default=16, ge=1)
    """Requests running at once. 16 by default: as many as a local model's engine decodes
    together (its ``n_seq_max``), so concurrent requests to one local model share its decode
    steps; past that, requests wait here rather than in the engine's queue."""
    max_queued: int = Field(default=64, ge=0)
    """Requests waiting for a slot; past that, 429 with ``Retry-After``."""
    timeout_s: float = Field(default=600.0, gt=0)
    """Time limit of one request, from its admission (a request may ask for less)."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest request body accepted (413 past it)."""
    max_tokens: int = Field(default=1024, ge=1)
    """``max_tokens`` of a chat request to a model target that gives none."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins browsers may call from (none: no CORS headers at all)."""
    preload: list[str] = Field(default_factory=list)
    """Models to load at start instead of on their first request."""
    model_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Backend options of models requests may name (each such model is allowed), e.g.
    ``{"openai/qwen": {"api_base": "http://127.0.0.1:8080/v1"}}``; checked at start."""


@dataclass
class Serving:
    """What the routes share: the loaded flows, the model pool, limits, metrics."""

    config: ServerConfig
    flows: ServedFlows
    pool: ModelPool
    planner: Planner
    admission: Admission
    metrics: Metrics
    redact: Redactor
    store: Any = None
    started: float = 0.0


def create_app(
    flows: Sequence[Flow] = (), config: ServerConfig | None = None, *, runs_dir: Path | None = None
) -> Starlette:
    """The ASGI app serving ``flows`` (validated :class:`Flow` objects) and strategy targets,
    and, with ``runs_dir``, the run viewer of ``forkpath view`` over that folder (its pages at
    ``/``, ``/runs/...``, ``/compare``, ``/api/...``; the OpenAI routes under ``/v1``).

    Example:
        >>> app = create_app([Flow.from_yaml("examples/best_of_n.yaml")], ServerConfig(api_key="s3cret"))
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    config = config or ServerConfig()
    by_name: dict[str, Flow] = {}
    for flow in flows:
        name = flow.spec.name
        if name in by_name:
            from forkpath._errors import ConfigError

            raise ConfigError(f"two flows are named {name!r}; a request names a flow by its name")
        by_name[name] = flow
    flow_models = sorted({m.model for f in by_name.values() for m in f.spec.models.values()})
    secrets = [config.api_key or ""] + [
        str(m.options.get("api_key"))
        for f in by_name.values()
        for m in f.spec.models.values()
        if m.options.get("api_key")
    ]
    for model_id, options in config.model_options.items():
        check_model(model_id, options)  # a wrong option fails at start, naming it
    secrets += [str(o["api_key"]) for o in config.model_options.values() if o.get("api_key")]
    pool = ModelPool(config.allow_models, also=flow_models, options=config.model_options)
    served = ServedFlows(by_name)
    serving = Serving(
        config=config,
        flows=served,
        pool=pool,
        planner=Planner(served, pool, max_tokens=config.max_tokens, timeout_s=config.timeout_s),
        admission=Admission(config.max_running, config.max_queued),
        metrics=Metrics(),
        redact=Redactor(secrets),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _start(serving)
        try:
            yield
        finally:
            await _stop(serving)

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    for module in ROUTE_MODULES:
        routes += __import__(module, fromlist=["routes"]).routes()
    if runs_dir is not None:
        from forkpath.server._view import view_routes

        routes += view_routes(runs_dir)
    middleware = []
    if config.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    middleware.append(Middleware(_Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _viewer_or_api_error if runs_dir is not None else _http_error,
            Exception: _internal_error,
        },
    )
    app.state.forkpath = serving
    return app


async def _start(serving: Serving) -> None:
    serving.started = time.time()
    config = serving.config
    if config.store is not None:
        from forkpath.store import open_store

        serving.store = open_store(config.store)
        serving.pool.cache = serving.store.generation_cache(config.cache_namespace)
    stores = {}
    for name, flow in serving.flows.flows.items():
        if flow.spec.store is not None:
            stores[name] = flow.open_store()
    serving.flows.stores = stores
    await asyncio.to_thread(load_flow_models, list(serving.flows.flows.values()))
    for model_id in config.preload:
        serving.pool.check(model_id, what="model")
        await serving.pool.get(model_id)


def load_flow_models(flows: Sequence[Flow]) -> None:
    """Load every model the flows name, once: local engines are then shared by every run, the
    first request does not wait for one, and a missing model fails at start, naming it."""
    specs = [spec for flow in flows for spec in flow.spec.models.values()]
    for spec in specs:  # process-wide settings before any model computes
        prepare_model(spec.model, spec.options)
    for spec in specs:
        get_model(spec.model, **spec.options)


async def _stop(serving: Serving) -> None:
    await serving.pool.aclose()
    for store in [*serving.flows.stores.values(), serving.store]:
        if store is not None:
            with contextlib.suppress(Exception):
                await store.aclose()


async def health(request: Request) -> Response:
    serving: Serving = request.app.state.forkpath
    return JSONResponse(
        {"status": "ok", "running": serving.admission.running, "queued": serving.admission.queued}
    )


async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    serving: Serving = request.app.state.forkpath
    body = serving.metrics.render(serving.admission.running, serving.admission.queued)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _error(
    status: int, message: str, code: str, type_: str = "invalid_request_error", **headers: str
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, f"no route {request.url.path} (see GET /v1/models and the README)", "not_found")
    if exc.status_code == 405:
        return _error(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")
    return _error(exc.status_code, str(exc.detail), "http_error")


async def _viewer_or_api_error(request: Request, exc: Exception) -> Response:
    """OpenAI's JSON errors for the API's paths, the viewer's pages for the others."""
    if request.url.path.startswith("/v1/") or request.url.path in ("/health", "/metrics"):
        return await _http_error(request, exc)
    from forkpath.server._view import view_error_page

    return await view_error_page(request, exc)


def create_view_app(runs_dir: Path, config: ServerConfig | None = None) -> Starlette:
    """The app of ``forkpath view``: the viewer over ``runs_dir`` (no flows loaded; the same app
    factory, security and error pages as ``forkpath serve``)."""
    return create_app((), config, runs_dir=runs_dir)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error", exc_info=exc)
    return _error(
        500, "internal server error (the server log has the details)", "internal_error", "server_error"
    )


class _Guard:
    """API key and body size, before any route sees the request (pure ASGI, so streaming
    responses and disconnects pass through untouched)."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            await _send(
                send,
                401,
                "missing or wrong API key: send the header Authorization: Bearer <key>",
                "invalid_api_key",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._too_large(send)
            return
        body = bytearray()
        more = scope["method"] in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._too_large(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # later calls wait for the disconnect

        await self.app(scope, replay, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self.key is not None
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self.key)

    async def _too_large(self, send: Send) -> None:
        await _send(
            send,
            413,
            f"the request body is larger than the server's limit of {self.max_body_bytes} bytes",
            "request_too_large",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send(
    send: Send, status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    ).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
