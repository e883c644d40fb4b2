"""A minimal ASGI app for ``forkpath view`` and its tests: the viewer's routes and a 404 page.

The server's shared app factory (``forkpath serve``) mounts :func:`view_routes` the same way;
until both live in one factory, this is the viewer's own.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from forkpath.server._view import CSP, view_routes

__all__ = ["create_view_app"]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    what = "no such page" if status == 404 else "this request cannot be answered"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": f"{what}: {request.url.path}"}, status_code=status)
    body = (
        "<!doctype html><meta charset='utf-8'><title>forkpath view</title><link rel='icon' href='data:,'>"
        f"<p>{html.escape(what)}: <code>{html.escape(request.url.path)}</code>. "
        "<a href='/'>All runs</a></p>"
    )
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": CSP})


def create_view_app(runs_dir: Path) -> Starlette:
    """The viewer over ``runs_dir`` as an ASGI app (serve it on loopback)."""
    return Starlette(routes=view_routes(runs_dir), exception_handlers={404: _http_error, 405: _http_error})
