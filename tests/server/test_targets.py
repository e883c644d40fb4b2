"""Each kind of target end to end on the fake model: completions (plain and streamed), several
choices streamed side by side, a strategy with a verifier running the task's tests in the
sandbox, a budget, a multi-turn conversation, a flow with its own store."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import serve, write_flow

CODE = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
OPTIONS = {
    "fake/coder": {"script": {"add": [WRONG, CODE]}},
    "fake/chat": {"script": {"second question": ["second answer"], "first": ["first answer"]}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("flows")
    flow = write_flow(
        folder,
        "stored",
        f"""
name: stored
models: {{default: {{model: fake/stored, options: {{script: {{first: [first answer]}}}}}}}}
store: {{url: {folder / "store.db"}}}
nodes:
  answer: {{strategy: best_of_n, params: {{n: 2, rerank: mean_logprob}}}}
""",
    )
    script = json.dumps({"add": [CODE]})
    tested = write_flow(
        folder,
        "tested",
        "name: tested\n"
        f"models: {{default: {{model: fake/flowcoder, options: {{script: {script}}}}}}}\n"
        "verifier: python_tests\n"
        "nodes: {answer: {strategy: best_of_n, params: {n: 2}}}\n",
    )
    context, state = serve([flow, tested], model_options=OPTIONS)
    with context as url:
        yield url, state


def _client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def test_completions_plain_streamed_and_several_prompts(server: Any) -> None:
    client = _client(server)
    plain = client.completions.create(model="fake/x", prompt="hello", max_tokens=4, temperature=0, logprobs=2)
    assert plain.choices[0].text == "I do" and plain.choices[0].finish_reason == "length"
    assert plain.choices[0].logprobs is not None and plain.choices[0].logprobs.tokens == ["I", " ", "d", "o"]
    assert plain.choices[0].logprobs.text_offset == [0, 1, 2, 3]
    pieces = [
        c.choices[0].text
        for c in client.completions.create(model="fake/x", prompt="hello", stream=True)
        if c.choices
    ]
    assert "".join(pieces) == "I do not know." and len(pieces) > 3
    several = client.completions.create(model="fake/x", prompt=["a", "b"], n=2, max_tokens=2, temperature=0)
    assert [c.index for c in several.choices] == [0, 1, 2, 3]


def test_several_choices_stream_side_by_side(server: Any) -> None:
    stream = _client(server).chat.completions.create(
        model="fake/x", messages=[{"role": "user", "content": "hi"}], n=3, stream=True, temperature=0.5
    )
    texts: dict[int, str] = {0: "", 1: "", 2: ""}
    finished = set()
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert texts == {i: "I do not know." for i in range(3)} and finished == {0, 1, 2}


def test_a_strategy_with_a_verifier_runs_the_tests_in_the_sandbox(server: Any) -> None:
    reply = _client(server).chat.completions.create(
        model="best_of_n:fake/coder",
        messages=[{"role": "user", "content": "Write add(a, b)."}],
        temperature=0.8,
        extra_body={
            "forkpath": {
                "params": {"n": 2, "early_stop": False},
                "verifier": "python_tests",
                "task": {"kind": "code", "entry_point": "add", "asserts": ["assert add(2, 3) == 5"]},
            }
        },
    )
    assert reply.choices[0].message.content == CODE
    candidates = reply.model_extra["forkpath"]["candidates"]
    assert sorted(c["passed"] for c in candidates) == [False, True]
    assert [c["chosen"] for c in candidates if c["passed"]] == [True]


def test_a_budget_stops_a_strategy_and_says_so(server: Any) -> None:
    reply = _client(server).chat.completions.create(
        model="self_consistency:fake/x",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"forkpath": {"params": {"n": 8}, "budget": {"max_calls": 2}}},
    )
    extension = reply.model_extra["forkpath"]
    assert extension["stopped"] == "budget" and reply.choices[0].finish_reason == "length"
    assert extension["calls"] <= 4  # what was in flight when the limit was reached, no more


def test_a_conversation_is_passed_whole(server: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
    ]
    client = _client(server)
    model_reply = client.chat.completions.create(model="fake/chat", messages=messages)  # type: ignore[arg-type]
    strategy_reply = client.chat.completions.create(
        model="best_of_n:fake/chat",
        messages=messages,  # type: ignore[arg-type]
        extra_body={"forkpath": {"params": {"n": 1, "rerank": "mean_logprob"}}},
    )
    assert (
        model_reply.choices[0].message.content == strategy_reply.choices[0].message.content == "second answer"
    )
    # The whole conversation was the prompt (the fake counts one token per character).
    assert model_reply.usage.prompt_tokens > len("second question") + len("first answer")


def test_a_flow_with_its_own_store_caches_across_requests(server: Any) -> None:
    client = _client(server)
    ask = [{"role": "user", "content": "first"}]
    one = client.chat.completions.create(model="stored", messages=ask)  # type: ignore[arg-type]
    two = client.chat.completions.create(model="stored", messages=ask)  # type: ignore[arg-type]
    assert one.choices[0].message.content == two.choices[0].message.content == "first answer"
    assert two.model_extra["forkpath"]["cached_calls"] >= 1


def test_health_and_metrics(server: Any) -> None:
    url, _ = server
    assert httpx.get(url + "/health").json()["status"] == "ok"
    text = httpx.get(url + "/metrics").text
    for name in (
        "forkpath_requests_total",
        "forkpath_tokens_total",
        "forkpath_model_calls_total",
        "forkpath_queue_depth",
        "forkpath_requests_running",
        "forkpath_request_latency_seconds_bucket",
        "forkpath_time_to_first_token_seconds_bucket",
    ):
        assert name in text
    assert 'forkpath_tokens_total{kind="completion",model="fake/x"}' in text


def test_the_cli_help() -> None:
    from typer.testing import CliRunner

    from forkpath._cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--api-key" in result.output and "FORKPATH_API_KEY" in result.output


def test_a_flow_that_verifies_needs_the_tasks_tests(server: Any) -> None:
    url, _ = server
    ask = {"model": "tested", "messages": [{"role": "user", "content": "Write add(a, b)."}]}
    error = httpx.post(url + "/v1/chat/completions", json=ask).json()["error"]
    assert error["param"] == "forkpath.task" and "no tests to run" in error["message"]
    task = {"kind": "code", "entry_point": "add", "asserts": ["assert add(2, 3) == 5"]}
    reply = httpx.post(url + "/v1/chat/completions", json={**ask, "forkpath": {"task": task}}).json()
    assert reply["choices"][0]["message"]["content"] == CODE and reply["forkpath"]["passed"] is True


def test_no_cors_unless_asked(server: Any) -> None:
    url, _ = server
    origin = {"Origin": "https://app.example"}
    assert "access-control-allow-origin" not in httpx.get(url + "/v1/models", headers=origin).headers
    context, _ = serve(cors_origins=["https://app.example"], api_key="k" * 16)
    with context as cors_url:
        preflight = httpx.options(
            cors_url + "/v1/chat/completions",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200  # answered before the key check: browsers send none here
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.get(cors_url + "/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
