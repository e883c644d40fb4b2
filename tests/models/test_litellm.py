"""The litellm backend against real HTTP servers on 127.0.0.1.

- SmolLM2 behind ``python -m llama_cpp.server`` (chat, logprobs, text-completion continuation);
- a scripted OpenAI-compatible server that answers 429/503 a few times before succeeding, or 401.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from forkpath import (
    AuthenticationError,
    BadRequestError,
    CapabilityError,
    ModelUnavailableError,
    RateLimitError,
    ServerError,
)
from forkpath.models import GenerateRequest, Message, ModelCapabilities, RetryPolicy, get_model, usage_meter

HELLO = (Message(role="user", content="Say hello."),)
FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait_s=0.01, max_wait_s=0.05)


async def test_chat_with_top_logprobs_through_the_llama_cpp_server(llama_server: str) -> None:
    model = get_model("openai/smollm2", api_base=llama_server)
    result = await model.generate(GenerateRequest(messages=HELLO, max_tokens=12, top_logprobs=3))
    assert result.text
    assert result.usage.completion_tokens == len(result.tokens) > 0
    for info in result.tokens:
        assert info.logprob is not None and info.logprob <= 0.0
        assert len(info.top) == 3
        assert [a.logprob for a in info.top] == sorted((a.logprob for a in info.top), reverse=True)
        assert info.top[0].logprob >= info.logprob - 1e-6
    assert "".join(t.token for t in result.tokens) == result.text


async def test_text_completion_continues_a_prefix(llama_server: str) -> None:
    model = get_model("openai/smollm2", api_base=llama_server)
    assert model.capabilities.prefix_continuation
    request = GenerateRequest(prompt="def add(a, b):\n    return", max_tokens=8, top_logprobs=2, stop=("\n",))
    result = await model.generate(request)
    assert "\n" not in result.text
    assert len(result.tokens) > 0 and all(len(t.top) == 2 for t in result.tokens)


async def test_server_and_in_process_backends_agree(llama_server: str) -> None:
    """Same weights: same prompt tokens, same first greedy token and (up to the float noise of
    different batch shapes, ~1e-2) the same logprob. Later tokens may part at near-ties."""
    api = get_model("openai/smollm2", api_base=llama_server)
    local = get_model("local/smollm2-135m")
    request = GenerateRequest(prompt="The capital of France is", max_tokens=3, top_logprobs=1)
    a = await api.generate(request)
    b = await local.generate(request)
    assert a.usage.prompt_tokens == b.usage.prompt_tokens
    assert a.tokens[0].token == b.tokens[0].token == " Paris"
    assert a.tokens[0].logprob == pytest.approx(b.tokens[0].logprob, abs=2e-2)


async def test_server_that_is_down_is_one_clear_error() -> None:
    model = get_model("openai/smollm2", api_base="http://127.0.0.1:9/v1", retry=FAST_RETRY)
    with pytest.raises(ModelUnavailableError) as info:
        await model.generate(GenerateRequest(messages=HELLO, max_tokens=4))
    message = str(info.value)
    assert message.startswith("openai/smollm2: cannot reach the server")
    assert "\n" not in message


async def test_missing_capability_fails_before_any_call() -> None:
    model = get_model("anthropic/claude-3-5-haiku-latest", api_key="unused")
    with pytest.raises(
        CapabilityError, match="anthropic/claude-3-5-haiku-latest cannot return 5 top logprobs"
    ):
        await model.generate(GenerateRequest(messages=HELLO, top_logprobs=5))
    with pytest.raises(CapabilityError, match=r"sed needs top-5 logprobs.*anthropic/claude"):
        model.require(ModelCapabilities(top_logprobs=5, prefix_continuation=True), by="sed")


# -- a scripted OpenAI-compatible server ----------------------------------------------------------
class _Script:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests = 0
        self.bodies: list[dict] = []


def _completion_body(text: bool = False) -> bytes:
    choice: dict = {"index": 0, "finish_reason": "stop"}
    choice.update({"text": "ok"} if text else {"message": {"role": "assistant", "content": "ok"}})
    return json.dumps(
        {
            "id": "x",
            "object": "text_completion" if text else "chat.completion",
            "created": 0,
            "model": "scripted",
            "choices": [choice],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A fake OpenAI-compatible server on a free local port: yields its API base."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


@pytest.fixture
def scripted_server() -> Iterator[tuple[str, _Script]]:
    script = _Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            script.bodies.append(json.loads(self.rfile.read(int(self.headers.get("content-length", 0)))))
            status = script.statuses[script.requests] if script.requests < len(script.statuses) else 200
            script.requests += 1
            body = (
                _completion_body(text=self.path.endswith("/completions") and "chat" not in self.path)
                if status == 200
                else json.dumps({"error": {"message": f"status {status}"}}).encode()
            )
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as base:
        yield base, script


@pytest.mark.parametrize("status", [429, 503])
async def test_transient_failures_are_retried_then_succeed(
    scripted_server: tuple[str, _Script], status: int
) -> None:
    url, script = scripted_server
    script.statuses = [status, status, status]
    model = get_model("openai/scripted", api_base=url, retry=FAST_RETRY)
    with usage_meter() as meter:
        result = await model.generate(GenerateRequest(messages=HELLO, max_tokens=4))
    assert result.text == "ok"
    assert script.requests == 4  # three failures, then the success
    assert meter.by_model["openai/scripted"].calls == 1


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitError), (503, ServerError)])
async def test_retries_stop_at_the_cap(
    scripted_server: tuple[str, _Script], status: int, error: type
) -> None:
    url, script = scripted_server
    script.statuses = [status] * 10
    model = get_model("openai/scripted", api_base=url, retry=RetryPolicy(max_attempts=3, initial_wait_s=0.01))
    with pytest.raises(error):
        await model.generate(GenerateRequest(messages=HELLO, max_tokens=4))
    assert script.requests == 3


async def test_authentication_failure_is_not_retried(scripted_server: tuple[str, _Script]) -> None:
    url, script = scripted_server
    script.statuses = [401] * 5
    model = get_model("openai/scripted", api_base=url, retry=FAST_RETRY)
    with pytest.raises(AuthenticationError) as info:
        await model.generate(GenerateRequest(messages=HELLO, max_tokens=4))
    assert script.requests == 1
    assert str(info.value).startswith("openai/scripted: ")
    assert "\n" not in str(info.value)


# -- sampling parameters ---------------------------------------------------------------------------
NEUTRAL_LLAMA_CPP = {
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


@pytest.mark.parametrize("continuation", [False, True])
async def test_a_self_hosted_server_gets_every_sampling_setting_explicitly(
    scripted_server: tuple[str, _Script], continuation: bool
) -> None:
    """Defaults included, so the server's own (llama.cpp: top-k 40, min-p 0.05, ...) never apply."""
    url, script = scripted_server
    model = get_model("openai/scripted", api_base=url)
    request = (
        GenerateRequest(prompt="2 + 2 =", max_tokens=4, temperature=0.7)
        if continuation
        else GenerateRequest(messages=HELLO, max_tokens=4, temperature=0.7)
    )
    assert (await model.generate(request)).text == "ok"
    body = script.bodies[-1]
    assert {k: body.get(k) for k in NEUTRAL_LLAMA_CPP} == NEUTRAL_LLAMA_CPP
    assert body["temperature"] == 0.7
    chosen = request.model_copy(
        update={"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repetition_penalty": 1.1, "presence_penalty": 0.5}
    )
    await model.generate(chosen)
    body = script.bodies[-1]
    assert (body["top_k"], body["top_p"], body["min_p"]) == (40, 0.95, 0.05)
    assert body["repeat_penalty"] == body["repetition_penalty"] == 1.1
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == 0.0


