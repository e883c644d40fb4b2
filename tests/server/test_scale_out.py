"""Two ``forkpath serve`` processes on two ports sharing one Redis serve as one: a request answered
through one is served from the shared generation cache through the other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.server.conftest import free_port

pytestmark = pytest.mark.redis
SMOLLM2 = "local/smollm2-135m"


@contextmanager
def forkpath_serve(*args: str, log: Path) -> Iterator[str]:
    """``forkpath serve ARGS`` in its own process on a free port; yields the base URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forkpath._cli",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"forkpath serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("forkpath serve did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_two_servers_on_one_redis_share_the_generation_cache(redis_url: str, tmp_path: Path) -> None:
    namespace = f"serve-test-{uuid.uuid4().hex[:8]}"
    common = ("--store", redis_url, "--cache-namespace", namespace)
    request = {
        "model": "best_of_n:" + SMOLLM2,
        "messages": [{"role": "user", "content": "Name a planet."}],
        "max_tokens": 6,
        "temperature": 0.8,
        "seed": 42,
        "extra_body": {"forkpath": {"params": {"n": 2, "rerank": "mean_logprob"}}},
    }
    with (
        forkpath_serve(*common, log=tmp_path / "a.log") as a,
        forkpath_serve(*common, log=tmp_path / "b.log") as b,
    ):
        first = openai.OpenAI(base_url=a + "/v1", api_key="x", max_retries=0).chat.completions.create(
            **request
        )
        second = openai.OpenAI(base_url=b + "/v1", api_key="x", max_retries=0).chat.completions.create(
            **request
        )
    one, two = first.model_extra["forkpath"], second.model_extra["forkpath"]
    assert (one["calls"], one["cached_calls"]) == (2, 0)
    assert (two["calls"], two["cached_calls"]) == (0, 2)  # both samples came from the other server's work
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage.total_tokens == 0 and first.usage.total_tokens > 0


def test_the_cli_refuses_bad_options_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: {default: fake/x}\nnodes: {a: {strategy: best_of_nn}}\n")
    missing = tmp_path / "missing.yaml"
    missing.write_text(
        f"name: m\nmodels: {{default: llamacpp/{tmp_path}/no.gguf}}\nnodes: {{a: {{strategy: best_of_n, params: {{rerank: mean_logprob}}}}}}\n"
    )
    for args, says in [
        (["--port", "99999"], "port"),
        (["--model-options", "{nope"], "--model-options is not JSON"),
        (["--model-options", '{"fake/x": {"colour": 1}}'], "options.colour"),
        (["--cache-namespace", "a b"], "invalid store namespace"),
        ([str(bad)], "best_of_nn"),
        ([str(missing)], "GGUF file not found"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "forkpath._cli", "serve", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
