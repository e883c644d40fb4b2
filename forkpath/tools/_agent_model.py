"""An agent as a model: ``agent/<model>`` answers each request by running the agent loop.

Because it is a :class:`~forkpath.models.Model`, an agent goes wherever a model goes: N agents and
a vote (``self_consistency`` or ``best_of_n`` over an agent), an agent as a cascade's large stage,
a flow's model node, a served model. In YAML::

    models:
      solver:
        model: agent/local/qwen2.5-coder-1.5b
        options: {tools: [python], max_steps: 6, system: "Solve it; run code to check."}

Usage: the inner model's calls are charged where they happen (to the open meters and budgets);
the agent's own result carries no tokens, so nothing is counted twice.
"""

from __future__ import annotations

from typing import Any

from forkpath._errors import BadRequestError
from forkpath.models import (
    GenerateRequest,
    GenerateResult,
    Message,
    Model,
    ModelCapabilities,
    Usage,
    get_model,
)
from forkpath.tools._agent import ToolRef, open_tools, run_agent


class AgentModel(Model):
    """Runs :func:`run_agent` over ``inner`` with ``tools`` for every request.

    Args:
        model_id: ``agent/<inner model id>``.
        inner: the model that thinks and calls tools (needs the ``tool_calls`` capability).
        tools: tool references (names, ``{name: ..., **params}``, ``{mcp: {...}}``).
        system: a system message put first when the request has none.
        max_steps: most model calls per answer.
        first_tool_choice: the first step's ``tool_choice`` (``auto``, ``required``, a tool's name).
    """

    def __init__(
        self,
        model_id: str,
        inner: Model,
        tools: list[ToolRef],
        *,
        system: str | None = None,
        max_steps: int = 8,
        first_tool_choice: str = "auto",
        **options: Any,
    ) -> None:
        super().__init__(model_id, ModelCapabilities(n_ctx=inner.capabilities.n_ctx), **options)
        self.inner = inner
        self.tools = tools
        self.system = system
        self.max_steps = max_steps
        self.first_tool_choice = first_tool_choice

    @property
    def cache_identity(self) -> str:
        first = "" if self.first_tool_choice == "auto" else f"first={self.first_tool_choice}|"
        return (
            f"{self.id}|tools={self.tools!r}|system={self.system!r}|steps={self.max_steps}|{first}"
            f"{self.inner.cache_identity}"
        )

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        if request.messages is None:
            raise BadRequestError("an agent answers chat messages, not a raw prefix", model=self.id)
        messages = list(request.messages)
        if self.system and not (messages and messages[0].role == "system"):
            messages.insert(0, Message(role="system", content=self.system))
        async with open_tools(self.tools) as agent_tools:
            outcome = await run_agent(
                self.inner,
                messages,
                agent_tools,
                max_steps=self.max_steps,
                first_tool_choice=self.first_tool_choice,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                name=self.id,
                seed=request.seed,
                sample_index=request.sample_index,
            )
        return GenerateResult(
            model=self.id,
            text=outcome.answer or "",
            finish_reason="stop" if outcome.stopped == "done" else "length",
            usage=Usage(),  # the inner model's calls were charged where they were made
        )


def make_agent_model(model_id: str, options: Any, cache: Any) -> Model:
    """The ``agent`` backend's constructor (see :class:`forkpath.models.AgentOptions`)."""
    inner = get_model(model_id.split("/", 1)[1], **options.model_options)
    return AgentModel(
        model_id,
        inner,
        list(options.tools),
        system=options.system,
        max_steps=options.max_steps,
        first_tool_choice=options.first_tool_choice,
        cache=cache,
        **({"max_concurrency": options.max_concurrency} if options.max_concurrency else {}),
    )