async def test_vllm_gets_its_own_names(scripted_server: tuple[str, _Script]) -> None:
    url, script = scripted_server
    model = get_model("hosted_vllm/scripted", api_base=url)
    await model.generate(GenerateRequest(messages=HELLO, max_tokens=4, repetition_penalty=1.2))
    body = script.bodies[-1]
    assert body["top_k"] == -1  # vLLM's "off"
    assert body["repetition_penalty"] == 1.2 and "repeat_penalty" not in body
    assert body["min_p"] == 0.0


@pytest.mark.parametrize(
    ("model_id", "setting", "named"),
    [
        ("openai/gpt-4o-mini", {"top_k": 40}, "top_k"),
        ("openai/gpt-4o-mini", {"min_p": 0.05}, "min_p"),
        ("openai/gpt-4o-mini", {"repetition_penalty": 1.1}, "repetition_penalty"),
        ("anthropic/claude-3-5-haiku-latest", {"min_p": 0.1}, "min_p"),
        ("anthropic/claude-3-5-haiku-latest", {"presence_penalty": 0.5}, "presence_penalty"),
        ("mistral/mistral-large-latest", {"frequency_penalty": 0.5}, "frequency_penalty"),
    ],
)
async def test_a_provider_that_cannot_take_a_setting_refuses_it_by_name(
    model_id: str, setting: dict, named: str
) -> None:
    model = get_model(model_id, api_key="unused", retry=FAST_RETRY)
    provider = model_id.split("/")[0]
    with pytest.raises(BadRequestError) as info:
        await model.generate(GenerateRequest(messages=HELLO, max_tokens=4, **setting))
    message = str(info.value)
    assert f"provider {provider!r} does not take {named}" in message and "\n" not in message
    assert message.startswith(f"{model_id}: ")


