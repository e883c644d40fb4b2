"""The official openai package (sync, async, streaming) against a real server: models, a flow by
name, strategies over SmolLM2, usage that adds up to the trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.server.conftest import serve, write_flow

SMOLLM2 = "local/smollm2-135m"
FLOW = """
name: echo-flow
description: a fake model answers from its script
models:
  default: {model: fake/flow, options: {script: {"capital of France": ["Paris."]}}}
nodes:
  answer: {strategy: best_of_n, params: {n: 3, rerank: mean_logprob, max_tokens: 32}}
edges:
  - {from: answer, to: end}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    flow = write_flow(tmp_path_factory.mktemp("flows"), "echo", FLOW)
    context, state = serve([flow])
    with context as url:
        yield url, state


def _client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def test_models_lists_the_flows_and_the_local_models(server: Any) -> None:
    client = _client(server)
    ids = [m.id for m in client.models.list()]
    assert "echo-flow" in ids and SMOLLM2 in ids
    entry = client.models.retrieve("best_of_n:" + SMOLLM2)
    assert entry.id == "best_of_n:" + SMOLLM2
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-flow")


def test_a_flow_by_name(server: Any) -> None:
    reply = _client(server).chat.completions.create(
        model="echo-flow", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert reply.choices[0].message.content == "Paris."
    assert reply.choices[0].finish_reason == "stop"
    extension = reply.model_extra["forkpath"]
    assert extension["flow"] == "echo-flow" and extension["usage"]["fake/flow"]["calls"] == 3
    assert reply.usage.completion_tokens == 3 * len("Paris.")


def test_a_strategy_over_smollm2_sync(server: Any) -> None:
    reply = _client(server).chat.completions.create(
        model="best_of_n:" + SMOLLM2,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0.7,
        seed=3,
        extra_body={"forkpath": {"params": {"n": 2, "rerank": "mean_logprob"}, "trace": True}},
    )
    text = reply.choices[0].message.content
    assert text and isinstance(text, str)
    extension = reply.model_extra["forkpath"]
    assert extension["strategy"] == "best_of_n"
    assert extension["params"] == {
        "n": 2,
        "rerank": "mean_logprob",
        "temperature": 0.7,
        "max_tokens": 8,
        "seed": 3,
    }
    assert extension["usage"][SMOLLM2]["calls"] == 2 and len(extension["candidates"]) == 2
    _usage_adds_up(reply.usage, extension)


def _usage_adds_up(usage: Any, extension: dict[str, Any]) -> None:
    calls = [e for e in extension["trace"] if e["type"] == "model_call"]
    assert calls, "the trace has the model calls"
    assert usage.prompt_tokens == sum(e["prompt_tokens"] for e in calls)
    assert usage.completion_tokens == sum(e["completion_tokens"] for e in calls)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert extension["calls"] == sum(e["calls"] for e in calls if not e["cached"])


async def test_the_async_client_on_chat_and_completions(server: Any) -> None:
    client = openai.AsyncOpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)
    chat = await client.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0
    )
    assert chat.choices[0].message.content and chat.usage.completion_tokens <= 6
    again = await client.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0
    )
    assert again.choices[0].message.content == chat.choices[0].message.content  # greedy
    text = await client.completions.create(
        model=SMOLLM2, prompt="Once upon a time", max_tokens=5, temperature=0
    )
    assert text.choices[0].text and text.object == "text_completion" and text.usage.completion_tokens <= 5
    await client.close()


def _cold_engines() -> None:
    """Empty every local engine's KV cache. A default (not batch-invariant) load's logits depend
    on where in the cache a sequence's cells sit, which earlier calls decide; from the same
    state, a seed gives the same samples."""
    from forkpath.models._llamacpp import _ENGINES

    for engine in list(_ENGINES.values()):
        engine.scheduler.forget()


def test_openai_sampling_fields_on_a_model(server: Any) -> None:
    client = _client(server)
    _cold_engines()
    reply = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=4,
        temperature=0.9,
        n=2,
        seed=11,
        logprobs=True,
        top_logprobs=3,
        stop=["\n\n"],
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        assert all(len(t.top_logprobs) == 3 for t in choice.logprobs.content)
    assert reply.model_extra["forkpath"]["usage"][SMOLLM2]["calls"] == 2
    # The same seed gives the same samples.
    _cold_engines()
    again = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=4,
        temperature=0.9,
        n=2,
        seed=11,
    )
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]


def test_top_k_min_p_and_repetition_penalty_as_vllm_takes_them(server: Any) -> None:
    """``extra_body`` sampler fields (vLLM's and llama.cpp's names) reach a model target: top_k 1
    at a high temperature leaves only the likeliest token, so every sample is the greedy text; a
    strategy target, which samples with its own settings, refuses them by name."""
    client = _client(server)
    ask: dict[str, Any] = {
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": "Name a fruit."}],
        "max_tokens": 8,
    }
    greedy = client.chat.completions.create(**ask, temperature=0).choices[0].message.content
    narrowed = client.chat.completions.create(
        **ask, temperature=1.5, n=3, seed=5, extra_body={"top_k": 1, "repetition_penalty": 1.0}
    )
    assert {c.message.content for c in narrowed.choices} == {greedy}
    free = client.chat.completions.create(**ask, temperature=1.5, n=3, seed=5)
    assert len({c.message.content for c in free.choices}) > 1
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**{**ask, "model": f"best_of_n:{SMOLLM2}"}, extra_body={"min_p": 0.1})
    assert "min_p" in str(refused.value)


def test_streaming_with_the_official_client_delivers_usage_last(server: Any) -> None:
    client = _client(server)
    stream = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    plain = client.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, temperature=0
    )
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].model_extra["forkpath"]["usage"][SMOLLM2]["calls"] == 1


def test_progress_is_invisible_to_the_client_by_default_and_readable_as_chunks(server: Any) -> None:
    client = _client(server)
    request: dict[str, Any] = {
        "model": "echo-flow",
        "messages": [{"role": "user", "content": "the capital of France?"}],
        "stream": True,
    }
    comments = list(client.chat.completions.create(**request))  # progress as SSE comments: skipped
    assert "".join(c.choices[0].delta.content or "" for c in comments if c.choices) == "Paris."
    assert all("progress" not in (c.model_extra.get("forkpath") or {}) for c in comments)
    chunked = list(client.chat.completions.create(**request, extra_body={"forkpath": {"progress": "chunks"}}))
    progress = [c.model_extra["forkpath"]["progress"] for c in chunked if not c.choices]
    kinds = [p["type"] for p in progress]
    assert kinds.count("model_call") == 3 and "node" in kinds and "strategy" in kinds
    assert "".join(c.choices[0].delta.content or "" for c in chunked if c.choices) == "Paris."


def test_usage_equals_the_sum_of_the_calls_in_the_trace_for_a_flow(server: Any) -> None:
    reply = _client(server).chat.completions.create(
        model="echo-flow",
        messages=[{"role": "user", "content": "capital of France"}],
        extra_body={"forkpath": {"trace": True}},
    )
    _usage_adds_up(reply.usage, reply.model_extra["forkpath"])


def test_the_readme_example_runs(server: Any, tmp_path: Path) -> None:
    # A flow served from a file and called with curl-like raw HTTP.
    import httpx

    response = httpx.post(
        server[0] + "/v1/chat/completions",
        json={"model": "echo-flow", "messages": [{"role": "user", "content": "capital of France"}]},
    )
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Paris."
