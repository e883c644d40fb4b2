"""Model.stream: text as it is produced, then the result, accounted and cached like generate."""

from __future__ import annotations

import asyncio
from typing import Any

from forkpath._trace import ModelCallEvent, Tracer
from forkpath.models import FakeModel, GenerateRequest, Message, usage_meter

ASK = (Message(role="user", content="Say hello"),)


class MemoryCache:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value


async def test_stream_yields_tokens_then_the_result_and_accounts_once() -> None:
    model = FakeModel(script={"hello": ["Hello there"]}, cache=MemoryCache())
    request = GenerateRequest(messages=ASK, max_tokens=32)
    with Tracer() as tracer, usage_meter() as meter:
        chunks = [c async for c in model.stream(request)]
    assert "".join(c.text for c in chunks) == "Hello there"
    assert [c.result is not None for c in chunks] == [False] * 11 + [True]
    result = chunks[-1].result
    assert result is not None and result.text == "Hello there" and result.usage.completion_tokens == 11
    assert meter.total.calls == 1 and [e.type for e in tracer.events] == ["model_call"]
    # The second time the cache answers: one chunk, no tokens spent, same text as generate.
    with usage_meter() as meter:
        again = [c async for c in model.stream(request)]
    assert len(again) == 1 and again[0].text == "Hello there" and again[0].result is not None
    assert again[0].result.cached and meter.total.calls == 0
    assert (await model.generate(request)).text == "Hello there"


async def test_the_first_chunk_arrives_before_the_answer_is_complete() -> None:
    model = FakeModel(script={"hello": ["abcdef"]}, token_latency_s=0.01)
    arrivals: list[str] = []

    async def consume() -> None:
        async for chunk in model.stream(GenerateRequest(messages=ASK, max_tokens=16)):
            arrivals.append("result" if chunk.result is not None else chunk.text)

    await consume()
    assert arrivals == ["a", "b", "c", "d", "e", "f", "result"]


async def test_stopping_the_iteration_stops_the_backend() -> None:
    model = FakeModel(script={"hello": ["a" * 50]}, token_latency_s=0.001)
    seen = 0
    with Tracer() as tracer:
        async for chunk in model.stream(GenerateRequest(messages=ASK, max_tokens=64)):
            seen += len(chunk.text)
            if seen >= 3:
                break
        await asyncio.sleep(0.05)
    assert seen == 3
    # Nothing was accounted: the generation never finished.
    assert not [e for e in tracer.events if isinstance(e, ModelCallEvent)]