def test_hosted_providers_get_only_what_they_take() -> None:
    from forkpath.models._litellm import sampling_params

    request = GenerateRequest(messages=HELLO, top_k=20)
    assert sampling_params(request, "anthropic/claude-3-5-haiku-latest", "anthropic", None) == {
        "top_p": 1.0,
        "top_k": 20,
    }
    both = request.model_copy(update={"presence_penalty": 0.3})
    assert sampling_params(both, "gemini/gemini-1.5-pro", "gemini", None) == {
        "top_p": 1.0,
        "top_k": 20,
        "presence_penalty": 0.3,
    }


def test_openai_gets_its_penalties_and_no_defaults() -> None:
    from forkpath.models._litellm import sampling_params

    plain = GenerateRequest(messages=HELLO)
    assert sampling_params(plain, "openai/gpt-4o-mini", "openai", None) == {"top_p": 1.0}
    penalised = plain.model_copy(update={"presence_penalty": 0.3, "frequency_penalty": 0.2})
    assert sampling_params(penalised, "openai/gpt-4o-mini", "openai", None) == {
        "top_p": 1.0,
        "presence_penalty": 0.3,
        "frequency_penalty": 0.2,
    }


async def test_top_k_and_min_p_reach_the_llama_cpp_server(llama_server: str) -> None:
    """top_k 1 (or min_p 1) at a high temperature leaves only the most likely token: every
    sample is the greedy answer. Without them, samples at that temperature differ."""
    model = get_model("openai/smollm2", api_base=llama_server)
    base = GenerateRequest(messages=HELLO, max_tokens=12)
    greedy = (await model.generate(base)).text
    hot = base.model_copy(update={"temperature": 1.5})
    for setting in ({"top_k": 1}, {"min_p": 1.0}):
        texts = {(await model.generate(hot.model_copy(update={**setting, "seed": s}))).text for s in range(3)}
        assert texts == {greedy}, setting
    free = {(await model.generate(hot.model_copy(update={"seed": s}))).text for s in range(3)}
    assert len(free) > 1


async def test_a_models_sampling_defaults_reach_the_server_unless_a_request_sets_its_own(
    llama_server: str,
) -> None:
    """The ``sampling`` option: top_k 1 on the model makes hot samples the greedy answer; a
    request that sets top_k itself keeps its own (the samples differ again)."""
    model = get_model("openai/smollm2", api_base=llama_server, sampling={"top_k": 1})
    base = GenerateRequest(messages=HELLO, max_tokens=12)
    greedy = (await model.generate(base)).text
    hot = base.model_copy(update={"temperature": 1.5})
    narrowed = {(await model.generate(hot.model_copy(update={"seed": s}))).text for s in range(3)}
    assert narrowed == {greedy}
    own = {(await model.generate(hot.model_copy(update={"seed": s, "top_k": 0}))).text for s in range(3)}
    assert len(own) > 1


async def test_repetition_penalty_reaches_the_llama_cpp_server(llama_server: str) -> None:
    """Greedy decoding is deterministic, so only the penalty can change the text (it does: the
    unpenalised continuation repeats a line; a neutral 1.0 changes nothing)."""
    model = get_model("openai/smollm2", api_base=llama_server)
    request = GenerateRequest(prompt="dog dog dog dog dog dog dog dog", max_tokens=16)
    plain = await model.generate(request)
    neutral = await model.generate(request.model_copy(update={"repetition_penalty": 1.0, "seed": 1}))
    penalised = await model.generate(request.model_copy(update={"repetition_penalty": 3.0}))
    assert neutral.text == plain.text != penalised.text


