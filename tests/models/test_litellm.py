"""The litellm backend against real HTTP servers on 127.0.0.1.

- SmolLM2 behind ``python -m llama_cpp.server`` (chat, logprobs, text-completion continuation);
- a scripted OpenAI-compatible server that answers 429/503 a few times before succeeding, or 401.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from forkpath import AuthenticationError, CapabilityError, ModelUnavailableError, RateLimitError, ServerError
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


def _completion_body() -> bytes:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "scripted",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()


@pytest.fixture
def scripted_server() -> Iterator[tuple[str, _Script]]:
    script = _Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            status = script.statuses[script.requests] if script.requests < len(script.statuses) else 200
            script.requests += 1
            body = (
                _completion_body()
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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()


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
