"""Bad input is the right 4xx with an OpenAI-style body naming the problem, never a 500:
model names, parameters, JSON, fields OpenAI has and forkpath cannot honour, auth, body size."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import serve

KEY = "sk-test-SECRET-0123456789"
ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Any:
    context, state = serve(
        api_key=KEY,
        max_body_bytes=4096,
        model_options={"fake/failing": {"fail_on": {"explode": f"upstream said: bad key {KEY}"}}},
    )
    with context as url:
        yield url, state


def post(
    server: Any, body: Any, *, path: str = "/v1/chat/completions", key: str | None = KEY, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if isinstance(body, bytes | str):
        return httpx.post(
            server[0] + path, content=body, headers={**headers, "content-type": "application/json"}, **kw
        )
    return httpx.post(server[0] + path, json=body, headers=headers, **kw)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("no-such-flow", "not served here"),
        ("openai/gpt-4o-mini", "--allow-model"),
        ("bset_of_n:fake/x", "did you mean best_of_n"),
        ("best_of_n:openai/gpt-4o-mini", "not served here"),
        ("local/no-such-model", "no-such-model"),
    ],
)
def test_unknown_models_are_404_naming_them(server: Any, model: str, says: str) -> None:
    error = error_of(post(server, {"model": model, "messages": ASK}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model" and says in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"forkpath": {"params": {"n": "many", "rerank": "mean_logprob"}}}, "forkpath.params.n", "integer"),
        (
            {"forkpath": {"params": {"bogus": 1, "rerank": "mean_logprob"}}},
            "forkpath.params.bogus",
            "unknown field",
        ),
        ({"forkpath": {"params": {"rerank": "coin"}}}, "forkpath.params.rerank", "verifier"),
        ({"forkpath": {"verifier": "no_such_verifier"}}, "forkpath.verifier", "unknown"),
        (
            {"forkpath": {"verifier": {"name": "python_tests", "bogus": 1}}},
            "forkpath.verifier.bogus",
            "unknown field",
        ),
        ({"forkpath": {"budget": {"max_tokens": -1}}}, "forkpath.budget.max_tokens", "greater than or equal"),
        ({"forkpath": {"budget": {"tokens": 5}}}, "forkpath.budget.tokens", "unknown field"),
        ({"forkpath": {"speed": "fast"}}, "forkpath.speed", "unknown field"),
        ({"forkpath": {"params": {"rerank": "mean_logprob"}}, "n": 2}, "n", "one chosen answer"),
        ({"forkpath": {"params": {"rerank": "mean_logprob"}}, "logprobs": True}, "logprobs", "chosen answer"),
        ({"forkpath": {"params": {"rerank": "mean_logprob"}}, "stop": ["x"]}, "stop", "cannot honour stop"),
        (
            {},
            "forkpath.verifier",
            "needs a verifier: give forkpath.verifier (e.g. \"python_tests\" with forkpath.task tests, or a judge), or set forkpath.params.rerank to 'mean_logprob'",
        ),
        (
            {"forkpath": {"params": {"rerank": "mean_logprob", "temperature": 0.1}}, "temperature": 0.5},
            "temperature",
            "differ",
        ),
        ({"frobnicate": True}, "frobnicate", "unknown field"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tool calling"),
        ({"response_format": {"type": "json_object"}}, "response_format", "structured output"),
        ({"temperature": 7}, "temperature", "less than or equal to 2"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "needs stream"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(
    server: Any, body: dict[str, Any], param: str, says: str
) -> None:
    error = error_of(post(server, {"model": "best_of_n:fake/x", "messages": ASK, **body}), 400)
    assert error["param"] == param and says in error["message"], error


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": "cascade:fake/x", "temperature": 0.5}, "temperature", "has no temperature parameter"),
        ({"model": "cascade:small=fake/a"}, "model", "needs a model for role 'large'"),
        ({"model": "cascade:small=fake/a,large=fake/b,medium=fake/c"}, "model", "no role 'medium'"),
        ({"model": "speculative_decoding:local/smollm2-135m"}, "model", "batch-invariant"),
        ({"model": "token_routing:small=fake/a,large=openai/gpt-4o-mini"}, "model", "not served here"),
        ({"model": "fake/x", "forkpath": {"params": {"n": 2}}}, "forkpath.params", "is a model"),
        ({"model": "fake/x", "top_logprobs": 3}, "top_logprobs", "needs logprobs"),
        ({"model": "fake/x", "logprobs": True, "top_logprobs": 20, "n": 17}, "n", "less than or equal to 16"),
        (
            {"model": "fake/x", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
            "Input should be",
        ),
        ({"model": "fake/x", "messages": []}, "messages", "at least 1"),
        ({"model": "fake/x", "messages": None}, "messages", "valid list"),
        ({"model": ""}, "model", "at least 1 character"),
        # The searches take their settings in groups; an old flat key names its new place.
        (
            {"model": "mcts:fake/x", "forkpath": {"params": {"max_depth": 3}}},
            "forkpath.params.max_depth",
            "`max_depth` moved to `step.max_depth`",
        ),
        (
            {"model": "mcts:fake/x", "forkpath": {"params": {"step": {"max_depth": 0}}}},
            "forkpath.params.step.max_depth",
            "greater than or equal to 1",
        ),
        ({"model": "mcts:fake/x", "temperature": 0.5}, "temperature", "has no temperature parameter"),
        (
            {"model": "mcts:fake/x"},
            "forkpath.verifier",
            "or set forkpath.params.value.kind to 'self_eval' or 'prm'",
        ),
        (
            {
                "model": "best_of_n:fake/x",
                "messages": [*ASK, {"role": "assistant", "content": "Hel"}],
                "forkpath": {"params": {"rerank": "mean_logprob"}},
            },
            "messages[1].role",
            "last user message",
        ),
    ],
)
def test_targets_refuse_what_they_cannot_honour(
    server: Any, body: dict[str, Any], param: str, says: str
) -> None:
    error = error_of(
        post(server, {"messages": ASK, **body}), 404 if param == "model" and "served" in says else 400
    )
    assert error["param"] == param and says in error["message"], error


def test_missing_model_and_messages(server: Any) -> None:
    error = error_of(post(server, {"messages": ASK}), 400)
    assert error["param"] == "model" and "field required" in error["message"]
    error = error_of(post(server, {"model": "fake/x"}), 400)
    assert error["param"] == "messages"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_json_is_400(server: Any, raw: bytes, says: str) -> None:
    assert says in error_of(post(server, raw), 400)["message"]


def test_completions_refusals(server: Any) -> None:
    for body, param in [
        ({"model": "fake/x", "prompt": "a", "echo": True}, "echo"),
        ({"model": "fake/x", "prompt": "a", "best_of": 3}, "best_of"),
        ({"model": "fake/x", "prompt": "a", "logprobs": 9}, "logprobs"),
        (
            {
                "model": "best_of_n:fake/x",
                "prompt": ["a", "b"],
                "forkpath": {"params": {"rerank": "mean_logprob"}},
            },
            "prompt",
        ),
        ({"model": "fake/x", "prompt": [1, 2]}, "prompt"),
    ]:
        assert error_of(post(server, body, path="/v1/completions"), 400)["param"] == param


def test_auth(server: Any) -> None:
    body = {"model": "fake/x", "messages": ASK}
    for key in (None, "sk-not-the-key-42", KEY[:-1], KEY + "0"):
        error = error_of(post(server, body, key=key), 401)
        assert error["code"] == "invalid_api_key" and (not key or key not in error["message"])
    assert (
        httpx.post(server[0] + "/v1/chat/completions", json=body, headers={"Authorization": KEY}).status_code
        == 401
    )
    assert post(server, body).status_code == 200
    assert httpx.get(server[0] + "/health").status_code == 200  # open for load balancers
    assert httpx.get(server[0] + "/metrics").status_code == 401
    assert httpx.get(server[0] + "/v1/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server[0] + "/v1", api_key="wrong", max_retries=0).models.list()


def test_body_size_limit(server: Any) -> None:
    big = {"model": "fake/x", "messages": [{"role": "user", "content": "x" * 5000}]}
    assert error_of(post(server, big), 413)["code"] == "request_too_large"

    def chunks() -> Any:  # no content-length: the limit holds while the body is read
        yield b'{"model": "fake/x", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    response = httpx.post(
        server[0] + "/v1/chat/completions",
        content=chunks(),
        headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert error_of(response, 413)["code"] == "request_too_large"


def test_unknown_routes_and_methods_are_json(server: Any) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    assert error_of(httpx.get(server[0] + "/v1/nothing", headers=headers), 404)["code"] == "not_found"
    assert (
        error_of(httpx.get(server[0] + "/v1/chat/completions", headers=headers), 405)["code"]
        == "method_not_allowed"
    )


def test_errors_never_echo_secrets(server: Any) -> None:
    response = post(server, {"model": "fake/failing", "messages": [{"role": "user", "content": "explode"}]})
    error = error_of(response, 400)
    assert KEY not in response.text and "***" in error["message"]


def test_the_official_client_raises_the_right_errors(server: Any) -> None:
    client = openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="did you mean best_of_n"):
        client.chat.completions.create(model="bset_of_n:fake/x", messages=ASK)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match=r"forkpath\.params\.n"):
        client.chat.completions.create(
            model="best_of_n:fake/x",
            messages=ASK,  # type: ignore[arg-type]
            extra_body={"forkpath": {"params": {"n": "many"}}},
        )
    with pytest.raises(openai.BadRequestError, match=r"forkpath\.budget\.max_calls"):
        client.chat.completions.create(
            model="best_of_n:fake/x",
            messages=ASK,  # type: ignore[arg-type]
            stream=True,
            extra_body={"forkpath": {"budget": {"max_calls": "lots"}}},
        )
    # No 500 anywhere above.
    metrics = httpx.get(server[0] + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'status="500"' not in metrics


def test_a_search_takes_its_nested_parameters(server: Any) -> None:
    """``forkpath.params`` in the nested form runs mcts (a self-evaluating one: no verifier)."""
    params = {
        "max_simulations": 2,
        "step": {"max_depth": 1, "expansion_width": 2},
        "value": {"kind": "self_eval"},
    }
    response = post(server, {"model": "mcts:fake/x", "messages": ASK, "forkpath": {"params": params}})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
