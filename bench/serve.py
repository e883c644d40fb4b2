"""``forkpath serve``: per-request overhead, and throughput against llama.cpp's own server.

1. Overhead (fake model): the same flow and the same strategy target called in-process and
   through ``forkpath serve`` (its own process, one keep-alive HTTP client, one request at a
   time); the p50 difference is what the server costs per request. Calls alternate
   (in-process, HTTP, ...) so drift on a shared machine hits both alike.
2. Throughput on SmolLM2: 1, 4 and 16 concurrent clients sending chat requests (distinct
   prompts, ``max_tokens`` tokens, greedy) to ``forkpath serve`` (model target
   ``local/smollm2-135m``) and to ``llama_cpp.server`` serving the same GGUF file (which decodes
   one request at a time); completion tokens per second of each, and their ratio.

    flock /tmp/forkpath-bench.lock python bench/serve.py [--calls 200] [--requests 32] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from _server import free_port, llama_server

FLOW = """\
name: bench-flow
models:
  default: fake/bench
nodes:
  answer: {strategy: best_of_n, params: {n: 1, rerank: mean_logprob, max_tokens: 32}}
edges:
  - {from: answer, to: end}
"""
SMOLLM2 = "local/smollm2-135m"


@contextmanager
def forkpath_serve(*args: str) -> Iterator[str]:
    port = free_port()
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("forkpath serve did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def overhead(calls: int) -> None:
    from forkpath import Task
    from forkpath.flows import Flow
    from forkpath.models import get_model
    from forkpath.strategies import Context, strategies

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flow.yaml"
        path.write_text(FLOW)
        flow = Flow.from_yaml(path)
        strategy = strategies.create("best_of_n", n=1, rerank="mean_logprob", max_tokens=32, seed=0)
        model = get_model("fake/bench")
        ask = "What is the capital of France?"
        task = Task(id="bench", prompt=ask)
        body = {"messages": [{"role": "user", "content": ask}]}
        with (
            forkpath_serve(str(path), "--http", "h11") as h11_url,
            forkpath_serve(str(path), "--http", "httptools") as url,
        ):
            async with (
                httpx.AsyncClient(base_url=url, timeout=60) as client,
                httpx.AsyncClient(base_url=h11_url, timeout=60) as h11_client,
            ):
                cases = {
                    "flow bench-flow": (
                        lambda: flow.run(task, trace=False),
                        {"model": "bench-flow", **body},
                    ),
                    "strategy best_of_n:fake/bench": (
                        lambda: strategy(task, Context({"default": model})),
                        {
                            "model": "best_of_n:fake/bench",
                            **body,
                            "seed": 0,
                            "forkpath": {"params": {"n": 1, "rerank": "mean_logprob"}},
                            "max_tokens": 32,
                        },
                    ),
                }
                print(
                    f"\n## overhead: {calls} sequential calls each, alternating in-process / "
                    "httptools server / h11 server, fake model"
                )
                print(
                    "| target | in-process p50 ms | HTTP p50 ms | overhead p50 ms | HTTP p99 ms "
                    "| h11 overhead p50 ms |"
                )
                print("|---|---|---|---|---|---|")
                for name, (local, request) in cases.items():
                    inproc: list[float] = []
                    http: list[float] = []
                    h11: list[float] = []
                    for i in range(calls + 10):
                        started = time.perf_counter()
                        await local()
                        took_local = time.perf_counter() - started
                        took = []
                        for c in (client, h11_client):
                            started = time.perf_counter()
                            response = await c.post("/v1/chat/completions", json=request)
                            took.append(time.perf_counter() - started)
                            assert response.status_code == 200, response.text
                        if i >= 10:  # warm-up done
                            inproc.append(took_local)
                            http.append(took[0])
                            h11.append(took[1])
                    a, b, c11 = statistics.median(inproc), statistics.median(http), statistics.median(h11)
                    print(
                        f"| {name} | {a * 1000:.2f} | {b * 1000:.2f} | {(b - a) * 1000:.2f} "
                        f"| {_p(http, 0.99) * 1000:.2f} | {(c11 - a) * 1000:.2f} |"
                    )


async def _throughput(
    url: str, model: str, clients: int, requests: int, max_tokens: int
) -> tuple[float, float]:
    """(completion tokens per second, requests per second) of ``requests`` requests from ``clients``."""
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        todo.put_nowait(i)
    tokens = 0

    async def client() -> None:
        nonlocal tokens
        async with httpx.AsyncClient(base_url=url, timeout=600) as http:
            while not todo.empty():
                i = todo.get_nowait()
                response = await http.post(
                    "/v1/chat/completions",
                    json={
                        "model": model,
                        "messages": [
                            {"role": "user", "content": f"Write a short poem about the number {i}."}
                        ],
                        "max_tokens": max_tokens,
                        "temperature": 0,
                    },
                )
                assert response.status_code == 200, response.text
                tokens += response.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    took = time.perf_counter() - started
    return tokens / took, requests / took


async def throughput(requests: int, max_tokens: int, levels: list[int]) -> None:
    from forkpath.models import model_path

    path = model_path("smollm2-135m")
    print(f"\n## throughput: SmolLM2, {requests} chat requests per level, max_tokens={max_tokens}, greedy")
    print(
        "| clients | forkpath serve tok/s | llama_cpp.server tok/s | ratio | forkpath req/s | llama_cpp req/s |"
    )
    print("|---|---|---|---|---|---|")
    with forkpath_serve("--preload", SMOLLM2, "--max-running", "16") as ours, llama_server(path) as theirs:
        base = theirs.removesuffix("/v1")
        await _throughput(url=ours, model=SMOLLM2, clients=1, requests=2, max_tokens=4)  # warm-up
        await _throughput(url=base, model="bench", clients=1, requests=2, max_tokens=4)
        for clients in levels:
            a_tok, a_req = await _throughput(ours, SMOLLM2, clients, requests, max_tokens)
            b_tok, b_req = await _throughput(base, "bench", clients, requests, max_tokens)
            print(
                f"| {clients} | {a_tok:.1f} | {b_tok:.1f} | {a_tok / b_tok:.2f} | {a_req:.2f} | {b_req:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200, help="sequential calls per overhead case")
    parser.add_argument("--requests", type=int, default=32, help="requests per throughput level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    asyncio.run(overhead(args.calls))
    if not args.skip_throughput:
        levels = [int(x) for x in args.clients.split(",")]
        asyncio.run(throughput(args.requests, args.max_tokens, levels))
    print(f"\nload average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
