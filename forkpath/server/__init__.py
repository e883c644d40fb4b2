"""forkpath's HTTP server: the OpenAI-compatible routes (``forkpath serve``) and the run viewer
(``forkpath view``), mounted by one ASGI app factory."""

from forkpath.server._view_app import create_view_app

__all__ = ["create_view_app"]
