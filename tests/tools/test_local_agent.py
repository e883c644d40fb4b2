"""Tool calls on an in-process llama.cpp model: Qwen2.5-Coder's chat template renders the tools,
its ``<tool_call>`` blocks come back as calls, and the agent loop runs end to end."""

from __future__ import annotations

import pytest

from forkpath import CapabilityError
from forkpath.models import GenerateRequest, Message, ToolSpec, get_model
from forkpath.tools import open_tools, run_agent

QWEN = "local/qwen2.5-coder-0.5b"
MULTIPLY = ToolSpec(
    name="multiply",
    description="Multiply two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
ASK = (Message(role="user", content="What is 6 times 7? Use the multiply tool."),)


async def test_a_local_model_calls_a_tool_it_is_given() -> None:
    model = get_model(QWEN)
    assert model.capabilities.tool_calls
    for choice in ("auto", "required", "multiply"):
        result = await model.generate(
            GenerateRequest(messages=ASK, tools=(MULTIPLY,), tool_choice=choice, max_tokens=48)
        )
        assert result.finish_reason == "tool_calls", (choice, result.text)
        assert [c.name for c in result.tool_calls] == ["multiply"]
        assert result.tool_calls[0].parsed_arguments() == {"a": 6, "b": 7}
        assert "<tool_call>" not in result.text


async def test_tool_choice_none_leaves_the_tools_out_of_the_prompt() -> None:
    model = get_model(QWEN)
    with_tools = GenerateRequest(messages=ASK, tools=(MULTIPLY,), max_tokens=4)
    without = GenerateRequest(messages=ASK, tools=(MULTIPLY,), tool_choice="none", max_tokens=4)
    assert "<tools>" in model.detokenize(model._prompt_ids(with_tools))  # type: ignore[attr-defined]
    assert "<tools>" not in model.detokenize(model._prompt_ids(without))  # type: ignore[attr-defined]
    result = await model.generate(without)
    assert result.tool_calls == [] and result.finish_reason != "tool_calls"


async def test_a_model_whose_template_has_no_tools_refuses_them() -> None:
    model = get_model("local/smollm2-135m")
    assert not model.capabilities.tool_calls
    with pytest.raises(CapabilityError, match="cannot call tools"):
        await model.generate(GenerateRequest(messages=ASK, tools=(MULTIPLY,), max_tokens=4))


async def test_the_agent_loop_runs_python_on_a_local_model() -> None:
    model = get_model(QWEN)
    ask = [Message(role="user", content="Use the python tool to compute 123 * 457, then give the result.")]
    async with open_tools(["python"]) as kit:
        result = await run_agent(model, ask, kit, max_steps=3, max_tokens=96)
    assert result.tool_calls >= 1
    first = result.steps[0]
    assert first.calls[0].name == "python" and "56211" in first.results[0].output
    assert [m.role for m in result.messages][:3] == ["user", "assistant", "tool"]


async def test_a_word_problem_agent_made_to_start_with_a_call_runs_a_program() -> None:
    """Left to choose, the small coder ends its reply right after ``<tool_call>`` on this word
    problem (end of text at p = 0.86); ``first_tool_choice: required`` holds the block's body to a
    call of the python tool, so its first step is a real run of a program."""
    model = get_model(QWEN)
    ask = [
        Message(
            role="system", content="Use the python tool to compute the answer, then answer in one sentence."
        ),
        Message(
            role="user",
            content="A baker makes 17 trays of 24 rolls and sells all but 39 of them. How many rolls does he sell?",
        ),
    ]
    async with open_tools(["python"]) as kit:
        result = await run_agent(model, ask, kit, max_steps=2, max_tokens=128, first_tool_choice="required")
    first = result.steps[0]
    assert [c.name for c in first.calls] == ["python"] and not first.problems, first.text
    code = first.calls[0].parsed_arguments()["code"]
    assert isinstance(code, str) and ("17" in code or "24" in code), code
    assert (
        len(first.results) == 1 and result.tool_calls == 1
    )  # the program ran (its output is the observation)
