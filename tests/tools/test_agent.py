"""The agent loop on the fake model: tool calls, observations, malformed calls, limits, budget."""

from __future__ import annotations

import pytest

from forkpath import Budget, BudgetLimits, ConfigError
from forkpath._trace import AgentStepEvent, ToolCallEvent, Tracer
from forkpath.models import FakeModel, GenerateRequest, GenerateResult, Message, get_model, usage_meter
from forkpath.tools import PythonTool, open_tools, run_agent, tool

ASK = [Message(role="user", content="What is 6 times 7? Use the tool.")]
CALL = '<tool_call>\n{"name": "python", "arguments": {"code": "print(6 * 7)"}}\n</tool_call>'


async def test_the_agent_runs_the_python_tool_and_answers_from_its_output() -> None:
    model = FakeModel(script={"tool: 42": ["The answer is 42."], "6 times 7": [CALL]})
    with Tracer() as tracer, usage_meter() as meter:
        async with open_tools(["python"]) as kit:
            result = await run_agent(model, ASK, kit, max_steps=4)
    assert result.answer == "The answer is 42." and result.stopped == "done"
    assert result.tool_calls == 1 and len(result.steps) == 2
    assert result.steps[0].results[0].output.strip() == "42"
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[1].tool_calls[0].name == "python"
    steps = [e for e in tracer.events if isinstance(e, AgentStepEvent)]
    calls = [e for e in tracer.events if isinstance(e, ToolCallEvent)]
    assert [s.final for s in steps] == [False, True] and calls[0].output.strip() == "42"
    assert meter.total.calls == 2 and meter.tool_calls == 1 and meter.tool_seconds > 0


async def test_malformed_calls_and_unknown_tools_are_observations_not_crashes() -> None:
    garbled = '<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"\n</tool_call>'
    unknown = '<tool_call>{"name": "shell", "arguments": {"cmd": "ls"}}</tool_call>'
    model = FakeModel(
        script={
            "there is no tool 'shell'": ["I give up: 0"],
            "could not be read": [unknown],
            "Hi": [garbled],
        }
    )
    async with open_tools(["python"]) as kit:
        result = await run_agent(model, [Message(role="user", content="Hi")], kit, max_steps=5)
    assert "not JSON" in result.steps[0].problems[0]
    assert (
        result.steps[1].results[0].error and "there is no tool 'shell'" in result.steps[1].results[0].output
    )
    assert result.answer == "I give up: 0" and result.stopped == "done"


async def test_bad_arguments_are_explained_to_the_model() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    bad = '<tool_call>{"name": "add", "arguments": {"a": "x", "b": 2}}</tool_call>'
    model = FakeModel(script={"invalid arguments": ["done"], "Add": [bad]})
    result = await run_agent(model, [Message(role="user", content="Add them")], [add], max_steps=3)
    observation = result.steps[0].results[0]
    assert observation.error and "invalid arguments: a:" in observation.output
    assert add.spec.parameters["required"] == ["a", "b"] and add.spec.description == "Add two integers."


async def test_max_steps_and_the_budget_stop_the_loop() -> None:
    model = FakeModel(script={"": [CALL]})  # calls the tool forever
    async with open_tools(["python"]) as kit:
        capped = await run_agent(model, ASK, kit, max_steps=3)
        budget = Budget(BudgetLimits(max_tool_calls=2))
        with budget.open():
            cut = await run_agent(model, ASK, kit, max_steps=10, budget=budget)
    assert capped.stopped == "max_steps" and capped.tool_calls == 3
    assert cut.stopped == "budget" and cut.tool_calls == 2


async def test_an_agent_is_a_model() -> None:
    script = {"tool: 42": ["The answer is 42."], "6 times 7": [CALL]}
    agent = get_model("agent/fake/m", tools=["python"], max_steps=4, model_options={"script": script})
    from forkpath.models import GenerateRequest

    with usage_meter() as meter:
        result = await agent.generate(GenerateRequest(messages=tuple(ASK)))
    assert result.text == "The answer is 42."
    assert set(meter.by_model) == {"fake/m", "agent/fake/m"} and meter.by_model["fake/m"].calls == 2
    assert meter.by_model["agent/fake/m"].calls == 0  # the inner calls are counted once, where made


async def test_the_python_tool_shows_a_last_expression_as_a_notebook_does() -> None:
    tool = PythonTool()
    shown = await tool.run({"code": "a = [1, 2]\nx = 3; sum(a) * x"})
    printed = await tool.run({"code": "print('hi')"})
    nothing = await tool.run({"code": "x = 1\nNone"})
    broken = await tool.run({"code": "sum(("})
    assert shown.output.strip() == "9" and printed.output.strip() == "hi"
    assert nothing.output == "(no output)"
    assert broken.error and "SyntaxError" in broken.output


class _Recording(FakeModel):
    """A fake model that notes each request's tool_choice."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.choices: list[str] = []

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        self.choices.append(request.tool_choice)
        return await super()._generate(request)


async def test_the_first_step_can_be_made_to_call_a_tool() -> None:
    script = {"tool: 42": ["The answer is 42."], "6 times 7": [CALL]}
    async with open_tools(["python"]) as kit:
        free = _Recording(script=script)
        await run_agent(free, ASK, kit, max_steps=4)
        forced = _Recording(script=script)
        result = await run_agent(forced, ASK, kit, max_steps=4, first_tool_choice="required")
        named = _Recording(script=script)
        await run_agent(named, ASK, kit, max_steps=4, first_tool_choice="python")
    assert free.choices == ["auto", "auto"]
    assert forced.choices == ["required", "auto"] and result.answer == "The answer is 42."
    assert named.choices == ["python", "auto"]
    agent = get_model(
        "agent/fake/m", tools=["python"], first_tool_choice="required", model_options={"script": script}
    )
    assert "first=required" in agent.cache_identity
    assert "first=" not in get_model("agent/fake/m", tools=["python"]).cache_identity


async def test_a_first_tool_choice_that_names_no_tool_is_a_config_error() -> None:
    async with open_tools(["python"]) as kit:
        with pytest.raises(ConfigError, match="not 'shell'"):
            await run_agent(FakeModel(), ASK, kit, first_tool_choice="shell")