# -- generate_n: OpenAI's n, or concurrent requests ------------------------------------------------
class _Sampler:
    """What a fake OpenAI-compatible server saw: request bodies, most requests in flight at once."""

    def __init__(self, honours_n: bool, latency_s: float) -> None:
        self.honours_n, self.latency_s = honours_n, latency_s
        self.bodies: list[dict] = []
        self.in_flight = self.most_in_flight = self.serial = 0
        self.lock = threading.Lock()


def _choice_texts(sampler: _Sampler, n: int) -> list[str]:
    with sampler.lock:
        first, sampler.serial = sampler.serial, sampler.serial + n
    return [f"sample {first + i}" + "!" * i for i in range(n)]  # of different lengths


@pytest.fixture(params=[True, False], ids=["honours-n", "ignores-n"])
def sampling_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, _Sampler]]:
    """A fake OpenAI-compatible server: each choice's text is new (``sample K!!...``), its
    completion tokens are its characters (one per character, with logprobs when asked), the
    prompt is 10 tokens. ``ignores-n`` answers one choice whatever ``n`` says (llama-cpp-python's
    server does so)."""
    sampler = _Sampler(honours_n=request.param, latency_s=0.0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            with sampler.lock:
                sampler.bodies.append(body)
                sampler.in_flight += 1
                sampler.most_in_flight = max(sampler.most_in_flight, sampler.in_flight)
            time.sleep(sampler.latency_s)
            chat = "chat" in self.path
            texts = _choice_texts(sampler, int(body.get("n") or 1) if sampler.honours_n else 1)
            choices = []
            for i, text in enumerate(texts):
                choice: dict = {"index": i, "finish_reason": "stop"}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                    if body.get("logprobs"):
                        choice["logprobs"] = {
                            "content": [{"token": c, "logprob": -0.5, "top_logprobs": []} for c in text]
                        }
                else:
                    choice["text"] = text
                    if body.get("logprobs"):
                        choice["logprobs"] = {
                            "tokens": list(text),
                            "token_logprobs": [-0.5] * len(text),
                            "top_logprobs": [{c: -0.5} for c in text],
                            "text_offset": list(range(len(text))),
                        }
                choices.append(choice)
            completion = sum(len(t) for t in texts)
            reply = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion" if chat else "text_completion",
                    "created": 0,
                    "model": "sampler",
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": 10,
                        "completion_tokens": completion,
                        "total_tokens": 10 + completion,
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            with sampler.lock:
                sampler.in_flight -= 1

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as base:
        yield base, sampler


class _DictCache:
    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}

    async def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    async def put(self, key: str, value: dict) -> None:
        self.entries[key] = value


@pytest.mark.parametrize("continuation", [False, True], ids=["chat", "completion"])
async def test_generate_n_asks_for_n_choices_and_usage_adds_up_per_choice(
    sampling_server: tuple[str, _Sampler], continuation: bool
) -> None:
    url, sampler = sampling_server
    cache = _DictCache()
    model = get_model("openai/sampler", api_base=url)
    model.cache = cache
    request = (
        GenerateRequest(prompt="Once", max_tokens=8, temperature=1.0, top_logprobs=1)
        if continuation
        else GenerateRequest(messages=HELLO, max_tokens=8, temperature=1.0)
    )
    with usage_meter() as meter:
        results = await model.generate_n(request, 5)
    texts = [r.text for r in results]
    assert len(set(texts)) == 5
    if sampler.honours_n:
        assert [b.get("n") for b in sampler.bodies] == [5]  # one request for the five
        # The reply's usage, shared out: 10 prompt tokens, each choice's own completion tokens.
        assert [r.usage.prompt_tokens for r in results] == [2, 2, 2, 2, 2]
        assert [r.usage.completion_tokens for r in results] == [len(t) for t in texts]
    else:  # one choice came back: the other four went out as requests of their own, without n
        assert [b.get("n") for b in sampler.bodies] == [5, None, None, None, None]
        assert [r.usage.prompt_tokens for r in results] == [10] * 5
    used = meter.by_model["openai/sampler"]
    assert used.calls == 5 and all(r.usage.calls == 1 for r in results)
    assert used.prompt_tokens == 10 * len(sampler.bodies)
    assert used.completion_tokens == sum(len(t) for t in texts)
    if continuation:
        assert all(len(r.tokens) == len(r.text) for r in results)

    # Seven samples of the same request: the first five from the cache, two new ones.
    sampler.bodies.clear()
    with usage_meter() as meter:
        more = await model.generate_n(request, 7)
    assert [r.text for r in more[:5]] == texts and all(r.cached for r in more[:5])
    assert not any(r.cached for r in more[5:]) and len({r.text for r in more}) == 7
    expected = [2] if sampler.honours_n else [None, None]  # a server that ignored n is not asked again
    assert [b.get("n") for b in sampler.bodies] == expected
    assert meter.by_model["openai/sampler"].calls == 2
    assert meter.by_model["openai/sampler"].cached_calls == 5


