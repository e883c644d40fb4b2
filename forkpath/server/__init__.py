"""forkpath's HTTP server, one ASGI app factory for two sets of routes.

``forkpath serve``: an OpenAI-compatible server for flows and strategies. An app keeps its
OpenAI client and changes ``base_url`` and ``model``: ``model`` names a loaded flow, a strategy
over a model (``best_of_n:local/smollm2-135m``,
``cascade:small=local/smollm2-135m,large=openai/gpt-4o-mini``) or a model; strategy parameters,
verifier and budget come in the request's ``forkpath`` field. ``forkpath view``: the run viewer.

Example:
    >>> from forkpath.flows import Flow
    >>> from forkpath.server import ServerConfig, create_app
    >>> app = create_app([Flow.from_yaml("examples/best_of_n.yaml")], ServerConfig(port=8000))
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from forkpath.server._app import (
    ROUTE_MODULES,
    ServerConfig,
    Serving,
    create_app,
    create_view_app,
    load_flow_models,
)
from forkpath.server._targets import DEFAULT_ALLOWED, parse_target

__all__ = [
    "DEFAULT_ALLOWED",
    "ROUTE_MODULES",
    "ServerConfig",
    "Serving",
    "create_app",
    "create_view_app",
    "load_flow_models",
    "parse_target",
]
