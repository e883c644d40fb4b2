"""The agent loop: a model calls tools until it answers (ReAct: think, call, observe).

Each step sends the conversation and the tools' specs to the model. If it calls tools, every call
runs (in order; a failed call is an observation, not an error), each result goes back as a
``tool`` message and the next step begins. A step without calls is the answer. The loop stops at
``max_steps`` (the answer is then whatever the last step wrote) or when the budget open around it
runs out. Every model call is charged to the open budgets like any other; every tool call is
recorded into them too (``max_tool_calls``), and each step and call is a typed trace event
(:class:`~forkpath._trace.AgentStepEvent`, :class:`~forkpath._trace.ToolCallEvent`).

Example:
    >>> result = await run_agent(model, messages, [python()], max_steps=5)
    >>> result.answer, result.tool_calls
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forkpath._budget import Budget
from forkpath._errors import ConfigError
from forkpath._trace import AgentStepEvent, ToolCallEvent, emit
from forkpath.models import GenerateRequest, Message, Model, ToolCall, record_tool_call
from forkpath.tools._base import Tool, ToolResult, call_tool, tools
from forkpath.tools._mcp import MCPServerSpec, mcp_tools

AgentStopped = Literal["done", "max_steps", "budget"]


class AgentStep(BaseModel):
    """One step: what the model wrote, the calls it made and what they returned."""

    model_config = ConfigDict(extra="forbid")

    text: str
    calls: list[ToolCall] = Field(default_factory=list)
    results: list[ToolResult] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class AgentResult(BaseModel):
    """What an agent run produced."""

    model_config = ConfigDict(extra="forbid")

    answer: str | None
    """The text of the step that answered (None if no step wrote anything)."""
    steps: list[AgentStep] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    """The whole conversation, tool results included."""
    stopped: AgentStopped = "done"
    tool_calls: int = 0
    tool_seconds: float = 0.0


ToolRef = str | dict[str, Any]
"""A tool by registry name (``python``), with parameters (``{name: python, timeout_s: 5}``), or
an MCP server (``{mcp: {command: ..., args: [...]}}``)."""


def check_tool_refs(refs: Sequence[ToolRef]) -> None:
    """Raise :class:`ConfigError` for a reference that names no tool or gives bad parameters
    (MCP servers are checked for shape only: connecting happens when the agent runs)."""
    for ref in refs:
        if isinstance(ref, dict) and "mcp" in ref:
            if set(ref) != {"mcp"}:
                raise ConfigError(f"an MCP tool entry has only the key mcp, not {sorted(set(ref) - {'mcp'})}")
            try:
                MCPServerSpec.model_validate(ref["mcp"])
            except ValueError as e:
                raise ConfigError(f"mcp: {str(e).splitlines()[-1].strip() or e}") from None
            continue
        tools.make(ref)


@contextlib.asynccontextmanager
async def open_tools(refs: Sequence[ToolRef | Tool]) -> AsyncIterator[list[Tool]]:
    """The tools of ``refs``, with any MCP servers connected for the duration of the block."""
    async with contextlib.AsyncExitStack() as stack:
        made: list[Tool] = []
        for ref in refs:
            if isinstance(ref, Tool):
                made.append(ref)
            elif isinstance(ref, dict) and "mcp" in ref:
                made += await stack.enter_async_context(mcp_tools(MCPServerSpec.model_validate(ref["mcp"])))
            else:
                made.append(tools.make(ref))
        names = [t.spec.name for t in made]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"two tools are named {', '.join(duplicates)}")
        yield made


async def run_agent(
    model: Model,
    messages: Sequence[Message],
    agent_tools: Sequence[Tool],
    *,
    max_steps: int = 8,
    first_tool_choice: str = "auto",
    max_tokens: int = 512,
    temperature: float = 0.0,
    name: str = "agent",
    budget: Budget | None = None,
    seed: int | None = None,
    sample_index: int = 0,
) -> AgentResult:
    """Run the loop of the module docstring and return the answer with its steps.

    ``first_tool_choice`` is the first step's ``tool_choice``: ``auto`` lets the model answer at
    once; ``required`` (or a tool's name) makes it start by calling a tool, for small models that
    otherwise write a program and imagine its output. Later steps are always ``auto``.
    """
    if max_steps < 1:
        raise ConfigError(f"an agent needs max_steps >= 1, got {max_steps}")
    by_name = {t.spec.name: t for t in agent_tools}
    if first_tool_choice not in ("auto", "none", "required") and first_tool_choice not in by_name:
        raise ConfigError(
            f"first_tool_choice is auto, required or the name of one of the agent's tools "
            f"({', '.join(sorted(by_name)) or 'none given'}), not {first_tool_choice!r}"
        )
    specs = tuple(t.spec for t in agent_tools)
    conversation = list(messages)
    result = AgentResult(answer=None)
    for step in range(max_steps):
        if budget is not None and budget.exhausted():
            result.stopped = "budget"
            break
        reply = await model.generate(
            GenerateRequest(
                messages=tuple(conversation),
                tools=specs,
                tool_choice=(first_tool_choice if step == 0 else "auto") if specs else "none",
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                sample_index=sample_index,  # each step's messages differ, so each step is its own call
            )
        )
        current = AgentStep(
            text=reply.text, calls=list(reply.tool_calls), problems=list(reply.tool_call_problems)
        )
        result.steps.append(current)
        final = not reply.tool_calls and not reply.tool_call_problems
        emit(
            AgentStepEvent(
                agent=name,
                step=step,
                text=reply.text[:2000],
                tool_calls=[c.name for c in reply.tool_calls],
                problems=current.problems,
                final=final,
            )
        )
        conversation.append(Message(role="assistant", content=reply.text, tool_calls=tuple(reply.tool_calls)))
        if final:
            result.answer = reply.text
            break
        for call in reply.tool_calls:
            tool = by_name.get(call.name)
            outcome = (
                await call_tool(tool, call)
                if tool is not None
                else ToolResult(
                    output=f"error: there is no tool {call.name!r}; the tools are {', '.join(by_name) or 'none'}",
                    error=True,
                )
            )
            current.results.append(outcome)
            result.tool_calls += 1
            result.tool_seconds += outcome.seconds
            record_tool_call(outcome.seconds)
            emit(
                ToolCallEvent(
                    agent=name,
                    step=step,
                    tool=call.name,
                    arguments=call.arguments[:2000],
                    output=outcome.output[:2000],
                    error=outcome.error,
                    seconds=outcome.seconds,
                )
            )
            conversation.append(
                Message(role="tool", content=outcome.output, tool_call_id=call.id, name=call.name)
            )
        if current.problems:
            conversation.append(
                Message(
                    role="user",
                    content="Your tool call could not be read: "
                    + "; ".join(current.problems)
                    + '. Write each call as <tool_call>{"name": ..., "arguments": {...}}</tool_call>.',
                )
            )
        result.answer = reply.text or result.answer
    else:
        result.stopped = "max_steps"
    result.messages = conversation
    return result
