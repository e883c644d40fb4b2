"""A llama.cpp OpenAI-compatible server for the bench scripts that measure through HTTP.

The scripts run as ``python bench/x.py``, which puts this folder on ``sys.path``: they import it
as ``from _server import llama_server``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepting(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def llama_server(
    model_path: Path, *, timeout: float | None = 60.0, threads: int | None = None
) -> Iterator[str]:
    """Serve the GGUF file ``model_path`` as model ``bench`` on a free local port.

    Yields the API base (``http://127.0.0.1:<port>/v1``) once the port accepts connections, and
    stops the server on exit.

    Args:
        model_path: the GGUF file.
        timeout: seconds to wait for the server to start before a ``RuntimeError`` (None: no limit).
        threads: llama.cpp threads (None: the server's default, half the cores).
    """
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forkpath.models._llama_server",  # llama_cpp.server, AMX-safe
            "--model",
            str(model_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--model_alias",
            "bench",
            *([] if threads is None else ["--n_threads", str(threads), "--n_threads_batch", str(threads)]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not _accepting(port):
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=20)
