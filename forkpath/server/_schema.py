"""What a request body may say: OpenAI's fields, and forkpath's own under ``forkpath``.

Every model is ``extra="forbid"``, as OpenAI's API is: an unknown field is a 400 naming it.
OpenAI fields forkpath cannot honour at all (tools, response formats, logit bias, ...) are
declared so that the error can say so plainly instead of "extra field".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forkpath import BudgetLimits, IOCase


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskFields(_Body):
    """What a verifier checks the answer against (the task's tests or reference answer)."""

    id: str = "request"
    kind: Literal["code", "math", "text"] = "text"
    entry_point: str | None = None
    """Name of the function under test (HumanEval style)."""
    test: str | None = None
    """HumanEval-style test code defining ``check(candidate)``."""
    asserts: list[str] = Field(default_factory=list)
    """Assert statements run after the candidate code."""
    io_cases: list[IOCase] = Field(default_factory=list)
    """stdin/stdout cases."""
    answer: str | None = None
    """Reference answer (math, text)."""


class ForkpathOptions(_Body):
    """The ``forkpath`` field of a request (``extra_body={"forkpath": {...}}`` in the openai package)."""

    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the strategy's factory, validated like a flow node's ``params``."""
    verifier: str | dict[str, Any] | None = None
    """A verifier by name, or ``{"name": ..., **params}``."""
    budget: BudgetLimits | None = None
    """Limits on this request's model calls (with a flow: the stricter of these and the flow's)."""
    task: TaskFields | None = None
    """The tests or reference answer the verifier uses."""
    progress: Literal["comments", "chunks", "off"] = "comments"
    """How a stream reports progress: SSE comments (every client skips them), chunks with an
    empty ``choices`` list and a ``forkpath`` field, or not at all."""
    trace: bool = False
    """Include the request's trace events in the response's ``forkpath`` field."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Time limit of this request (at most the server's)."""


class StreamOptions(_Body):
    include_usage: bool = False
    """Send a last chunk with ``usage`` (and an empty ``choices`` list)."""
    include_obfuscation: bool | None = None
    """Accepted for compatibility; forkpath adds no obfuscation."""


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None
    """Accepted; not passed to models."""

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class _Generation(_Body):
    """Fields the chat and completions endpoints share."""

    model: str = Field(min_length=1)
    """A flow's name, ``strategy:model``, ``strategy:role=model,...`` or a model (see the README)."""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1, le=16)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    top_k: int | None = Field(default=None, ge=0)
    """Not in OpenAI's API; taken as vLLM and llama.cpp's servers take it (``extra_body``)."""
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    """As ``top_k``."""
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    """As ``top_k``."""
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    """Accepted; not used."""
    forkpath: ForkpathOptions = Field(default_factory=ForkpathOptions)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatRequest(_Generation):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Accepted for compatibility, without effect.
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    # Declared so that using them is a clear 400 (see UNSUPPORTED).
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None


class CompletionRequest(_Generation):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


UNSUPPORTED: dict[str, str] = {
    "tools": "tool calling is not supported by forkpath serve",
    "tool_choice": "tool calling is not supported by forkpath serve",
    "functions": "function calling is not supported by forkpath serve",
    "function_call": "function calling is not supported by forkpath serve",
    "response_format": "structured output (response_format) is not supported; only text",
    "audio": "audio output is not supported; only text",
    "modalities": "only the text modality is supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "reasoning_effort is not supported; choose a strategy or flow instead",
    "web_search_options": "web search is not supported",
    "logit_bias": "logit_bias is not supported",
    "echo": "echo is not supported",
    "best_of": "best_of is not supported; use model best_of_n:<model> for best-of-N",
    "suffix": "suffix (insertion) is not supported",
}
"""OpenAI fields forkpath refuses when set to anything but their neutral value."""

_NEUTRAL: dict[str, Any] = {"modalities": ["text"], "echo": False, "best_of": 1, "logit_bias": {}}


def unsupported_fields(body: _Generation) -> list[tuple[str, str]]:
    """``(field, why)`` for each field set that forkpath cannot honour for any target."""
    found = []
    for name, why in UNSUPPORTED.items():
        if name not in type(body).model_fields:
            continue
        value = getattr(body, name)
        if value is None or value == _NEUTRAL.get(name):
            continue
        if name == "response_format" and isinstance(value, dict) and value.get("type") == "text":
            continue
        found.append((name, why))
    return found
