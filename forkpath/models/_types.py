"""Typed requests, results and capabilities of the model layer."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forkpath.models._constraints import Constraint
from forkpath.models._sampling import Sampling


class ToolSpec(BaseModel):
    """A function the model may call, as OpenAI's function-calling schema describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """A JSON schema of the arguments object."""

    def openai(self) -> dict[str, Any]:
        """The ``{"type": "function", "function": {...}}`` form of chat APIs and chat templates."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class ToolCall(BaseModel):
    """A call the model asked for: a tool name and its arguments as the model wrote them (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    arguments: str = "{}"
    """The arguments object as JSON text, exactly as generated (it may be malformed)."""

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; raises ``ValueError`` naming the problem if they are not one."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"arguments of {self.name} are not JSON: {e.msg} at character {e.pos}") from None
        if not isinstance(value, dict):
            raise ValueError(f"arguments of {self.name} must be a JSON object, not {type(value).__name__}")
        return value


class Message(BaseModel):
    """One chat message: a turn of the system, user or assistant, or a tool's result.

    An assistant turn that calls tools carries ``tool_calls``; each result comes back as a
    ``tool`` message with the call's ``tool_call_id``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """Calls made in an assistant turn."""
    tool_call_id: str | None = None
    """For a ``tool`` message: which call this is the result of."""
    name: str | None = None
    """For a ``tool`` message: the tool's name."""

    def openai(self) -> dict[str, Any]:
        """The message as chat APIs and chat templates take it."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class GenerateRequest(BaseModel):
    """What to generate: chat messages, or a raw text / token prefix to continue.

    Exactly one of ``messages``, ``prompt`` and ``prompt_tokens`` is set. A request with
    ``messages`` whose last message is from the assistant asks the backend to continue that
    partial turn where it can (``prefix continuation``).

    Example:
        >>> GenerateRequest(messages=[Message(role="user", content="Hi")], max_tokens=16)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: tuple[Message, ...] | None = None
    """Chat messages, oldest first."""
    prompt: str | None = None
    """Raw text to continue (no chat template is applied)."""
    prompt_tokens: tuple[int, ...] | None = None
    """Token ids to continue; only for models whose tokenizer is known."""
    max_tokens: int = Field(default=256, ge=0)
    """Most tokens to generate."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 is greedy."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling: keep the most likely tokens whose probabilities sum to ``top_p`` (1: off)."""
    top_k: int = Field(default=0, ge=0)
    """Keep the ``top_k`` most likely tokens (0: off)."""
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    """Drop tokens less likely than ``min_p`` times the most likely one (0: off)."""
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    """Divide a recent token's positive logit by this, multiply a negative one (1: off)."""
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    """Subtract this from the logit of every recent token (0: off)."""
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    """Subtract this times its count from the logit of every recent token (0: off)."""
    stop: tuple[str, ...] = ()
    """Generation ends before any of these strings."""
    seed: int | None = None
    """Sampling seed; combined with ``sample_index`` by backends that take a seed."""
    sample_index: int = Field(default=0, ge=0)
    """Which of N samples this is: samples at temperature > 0 with different indexes are distinct."""
    top_logprobs: int = Field(default=0, ge=0)
    """How many alternatives to return per generated token (0: none)."""
    logprobs: bool = False
    """Return the chosen token's logprob (implied by ``top_logprobs > 0``)."""
    tools: tuple[ToolSpec, ...] = ()
    """Functions the model may call (models with the ``tool_calls`` capability)."""
    tool_choice: str = "auto"
    """Whether the model may (``auto``), must not (``none``) or must (``required``) call a tool,
    or the name of the one tool it must call."""
    constraint: Constraint | None = None
    """What the whole output must match (a JSON schema, a regex or a grammar); how a model
    enforces it is its ``constrained_decoding`` capability."""
    constraint_prefix: int = Field(default=0, ge=0)
    """How many of the last ``prompt_tokens`` are already part of the constrained answer (a
    search continuing a partial answer): the constraint applies to them and what follows."""

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        given = [x is not None for x in (self.messages, self.prompt, self.prompt_tokens)]
        if sum(given) != 1:
            raise ValueError("give exactly one of messages, prompt, prompt_tokens")
        return self

    @model_validator(mode="after")
    def _known_tool_choice(self) -> GenerateRequest:
        names = {t.name for t in self.tools}
        if self.tool_choice not in ("auto", "none", "required") and self.tool_choice not in names:
            raise ValueError(
                f"tool_choice is auto, none, required or the name of a tool ({', '.join(sorted(names)) or 'none given'}), "
                f"not {self.tool_choice!r}"
            )
        return self

    @property
    def sampling(self) -> Sampling:
        """The sampling settings, for :func:`forkpath.models.choose_token`."""
        return Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs or self.top_logprobs > 0

    @property
    def is_continuation(self) -> bool:
        """True when the request continues a raw prefix or a partial assistant turn."""
        if self.messages is not None:
            return bool(self.messages) and self.messages[-1].role == "assistant"
        return True

    def cache_key(self, model_id: str) -> str:
        """The canonical request key: model, input, sampling parameters and sample index.

        Greedy requests ignore ``sample_index`` and ``seed`` so all of them share one entry.
        Never includes credentials, timeouts or retry counts (they are not part of the request).
        """
        body = self.model_dump(mode="json")
        if self.temperature == 0.0:
            body["sample_index"] = 0
            body["seed"] = None
        payload = json.dumps({"model": model_id, "request": body}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


class TopLogprob(BaseModel):
    """One alternative at a position."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float
    token_id: int | None = None


class TokenInfo(BaseModel):
    """One generated token with what the backend told us about it."""

    model_config = ConfigDict(extra="forbid")

    token: str
    token_id: int | None = None
    logprob: float | None = None
    top: list[TopLogprob] = Field(default_factory=list)
    """Alternatives, most likely first (may include the chosen token)."""
    entropy: float | None = None
    """Entropy in nats of the full next-token distribution (local backends) or None."""


class Usage(BaseModel):
    """Token and cost accounting of one or more calls to one model."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """US dollars where the provider's price is known, else 0."""
    cached_calls: int = 0
    """Calls answered from the generation cache (no tokens spent)."""
    replayed_prompt_tokens: int = 0
    """What the cached calls cost when they were made (``forkpath sweep`` counts a budget's
    samples at their price, whichever budget drew them first); never charged to a budget."""
    replayed_completion_tokens: int = 0
    replayed_cost: float = 0.0
    replayed_seconds: float = 0.0
    """The cached calls' latency when they were made."""
    replayed_spans: tuple[tuple[float, float], ...] = ()
    """When each cached call ran when it was made (wall clock start and end, seconds since the
    epoch; calls cached before forkpath recorded it have none): calls that ran side by side
    overlap, so their replay costs the wall time of their union (:func:`replayed_wall_s`), not
    the sum of their latencies."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=self.cost + other.cost,
            cached_calls=self.cached_calls + other.cached_calls,
            replayed_prompt_tokens=self.replayed_prompt_tokens + other.replayed_prompt_tokens,
            replayed_completion_tokens=self.replayed_completion_tokens + other.replayed_completion_tokens,
            replayed_cost=self.replayed_cost + other.replayed_cost,
            replayed_seconds=self.replayed_seconds + other.replayed_seconds,
            replayed_spans=self.replayed_spans + other.replayed_spans,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def replayed_wall_s(usages: Iterable[Usage]) -> float:
    """The wall time the cached calls of ``usages`` took when they were made: the union of their
    spans (calls that ran together count once), plus the latency of calls without a span."""
    spans: list[tuple[float, float]] = []
    unspanned = 0.0
    for usage in usages:
        spans.extend(usage.replayed_spans)
        unspanned += usage.replayed_seconds - sum(end - start for start, end in usage.replayed_spans)
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total + max(0.0, unspanned)


FinishReason = Literal["stop", "length", "tool_calls", "error", "unknown"]


class GenerateResult(BaseModel):
    """What a model returned for one request."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """Model id that produced it."""
    text: str
    tokens: list[TokenInfo] = Field(default_factory=list)
    """Per-token detail where the backend gives it (empty otherwise)."""
    finish_reason: FinishReason = "unknown"
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Calls the model made (``finish_reason`` is then ``tool_calls``); ``text`` is what it wrote
    besides them."""
    tool_call_problems: list[str] = Field(default_factory=list)
    """Calls the model tried to write that could not be read (an agent shows them to the model)."""
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    started_at: float | None = None
    """Wall clock (seconds since the epoch) when the call started."""
    cached: bool = False
    """True when the result was replayed from the generation cache."""
    log_weight: float | None = None
    """The sample's log importance weight towards the *globally* constrained distribution
    (``p(text)·1[text valid]``, renormalised over whole texts): the sum over its tokens of the
    log probability mass the constraint allowed at that step. A constrained sample is drawn
    token by token from the locally renormalised distribution, which favours prefixes whose
    continuations are mostly invalid; weighting samples by ``exp(log_weight)`` (self-normalised)
    corrects that. Exact with ``method: mask``, an unbiased estimate (of the weight, not its log)
    with ``method: rejection`` (Lipkin et al. 2025). Set by local models for sampled, untruncated
    constrained requests; None otherwise (no constraint: every weight is 1)."""

    @property
    def token_ids(self) -> list[int] | None:
        ids = [t.token_id for t in self.tokens]
        return None if not ids or any(i is None for i in ids) else [i for i in ids if i is not None]

    @property
    def logprobs(self) -> list[float] | None:
        lps = [t.logprob for t in self.tokens]
        return None if not lps or any(x is None for x in lps) else [x for x in lps if x is not None]

    @property
    def mean_logprob(self) -> float | None:
        lps = self.logprobs
        return sum(lps) / len(lps) if lps else None


class GenerateChunk(BaseModel):
    """A piece of a streamed generation (:meth:`Model.stream`): the new text and its tokens; the
    last chunk also carries the whole :class:`GenerateResult`."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    """Text produced since the previous chunk."""
    tokens: list[TokenInfo] = Field(default_factory=list)
    """The tokens of that text, where the backend gives them."""
    result: GenerateResult | None = None
    """On the last chunk only: the result, as :meth:`Model.generate` would return it."""


class ModelCapabilities(BaseModel):
    """What a model can return; the levels of algorithms.md §0.1.

    Strategies declare the capabilities they need; :meth:`Model.require` checks them at
    configuration time and raises :class:`~forkpath.CapabilityError` naming both sides.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    logprobs: bool = False
    """C1: the chosen token's logprob."""
    top_logprobs: int = 0
    """C2: how many alternatives per position it can return (0: none)."""
    full_distribution: bool = False
    """C3: the whole next-token distribution (all logits)."""
    prefix_continuation: bool = False
    """C4: continue an arbitrary text or token prefix."""
    prompt_scoring: bool = False
    """C5: logprobs of given text (teacher forcing)."""
    tokenizer_id: str | None = None
    """Identity of the vocabulary; equal ids mean token ids can be mixed between models."""
    n_ctx: int | None = None
    """Context window in tokens, when known."""
    tool_calls: bool = False
    """Takes ``tools`` and returns ``tool_calls`` (API function calling, or a chat template
    that declares tools and a format forkpath reads)."""
    constrained_decoding: Literal["tokens", "json_schema", "verify"] = "verify"
    """How a request's ``constraint`` is enforced: ``tokens`` masks tokens while decoding (every
    kind, every output valid); ``json_schema`` sends JSON schemas to the provider's structured
    output mode and samples-and-verifies the rest; ``verify`` samples and retries until the
    output satisfies the constraint, within a retry budget (it may fail)."""
    batch_invariant: bool = False
    """A token's logits are the same bits whether evaluated alone or in a batch, so batched
    teacher forcing (C5) agrees exactly with one-token decoding (local ``batch_invariant: true``)."""
