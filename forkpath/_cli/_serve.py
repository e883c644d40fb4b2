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
    cache_namespace: str = typer.Option(
        "serve", "--cache-namespace", help="Namespace of the cache in --store."
    ),
    max_running: int = typer.Option(
        16,
        "--max-running",
        help="Requests running at once (16: what one local model's engine decodes together).",
    ),
    max_queued: int = typer.Option(64, "--max-queued", help="Requests waiting for a slot before 429."),
    timeout_s: float = typer.Option(600.0, "--timeout", help="Time limit of one request, in seconds."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", help="Largest request body accepted."),
    cors_origin: list[str] = typer.Option(
        None, "--cors-origin", help="Allow browser calls from this origin (repeatable)."
    ),
    preload: list[str] = typer.Option(None, "--preload", help="Load this model at start (repeatable)."),
    model_options: str | None = typer.Option(
        None,
        "--model-options",
        help='Backend options per model as JSON, e.g. \'{"openai/qwen": {"api_base": "http://127.0.0.1:8080/v1"}}\' '
        "(each model named is allowed).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
    http: str = typer.Option(
        "auto",
        "--http",
        help="HTTP parser: auto (httptools when installed, else h11), httptools or h11.",
    ),
) -> None:
    """Serve flows and strategies over an OpenAI-compatible HTTP API."""
    import uvicorn
    from pydantic import ValidationError

    from forkpath._errors import ConfigError
    from forkpath.flows import Flow
    from forkpath.server import DEFAULT_ALLOWED, ServerConfig, create_app, load_flow_models

    flows = [Flow.from_yaml(path) for path in flow_paths or []]
    options = _json_option(model_options, "--model-options") if model_options else {}
    try:
        config = ServerConfig(
            host=host,
            port=port,
            api_key=api_key or None,
            allow_models=list(allow_model or DEFAULT_ALLOWED),
            store=store,
            cache_namespace=cache_namespace,
            max_running=max_running,
            max_queued=max_queued,
            timeout_s=timeout_s,
            max_body_bytes=max_body_bytes,
            cors_origins=list(cors_origin or []),
            preload=list(preload or []),
            model_options=options,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if not config.api_key and not _loopback(host):
        err_console.print(
            f"[bold yellow]warning:[/] listening on {host} without an API key: anyone who can reach it can "
            f"spend its models (set --api-key or ${API_KEY_ENV})",
            highlight=False,
        )
    app_ = create_app(flows, config)
    load_flow_models(flows)  # a missing model fails here, in one line, before the server starts
    names = ", ".join(f.spec.name for f in flows) or "none"
    err_console.print(
        f"flows: {names}; strategy targets: STRATEGY:MODEL over {', '.join(config.allow_models)}",
        highlight=False,
    )
    if http not in ("auto", "httptools", "h11"):
        raise ConfigError(f"--http must be auto, httptools or h11, not {http!r}")
    if http == "httptools":
        try:
            import httptools  # noqa: F401
        except ImportError:
            raise ConfigError("--http httptools needs httptools: pip install 'forkpath[serve]'") from None
    uvicorn.run(app_, host=host, port=port, log_level=log_level, http=http, timeout_graceful_shutdown=5)


def _json_option(text: str, name: str) -> dict[str, dict[str, object]]:
    import json

    from forkpath._errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name} is not JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(
            f'{name} is a JSON object of model -> options, e.g. {{"openai/x": {{"api_base": "..."}}}}'
        )
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
