"""A small MCP server for the tests, over stdio: ``python mcp_server.py``."""

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("forkpath-test")


@server.tool()
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@server.tool()
def fail(reason: str) -> str:
    """Always fails (for tests of tool errors)."""
    raise ToolError(reason)


if __name__ == "__main__":
    server.run()
