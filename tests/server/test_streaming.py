"""Real streaming through the server: the first token reaches the client before the answer is
complete (arrival order, checked against the model's own state or the trace's order), on the
fake model and on SmolLM2 behind a real llama.cpp server (litellm ``stream=True``)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from forkpath.models import GenerateRequest, Message, get_model
from tests.server.conftest import serve

ANSWER = "The quick brown fox jumps over the lazy dog."
ASK = [{"role": "user", "content": "Tell me about the fox."}]


@pytest.fixture(scope="module")
def server(llama_server: str) -> Any:
    context, state = serve(
        model_options={
            "fake/slow": {"token_latency_s": 0.01, "default": ANSWER},
            "openai/smollm2": {"api_base": llama_server},
        }
    )
    with context as url:
        yield url, state


def _client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def test_the_first_token_arrives_while_the_model_is_still_decoding(server: Any) -> None:
    _url, state = server
    stream = _client(server).chat.completions.create(model="fake/slow", messages=ASK, stream=True)  # type: ignore[arg-type]
    pieces, states = [], []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            model = state.pool.loaded["fake/slow"]
            states.append((model.decoding, model.streamed_tokens))
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == ANSWER and len(pieces) == len(ANSWER)
    decoding, produced = states[0]
    assert decoding == 1 and produced < len(ANSWER)  # the rest was not decoded yet


def test_a_model_behind_litellm_streams_token_by_token(server: Any) -> None:
    client = _client(server)
    chunks = list(
        client.chat.completions.create(
            model="openai/smollm2",
            messages=ASK,
            max_tokens=12,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    # (llama.cpp's server does not promise that a stream and a plain call decode the same text.)
    assert len(pieces) > 3 and "".join(pieces).strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(pieces)


def _order(chunks: list[Any]) -> list[tuple[str, Any]]:
    order: list[tuple[str, Any]] = []
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            order.append(("text", chunk.choices[0].delta.content))
        elif not chunk.choices and "progress" in (chunk.model_extra.get("forkpath") or {}):
            order.append(("event", chunk.model_extra["forkpath"]["progress"]))
    return order


def test_cothink_streams_its_solving_stage_from_a_real_model(server: Any) -> None:
    chunks = list(
        _client(server).chat.completions.create(
            model="cothink:openai/smollm2",
            messages=[{"role": "user", "content": "What is 2 + 3?"}],  # type: ignore[list-item]
            stream=True,
            extra_body={
                "forkpath": {
                    "params": {"outline_tokens": 24, "max_tokens": 16, "outline_retries": 0},
                    "progress": "chunks",
                }
            },
        )
    )
    order = _order(chunks)
    calls = [i for i, (kind, e) in enumerate(order) if kind == "event" and e["type"] == "model_call"]
    texts = [i for i, (kind, _) in enumerate(order) if kind == "text"]
    assert len(calls) == 2 and len(texts) > 3
    # outline call, then the solution's tokens, then the solution's call is accounted.
    assert calls[0] < texts[0] and texts[-1] < calls[1]
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["forkpath"]["strategy"] == "cothink"


def test_a_cascade_streams_the_deferred_answer_of_the_large_model(server: Any) -> None:
    chunks = list(
        _client(server).chat.completions.create(
            model="cascade:small=local/smollm2-135m,large=openai/smollm2",
            messages=ASK,  # type: ignore[arg-type]
            stream=True,
            extra_body={
                "forkpath": {
                    "params": {"router": {"name": "chow_mean", "threshold": 0.0}, "max_tokens": 12},
                    "progress": "chunks",
                }
            },
        )
    )
    order = _order(chunks)
    routing = next(i for i, (kind, e) in enumerate(order) if kind == "event" and e["type"] == "routing")
    large_call = next(
        i
        for i, (kind, e) in enumerate(order)
        if kind == "event" and e["type"] == "model_call" and e["model"] == "openai/smollm2"
    )
    texts = [i for i, (kind, _) in enumerate(order) if kind == "text"]
    assert routing < texts[0] and texts[-1] < large_call and len(texts) > 3
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["forkpath"]["info"]["deferred"] is True


async def test_litellm_stream_matches_generate_and_accounts_usage(llama_server: str) -> None:
    model = get_model("openai/smollm2", api_base=llama_server)
    for request in (
        GenerateRequest(messages=(Message(role="user", content="Say hi"),), max_tokens=8, top_logprobs=2),
        GenerateRequest(prompt="Once upon a time", max_tokens=6),
    ):
        chunks = [c async for c in model.stream(request)]
        result = chunks[-1].result
        assert result is not None and len(chunks) > 3
        assert "".join(c.text for c in chunks) == result.text and result.text.strip()
        assert result.usage.calls == 1 and result.usage.completion_tokens == request.max_tokens
        assert result.usage.prompt_tokens > 0
        if request.top_logprobs:
            assert len(result.tokens) == request.max_tokens and all(len(t.top) == 2 for t in result.tokens)


def test_a_local_model_streams_the_solving_stage_before_its_call_ends(server: Any) -> None:
    from forkpath.models import Model
    from forkpath.models._llamacpp import LlamaCppModel

    if LlamaCppModel._stream is Model._stream:
        pytest.skip("local models stream in one piece until the batched engine (issue 21) implements _stream")
    chunks = list(
        _client(server).chat.completions.create(
            model="cothink:local/smollm2-135m",
            messages=[{"role": "user", "content": "What is 2 + 3?"}],  # type: ignore[list-item]
            stream=True,
            extra_body={
                "forkpath": {
                    "params": {"outline_tokens": 24, "max_tokens": 16, "outline_retries": 0},
                    "progress": "chunks",
                }
            },
        )
    )
    order = _order(chunks)
    calls = [i for i, (kind, e) in enumerate(order) if kind == "event" and e["type"] == "model_call"]
    texts = [i for i, (kind, _) in enumerate(order) if kind == "text"]
    assert len(calls) == 2 and len(texts) > 3
    assert calls[0] < texts[0] and texts[-1] < calls[1]
