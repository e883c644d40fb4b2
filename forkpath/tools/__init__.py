"""Tools that models call, and the agent loop that lets them.

- :class:`Tool`: a spec and one async ``run``; :func:`tool` makes one from a typed function.
- Built in: ``python`` (a program run in the verifiers' sandbox) and ``calculator``; MCP servers'
  tools through the ``mcp`` SDK (:class:`MCPServerSpec`); all by name in :data:`tools`.
- :func:`run_agent`: a ReAct loop (think, call, observe) charged to the open budgets, each step a
  typed trace event; :class:`AgentModel` (``agent/<model>``) makes an agent usable as a model.

Example:
    >>> from forkpath.models import get_model, Message
    >>> from forkpath.tools import open_tools, run_agent
    >>> async with open_tools(["python"]) as kit:
    ...     result = await run_agent(get_model("local/qwen2.5-coder-1.5b"), [Message(role="user", content="...")], kit)
"""

from forkpath.tools._agent import AgentResult, AgentStep, ToolRef, check_tool_refs, open_tools, run_agent
from forkpath.tools._agent_model import AgentModel, make_agent_model
from forkpath.tools._base import FunctionTool, Tool, ToolResult, call_tool, tool, tools
from forkpath.tools._builtin import CalculatorTool, PythonTool, calculator, evaluate, python
from forkpath.tools._mcp import MCPServerSpec, MCPTool, mcp_tools

__all__ = [
    "AgentModel",
    "AgentResult",
    "AgentStep",
    "CalculatorTool",
    "FunctionTool",
    "MCPServerSpec",
    "MCPTool",
    "PythonTool",
    "Tool",
    "ToolRef",
    "ToolResult",
    "calculator",
    "call_tool",
    "check_tool_refs",
    "evaluate",
    "make_agent_model",
    "mcp_tools",
    "open_tools",
    "python",
    "run_agent",
    "tool",
    "tools",
]
