"""A real server for the tests: the app under uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1; yields the base URL (``http://127.0.0.1:PORT``)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def serve(flows: list[Any] | None = None, **config: Any) -> Any:
    """``running(create_app(flows, ServerConfig(**config)))``; also returns the app's state."""
    from forkpath.server import ServerConfig, create_app

    app = create_app(flows or [], ServerConfig(**config))
    return running(app), app.state.forkpath


def write_flow(tmp_path: Path, name: str, text: str) -> Any:
    from forkpath.flows import Flow

    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return Flow.from_yaml(path)


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("FORKPATH_TEST_REDIS", "redis://127.0.0.1:6379/15")
