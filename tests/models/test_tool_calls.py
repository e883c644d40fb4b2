"""Tool calls in the model layer: the request's tools reach the model, its calls come back parsed.

Real parts: litellm against llama.cpp's OpenAI-compatible server with function calling
(``--chat_format chatml-function-calling``, SmolLM2); text-format parsing for local models."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkpath import CapabilityError
from forkpath.models import GenerateRequest, Message, ToolCall, ToolSpec, get_model, parse_tool_calls
from tests.conftest import free_port, wait_for_port

MULTIPLY = ToolSpec(
    name="multiply",
    description="Multiply two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
ASK = (Message(role="user", content="Multiply 6 by 7 with the tool."),)


def test_text_tool_calls_are_parsed_and_garbled_ones_reported() -> None:
    text = (
        "I will compute it.\n"
        '<tool_call>\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n</tool_call>\n'
        '<tool_call>{"name": "multiply", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>\n'
        '<tool_call>{"arguments": {}}</tool_call>\n'
        "<tool_call>{not json"
    )
    content, calls, problems = parse_tool_calls(text)
    assert content == "I will compute it."
    assert [(c.name, c.parsed_arguments()) for c in calls] == [
        ("multiply", {"a": 6, "b": 7}),
        ("multiply", {"a": 1, "b": 2}),
    ]
    assert len(problems) == 2 and "expected" in problems[0] and "not closed" in problems[1]


def test_tool_choice_must_name_a_given_tool_and_models_without_tools_refuse() -> None:
    with pytest.raises(ValueError, match="tool_choice is auto, none, required or the name of a tool"):
        GenerateRequest(messages=ASK, tools=(MULTIPLY,), tool_choice="divide")
    with pytest.raises(ValueError, match="arguments of f are not JSON"):
        ToolCall(id="1", name="f", arguments="{").parsed_arguments()
    smol = get_model("local/smollm2-135m")  # its chat template has no tools
    assert not smol.capabilities.tool_calls
    with pytest.raises(CapabilityError, match="cannot call tools"):
        smol.check_request(GenerateRequest(messages=ASK, tools=(MULTIPLY,)))


@pytest.fixture(scope="module")
def function_calling_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's server with its chatml function-calling handler, serving SmolLM2."""
    port = free_port()
    log = tmp_path_factory.mktemp("fc-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forkpath.models._llama_server",
                *("--model", str(smollm2_path), "--host", "127.0.0.1", "--port", str(port)),
                *("--n_ctx", "2048", "--chat_format", "chatml-function-calling", "--model_alias", "smollm2"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
async def test_tool_calls_through_litellm_and_a_server_with_function_calling(
    function_calling_server: str,
) -> None:
    model = get_model("openai/smollm2", api_base=function_calling_server)
    assert model.capabilities.tool_calls
    result = await model.generate(
        GenerateRequest(messages=ASK, tools=(MULTIPLY,), tool_choice="multiply", max_tokens=64)
    )
    assert result.finish_reason == "tool_calls" and len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == "multiply" and set(call.parsed_arguments()) == {"a", "b"}
    # The call and its result go back as messages in OpenAI's shape, and the server takes them.
    follow = await model.generate(
        GenerateRequest(
            messages=(
                *ASK,
                Message(role="assistant", content="", tool_calls=(call,)),
                Message(role="tool", content="42", tool_call_id=call.id, name="multiply"),
            ),
            tools=(MULTIPLY,),
            tool_choice="none",
            max_tokens=16,
        )
    )
    assert follow.tool_calls == [] and follow.finish_reason in ("stop", "length")


async def test_a_streamed_request_with_tools_carries_its_tool_calls(function_calling_server: str) -> None:
    model = get_model("openai/smollm2", api_base=function_calling_server)
    request = GenerateRequest(messages=ASK, tools=(MULTIPLY,), tool_choice="multiply", max_tokens=64)
    chunks = [c async for c in model.stream(request)]
    result = chunks[-1].result
    assert result is not None and result.finish_reason == "tool_calls"
    assert [c.name for c in result.tool_calls] == ["multiply"]
    assert set(result.tool_calls[0].parsed_arguments()) == {"a", "b"}


@pytest.mark.parametrize(
    ("text", "opening", "names"),
    [
        ('{"name": "multiply", "arguments": {"a": 6, "b": 7}}', "", ["multiply"]),
        ('```json\n{"name": "multiply", "arguments": {"a": 6, "b": 7}}\n```', "", ["multiply"]),
        ('{"name": "janet", "arguments": {"code": "1"}}', "", ["janet"]),  # unknown: the agent says so
        ('{"a": 6, "b": 7}}', '<tool_call>\n{"name": "multiply", "arguments":', ["multiply"]),
        ('{"name": "multiply", "arguments": {"a": 6, "b": 7}}', "<tool_call>\n", ["multiply"]),
        ('{"answer": 42}', "", []),  # JSON that is not a call stays text
        ("The answer is 42.", "", []),
    ],
)
def test_local_replies_are_read_as_calls_only_when_they_are_calls(
    text: str, opening: str, names: list[str]
) -> None:
    from forkpath.models import GenerateResult, Usage
    from forkpath.models._tool_calls import read_tool_calls

    request = GenerateRequest(messages=ASK, tools=(MULTIPLY,))
    reply = GenerateResult(model="m", text=text, finish_reason="stop", usage=Usage(calls=1))
    result = read_tool_calls(reply, request, opening=opening)
    assert [c.name for c in result.tool_calls] == names
    assert result.finish_reason == ("tool_calls" if names else "stop")
    assert result.text == ("" if names else text)
    untouched = read_tool_calls(
        GenerateResult(model="m", text=text, finish_reason="stop", usage=Usage(calls=1)),
        GenerateRequest(messages=ASK, tools=(MULTIPLY,), tool_choice="none"),
    )
    assert untouched.tool_calls == [] and untouched.text == text


def test_a_forced_call_is_held_to_the_allowed_tools_schemas() -> None:
    from forkpath.models import Constraint
    from forkpath.models._tool_calls import forced_call_constraint, forced_call_opening

    add = ToolSpec(name="add", description="Add.", parameters={"type": "object", "properties": {}})
    required = GenerateRequest(messages=ASK, tools=(MULTIPLY, add), tool_choice="required")
    named = GenerateRequest(messages=ASK, tools=(MULTIPLY, add), tool_choice="add")
    own = GenerateRequest(
        messages=ASK, tools=(MULTIPLY,), tool_choice="multiply", constraint=Constraint(regex="x")
    )
    both = forced_call_constraint(required)
    assert both is not None and both.json_schema is not None
    variants = both.json_schema["anyOf"]
    assert [v["properties"]["name"] for v in variants] == [{"const": "multiply"}, {"const": "add"}]
    assert variants[0]["properties"]["arguments"] == MULTIPLY.parameters
    one = forced_call_constraint(named)
    assert (
        one is not None
        and one.json_schema is not None
        and one.json_schema["properties"]["name"] == {"const": "add"}
    )
    assert forced_call_opening(required) == forced_call_opening(named) == "<tool_call>\n"
    assert forced_call_constraint(own) is None and forced_call_opening(own).endswith('"arguments":')
    assert forced_call_constraint(GenerateRequest(messages=ASK, tools=(MULTIPLY,))) is None
