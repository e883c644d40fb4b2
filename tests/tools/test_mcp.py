"""MCP tools: a real MCP server started by the test (stdio), its tools called by an agent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from forkpath import ConfigError
from forkpath.models import FakeModel, Message
from forkpath.tools import MCPServerSpec, mcp_tools, open_tools, run_agent

SERVER = {"command": sys.executable, "args": [str(Path(__file__).with_name("mcp_server.py"))]}


async def test_the_servers_tools_are_listed_and_called() -> None:
    async with mcp_tools(MCPServerSpec.model_validate(SERVER)) as kit:
        by_name = {t.spec.name: t for t in kit}
        assert set(by_name) == {"multiply", "fail"}
        assert by_name["multiply"].spec.parameters["properties"].keys() == {"a", "b"}
        product = await by_name["multiply"].run({"a": 6, "b": 7})
        failed = await by_name["fail"].run({"reason": "no luck"})
    assert product.output == "42" and not product.error
    assert failed.error and "no luck" in failed.output


async def test_an_agent_calls_an_mcp_tool() -> None:
    call = '<tool_call>{"name": "multiply", "arguments": {"a": 6, "b": 7}}</tool_call>'
    model = FakeModel(script={"tool: 42": ["It is 42."], "6 by 7": [call]})
    async with open_tools(["calculator", {"mcp": SERVER}]) as kit:
        result = await run_agent(model, [Message(role="user", content="Multiply 6 by 7.")], kit)
    assert result.answer == "It is 42." and result.steps[0].results[0].output == "42"


async def test_a_server_that_does_not_start_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot connect to the MCP server"):
        async with open_tools(
            [{"mcp": {"command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]}}]
        ):
            pass
    with pytest.raises(ConfigError, match="has no tool divide"):
        async with open_tools([{"mcp": {**SERVER, "tools": ["divide"]}}]):
            pass
