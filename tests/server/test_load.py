"""Load: 200 requests from 32 concurrent clients, on the fake model and on SmolLM2. Every request
is answered exactly once (its own answer, nothing lost, nothing twice); p50/p99 latency printed."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import pytest

from tests.server.conftest import serve

REQUESTS = 200
CLIENTS = 32


async def _load(
    url: str, model: str, prompt: Any, max_tokens: int
) -> tuple[dict[int, list[dict[str, Any]]], list[float]]:
    answers: dict[int, list[dict[str, Any]]] = {i: [] for i in range(REQUESTS)}
    latencies: list[float] = []
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        todo.put_nowait(i)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=600) as http:
            while not todo.empty():
                i = todo.get_nowait()
                started = time.perf_counter()
                response = await http.post(
                    "/v1/chat/completions",
                    json={
                        "model": model,
                        "messages": [{"role": "user", "content": prompt(i)}],
                        "max_tokens": max_tokens,
                        "temperature": 0,
                    },
                )
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                answers[i].append(response.json())

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return answers, latencies


def _report(capsys: pytest.CaptureFixture[str], what: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    with capsys.disabled():
        print(
            f"\nload {what}: {len(latencies)} requests, {CLIENTS} clients: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )


def _requests_answered(url: str) -> int:
    total = 0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("forkpath_requests_total{") and 'status="200"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def test_load_on_the_fake_model(capsys: pytest.CaptureFixture[str]) -> None:
    script = {f"<req-{i}>": [f"answer {i}"] for i in range(REQUESTS)}
    context, _ = serve(model_options={"fake/load": {"script": script}})
    with context as url:
        answers, latencies = await _load(url, "fake/load", lambda i: f"Question <req-{i}>", 32)
        assert _requests_answered(url) == REQUESTS
    assert all(len(replies) == 1 for replies in answers.values())  # each once: none lost, none twice
    for i, (reply,) in answers.items():
        assert reply["choices"][0]["message"]["content"] == f"answer {i}"  # its own answer
    assert len({reply["id"] for (reply,) in answers.values()}) == REQUESTS
    _report(capsys, "fake/load", latencies)


@pytest.mark.slow
async def test_load_on_smollm2(capsys: pytest.CaptureFixture[str]) -> None:
    context, _ = serve()
    with context as url:
        answers, latencies = await _load(url, "local/smollm2-135m", lambda i: f"Repeat the number {i}.", 1)
        assert _requests_answered(url) == REQUESTS
    assert all(len(replies) == 1 for replies in answers.values())
    assert len({reply["id"] for (reply,) in answers.values()}) == REQUESTS
    for (reply,) in answers.values():
        assert reply["choices"][0]["message"]["content"] and reply["usage"]["completion_tokens"] <= 1
    # Different prompts, different prompt lengths: each answer was computed for its own request.
    assert len({reply["usage"]["prompt_tokens"] for (reply,) in answers.values()}) > 1
    _report(capsys, "local/smollm2-135m", latencies)
