"""``forkpath serve``: the OpenAI-compatible server (typer and the standard library at import)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from forkpath._cli._term import err_console

app = typer.Typer(rich_markup_mode=None)

API_KEY_ENV = "FORKPATH_API_KEY"


@app.command("serve")
def serve(
    flow_paths: list[Path] = typer.Argument(
        None, help="Flow files to serve; a request names one by its name."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar=API_KEY_ENV,
        show_envvar=True,
        help="Require 'Authorization: Bearer KEY' (every route but /health).",
    ),
    allow_model: list[str] = typer.Option(
        None,
        "--allow-model",
        help="Glob of model strings requests may name, e.g. 'openai/*' (repeatable; default: local/* and fake/*).",
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="Store URL for the generation cache of strategy targets, e.g. redis://host:6379/0.",
    ),
    max_running: int = typer.Option(8, "--max-running", help="Requests running at once."),
    max_queued: int = typer.Option(64, "--max-queued", help="Requests waiting for a slot before 429."),
    timeout_s: float = typer.Option(600.0, "--timeout", help="Time limit of one request, in seconds."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", help="Largest request body accepted."),
    cors_origin: list[str] = typer.Option(
        None, "--cors-origin", help="Allow browser calls from this origin (repeatable)."
    ),
    preload: list[str] = typer.Option(None, "--preload", help="Load this model at start (repeatable)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve flows and strategies over an OpenAI-compatible HTTP API."""
    import uvicorn

    from forkpath.flows import Flow
    from forkpath.server import DEFAULT_ALLOWED, ServerConfig, create_app

    flows = [Flow.from_yaml(path) for path in flow_paths or []]
    config = ServerConfig(
        host=host,
        port=port,
        api_key=api_key or None,
        allow_models=list(allow_model or DEFAULT_ALLOWED),
        store=store,
        max_running=max_running,
        max_queued=max_queued,
        timeout_s=timeout_s,
        max_body_bytes=max_body_bytes,
        cors_origins=list(cors_origin or []),
        preload=list(preload or []),
    )
    if not config.api_key and not _loopback(host):
        err_console.print(
            f"[bold yellow]warning:[/] listening on {host} without an API key: anyone who can reach it can "
            f"spend its models (set --api-key or ${API_KEY_ENV})",
            highlight=False,
        )
    app_ = create_app(flows, config)
    names = ", ".join(f.spec.name for f in flows) or "none"
    err_console.print(
        f"flows: {names}; strategy targets: STRATEGY:MODEL over {', '.join(config.allow_models)}",
        highlight=False,
    )
    uvicorn.run(app_, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