async def test_seeded_or_greedy_samples_are_requests_of_their_own(
    sampling_server: tuple[str, _Sampler],
) -> None:
    url, sampler = sampling_server
    if not sampler.honours_n:
        pytest.skip("the same either way")
    model = get_model("openai/sampler", api_base=url)
    seeded = GenerateRequest(messages=HELLO, max_tokens=8, temperature=1.0, seed=7)
    await model.generate_n(seeded, 3)
    assert sorted(b["seed"] for b in sampler.bodies) == [7, 8, 9]  # sample i is seed + i
    assert all("n" not in b for b in sampler.bodies)
    sampler.bodies.clear()
    forced = get_model("openai/sampler", api_base=url, samples_in_one_request=False)
    await forced.generate_n(seeded.model_copy(update={"seed": None}), 3)
    assert len(sampler.bodies) == 3 and all("n" not in b for b in sampler.bodies)


async def test_concurrent_samples_stay_within_the_models_concurrency_limit(
    sampling_server: tuple[str, _Sampler],
) -> None:
    url, sampler = sampling_server
    if not sampler.honours_n:
        pytest.skip("the same either way")
    sampler.latency_s = 0.1
    model = get_model("openai/sampler", api_base=url, samples_in_one_request=False, max_concurrency=2)
    results = await model.generate_n(GenerateRequest(messages=HELLO, max_tokens=8, temperature=1.0), 6)
    assert len({r.text for r in results}) == 6 and len(sampler.bodies) == 6
    assert sampler.most_in_flight == 2


def test_usage_shares_add_up() -> None:
    from forkpath.models import GenerateResult, Usage
    from forkpath.models._litellm import share_usage

    results = [GenerateResult(model="m", text=t) for t in ("a", "bbb", "", "cc")]
    total = Usage(calls=1, prompt_tokens=7, completion_tokens=13, cost=0.5)
    shares = share_usage(total, results, "openai/gpt-4o-mini")
    assert sum(s.prompt_tokens for s in shares) == 7 and sum(s.completion_tokens for s in shares) == 13
    assert sum(s.cost for s in shares) == pytest.approx(0.5) and [s.calls for s in shares] == [1] * 4
    assert [s.prompt_tokens for s in shares] == [2, 2, 2, 1]
    assert shares[2].completion_tokens == 0 and shares[1].completion_tokens > shares[3].completion_tokens


async def test_generate_n_through_the_llama_cpp_server(
    llama_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """llama-cpp-python's server takes n and answers one choice: that is seen, and the rest of
    the samples (and every later generate_n) go out as separate requests."""
    model = get_model("openai/smollm2", api_base=llama_server)
    request = GenerateRequest(messages=HELLO, max_tokens=8, temperature=1.0)
    alone = await model.generate(request)
    with caplog.at_level(logging.INFO, logger="forkpath.models._litellm"), usage_meter() as meter:
        results = await model.generate_n(request, 3)
    assert len(results) == 3 and all(r.text for r in results)
    assert "openai/smollm2: the server ignores n" in caplog.text
    assert [r.usage.prompt_tokens for r in results] == [alone.usage.prompt_tokens] * 3
    used = meter.by_model["openai/smollm2"]
    assert used.calls == 3 and used.completion_tokens == sum(r.usage.completion_tokens for r in results) > 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="forkpath.models._litellm"):
        assert len(await model.generate_n(request, 2)) == 2
    assert "ignores n" not in caplog.text  # known now: no request with n
