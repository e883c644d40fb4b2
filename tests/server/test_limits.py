"""Concurrency: running up to a limit, a bounded queue, 429 past it; a client that goes away
cancels its run and the model stops decoding; the per-request time limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import serve

ANSWER = "a" * 400
SLOW = {"fake/slow": {"token_latency_s": 0.02, "default": ANSWER}, "fake/sleepy": {"latency_s": 30.0}}
ASK = [{"role": "user", "content": "go"}]


async def wait_for(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Poll until ``condition`` holds (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def server() -> Any:
    context, state = serve(max_running=1, max_queued=1, model_options=SLOW)
    with context as url:
        yield url, state


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_429_with_retry_after_past_the_queue_bound(server: Any) -> None:
    url, state = server
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        running = client.stream(
            "POST", "/v1/chat/completions", json={"model": "fake/slow", "messages": ASK, "stream": True}
        )
        async with running as first:
            assert first.status_code == 200
            await wait_for(lambda: state.admission.running == 1, "the first request runs")
            queued = asyncio.ensure_future(
                client.post("/v1/chat/completions", json={"model": "fake/x", "messages": ASK})
            )
            await wait_for(lambda: state.admission.queued == 1, "the second request waits")
            refused = await client.post("/v1/chat/completions", json={"model": "fake/x", "messages": ASK})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            error = refused.json()["error"]
            assert error["code"] == "server_busy" and "1 requests running and 1 waiting" in error["message"]
            assert not queued.done()
        # The first client left: its slot goes to the queued request, which is answered.
        second = await queued
        assert (
            second.status_code == 200
            and second.json()["choices"][0]["message"]["content"] == "I do not know."
        )
    assert _metric(url, "forkpath_requests_rejected_total") == 1
    with pytest.raises(openai.RateLimitError):  # how the official client sees it
        client_ = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        async with (
            httpx.AsyncClient(base_url=url, timeout=60) as raw,
            raw.stream(
                "POST", "/v1/chat/completions", json={"model": "fake/slow", "messages": ASK, "stream": True}
            ),
        ):
            await wait_for(lambda: state.admission.running == 1, "a request runs")
            queued = asyncio.ensure_future(
                raw.post("/v1/chat/completions", json={"model": "fake/x", "messages": ASK})
            )
            await wait_for(lambda: state.admission.queued == 1, "a request waits")
            try:
                await asyncio.to_thread(client_.chat.completions.create, model="fake/x", messages=ASK)
            finally:
                await queued


async def test_a_disconnect_cancels_the_stream_and_stops_decoding(server: Any) -> None:
    url, state = server
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json={"model": "fake/slow", "messages": ASK, "stream": True}
        ) as response:
            seen = 0
            async for line in response.aiter_lines():
                if '"content":"a"' in line:
                    seen += 1
                if seen == 3:
                    break
        model = state.pool.loaded["fake/slow"]
        assert model.decoding == 1 or model.streamed_tokens < len(ANSWER)
    await wait_for(lambda: model.decoding == 0, "the model stops decoding the stream")
    assert model.streamed_tokens < len(ANSWER)  # it did not decode the rest
    stopped_at = model.streamed_tokens
    await asyncio.sleep(0.2)
    assert model.streamed_tokens == stopped_at
    await wait_for(lambda: state.admission.running == 0, "the slot is given back")
    assert _metric(url, "forkpath_requests_cancelled_total") == 1


async def test_a_disconnect_cancels_a_plain_request(server: Any) -> None:
    url, state = server
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        request = asyncio.ensure_future(
            client.post("/v1/chat/completions", json={"model": "fake/sleepy", "messages": ASK})
        )
        await wait_for(lambda: state.admission.running == 1, "the request runs")
        request.cancel()  # the client closes the connection
        await asyncio.gather(request, return_exceptions=True)
    await wait_for(lambda: state.admission.running == 0, "the run is cancelled and its slot given back")
    assert _metric(url, "forkpath_requests_cancelled_total") == 1


def test_the_request_time_limit(server: Any) -> None:
    url, _ = server
    body = {"model": "fake/sleepy", "messages": ASK, "forkpath": {"timeout_s": 0.2}}
    response = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match="time limit"):
        list(
            client.chat.completions.create(
                model="fake/slow",
                messages=ASK,
                stream=True,  # type: ignore[arg-type]
                extra_body={"forkpath": {"timeout_s": 0.2}},
            )
        )
    too_long = {"model": "fake/x", "messages": ASK, "forkpath": {"timeout_s": 10_000}}
    error = httpx.post(url + "/v1/chat/completions", json=too_long).json()["error"]
    assert error["param"] == "forkpath.timeout_s" and "server's limit" in error["message"]
