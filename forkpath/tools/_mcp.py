"""Tools from MCP servers, through the maintained ``mcp`` SDK (imported when first used).

A server is started as a subprocess speaking MCP over stdio (``command`` and ``args``) or reached
over Streamable HTTP (``url``). While the connection is open, each of its tools is a
:class:`~forkpath.tools.Tool` like any other: same spec, same validation by the server, same
error results. In YAML::

    tools:
      - python
      - mcp: {command: python, args: [servers/arith.py]}
      - mcp: {url: "http://127.0.0.1:8765/mcp", tools: [search]}
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forkpath._errors import ConfigError
from forkpath.models import ToolSpec
from forkpath.tools._base import Tool, ToolResult


class MCPServerSpec(BaseModel):
    """Where an MCP server is: a command to start (stdio) or a URL (Streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = None
    """Executable that starts the server and speaks MCP on its stdin/stdout."""
    args: list[str] = Field(default_factory=list)
    """Its arguments."""
    env: dict[str, str] | None = None
    """Extra environment variables for the server process."""
    cwd: str | None = None
    """Working directory of the server process."""
    url: str | None = None
    """A Streamable HTTP endpoint, e.g. ``http://127.0.0.1:8765/mcp``."""
    tools: list[str] | None = None
    """Only these of its tools (default: all)."""
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Longest wait for one tool call."""

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of command (stdio) and url (HTTP)")
        return self


class MCPTool:
    """One tool of a connected MCP server."""

    def __init__(self, client: Any, spec: ToolSpec, timeout_s: float) -> None:
        self._client = client
        self._spec = spec
        self._timeout_s = timeout_s

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        result = await self._client.call_tool(
            self._spec.name, arguments, read_timeout_seconds=self._timeout_s
        )
        texts = [getattr(part, "text", None) for part in result.content]
        output = "\n".join(t for t in texts if t) or (
            str(result.structured_content) if result.structured_content else "(no output)"
        )
        return ToolResult(output=output, error=bool(result.is_error))


@contextlib.asynccontextmanager
async def mcp_tools(spec: MCPServerSpec) -> AsyncIterator[list[Tool]]:
    """Connect to the server of ``spec`` and yield its tools; the connection closes on exit."""
    try:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters
    except ImportError as e:  # pragma: no cover - mcp is a dependency
        raise ConfigError("MCP tools need the mcp package (pip install mcp)") from e
    target: Any = (
        spec.url
        if spec.url is not None
        else StdioServerParameters(command=spec.command or "", args=spec.args, env=spec.env, cwd=spec.cwd)
    )
    try:
        client_cm = Client(target, read_timeout_seconds=spec.timeout_s)
        client = await client_cm.__aenter__()
    except Exception as e:
        where = spec.url or " ".join([spec.command or "", *spec.args])
        raise ConfigError(f"cannot connect to the MCP server {where}: {type(e).__name__}: {e}") from e
    try:
        listed = await client.list_tools()
        tools: list[Tool] = []
        for item in listed.tools:
            if spec.tools is not None and item.name not in spec.tools:
                continue
            tool_spec = ToolSpec(
                name=item.name, description=item.description or "", parameters=dict(item.input_schema or {})
            )
            tools.append(MCPTool(client, tool_spec, spec.timeout_s))
        missing = sorted(set(spec.tools or ()) - {t.spec.name for t in tools})
        if missing:
            raise ConfigError(f"the MCP server has no tool {', '.join(missing)}")
        yield tools
    finally:
        await client_cm.__aexit__(None, None, None)
