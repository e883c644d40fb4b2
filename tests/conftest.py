"""Shared fixtures: the real local model, a real llama.cpp OpenAI-compatible server, Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Batch-invariant llama.cpp models need the tiled matmul off, which llama.cpp reads once per
# process; tests load such models after others have computed, so it is off for the whole run.
# Default-mode tests therefore run without the tiled matmul (results are compared like with like);
# tests/routers/test_local_models.py checks in a subprocess what happens when it is on.
os.environ.setdefault("GGML_CPU_TILED_MM", "0")

SMOLLM2 = "local/smollm2-135m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not start in {timeout_s}s")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from forkpath.models import _local

    return _local.resolve("smollm2-135m")


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` (through the AMX-safe launcher) with SmolLM2 on 127.0.0.1;
    yields the ``/v1`` base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forkpath.models._llama_server",  # llama_cpp.server, AMX-safe
                "--model",
                str(smollm2_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--logits_all",
                "true",
                "--n_ctx",
                "2048",
                "--model_alias",
                "smollm2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
