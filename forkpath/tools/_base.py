"""The tool protocol: a typed function a model may call, and what a call gave back.

A tool has a :class:`~forkpath.models.ToolSpec` (name, description, JSON schema of its arguments)
and one async method, :meth:`Tool.run`. :func:`tool` makes one from a typed Python function: the
name is the function's, the description its docstring's first paragraph, the schema pydantic's
schema of its parameters, and every call's arguments are validated against them first::

    @tool
    def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    result = await add.call(ToolCall(id="1", name="add", arguments='{"a": 2, "b": 3}'))
    result.output  # "5"

A call never raises for what the model did wrong (unknown tool, malformed or invalid arguments, a
tool that failed): :meth:`Tool.call` returns a :class:`ToolResult` with ``error=True`` whose output
says what went wrong, which the agent shows the model as its observation.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable
from typing import Any, Protocol, get_type_hints, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from forkpath._registry import Registry
from forkpath.models import ToolCall, ToolSpec

MAX_OUTPUT_CHARS = 4000
"""Longest tool output shown to a model (longer output is cut, with a note saying so)."""


class ToolResult(BaseModel):
    """What one tool call gave back."""

    model_config = ConfigDict(extra="forbid")

    output: str
    """The observation the model sees (cut to a bound)."""
    error: bool = False
    """The call failed: unknown tool, bad arguments, or the tool raised or timed out."""
    seconds: float = 0.0
    """Wall time of the call."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Tool-specific facts (exit code, timed out, ...)."""


@runtime_checkable
class Tool(Protocol):
    """Something a model can call: a spec and one async method."""

    @property
    def spec(self) -> ToolSpec: ...

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        """Run with validated ``arguments``; raise only for failures of the tool itself."""
        ...


async def call_tool(tool: Tool, call: ToolCall, *, max_output: int = MAX_OUTPUT_CHARS) -> ToolResult:
    """Run ``call`` on ``tool`` and always return a result (errors become error results)."""
    started = time.perf_counter()
    try:
        arguments = call.parsed_arguments()
        result = await tool.run(arguments)
    except asyncio.CancelledError:
        raise
    except (ValueError, ValidationError) as e:
        result = ToolResult(output=f"error: {_first_line(e)}", error=True)
    except Exception as e:  # the tool failed: the model sees why, the agent goes on
        result = ToolResult(output=f"error: {type(e).__name__}: {_first_line(e)}", error=True)
    result.seconds = time.perf_counter() - started
    result.output = clip(result.output, max_output)
    return result


def clip(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} more characters cut)"


def _first_line(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        return f"invalid arguments: {where}: {first['msg']}"
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:500]


class FunctionTool:
    """A tool made from a Python function (see :func:`tool`)."""

    def __init__(
        self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> None:
        self.fn = fn
        self.arguments_model = _arguments_model(fn)
        doc = inspect.getdoc(fn) or ""
        self._spec = ToolSpec(
            name=name or fn.__name__,
            description=description if description is not None else doc.split("\n\n")[0].strip(),
            parameters=self.arguments_model.model_json_schema(),
        )
        self.registered: Any = None

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        validated = self.arguments_model.model_validate(arguments)
        kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
        value = self.fn(**kwargs)
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, ToolResult):
            return value
        return ToolResult(output=value if isinstance(value, str) else json.dumps(value, default=str))

    async def call(self, call: ToolCall) -> ToolResult:
        """Run one call (see :func:`call_tool`)."""
        return await call_tool(self, call)


def _arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = param.default if param.default is not inspect.Parameter.empty else ...
        fields[pname] = (hints.get(pname, Any), default)
    model: type[BaseModel] = create_model(
        f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Make a :class:`Tool` from a typed function (sync or async); usable bare or with arguments.

    Example:
        >>> @tool
        ... def word_count(text: str) -> int:
        ...     "How many words ``text`` has."
        ...     return len(text.split())
    """
    if fn is None:
        return lambda f: FunctionTool(f, name=name, description=description)
    return FunctionTool(fn, name=name, description=description)


tools: Registry[Tool] = Registry("tools", noun="tool")
"""Tool factories by name: ``python``, ``calculator`` (entry-point group ``forkpath.tools``)."""
