"""Backend ``litellm``: any provider litellm knows, and any OpenAI-compatible server.

litellm is imported on first use (it takes seconds), never at ``import forkpath``. Chat requests
go to ``acompletion``; raw prefixes and partial assistant turns go to ``atext_completion``
(the legacy ``/v1/completions`` endpoint that vLLM and llama.cpp servers keep), which is what
prefix continuation needs. Vendor exceptions are translated into forkpath's error tree here.

Sampling parameters (:func:`sampling_params`) go out under the names each provider uses:
``top_k``, ``min_p`` and the repetition penalty (llama.cpp's server calls it ``repeat_penalty``,
vLLM ``repetition_penalty``) where the provider takes them, presence and frequency penalties
where litellm says it does. A value a provider cannot take is refused with a
:class:`~forkpath.BadRequestError` naming the parameter and the provider, never dropped
silently. A self-hosted OpenAI-compatible server (``api_base`` set) gets every setting
explicitly, defaults included, so its own defaults (llama.cpp's: top-k 40, top-p 0.95, min-p
0.05, repeat penalty 1.1) never apply: a request samples the same through a server as
in-process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator
from typing import Any, Literal

from forkpath._concurrency import gather_all
from forkpath._errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextWindowError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    ModelUnavailableError,
    RateLimitError,
    ServerError,
    UnknownNameError,
)
from forkpath.models._base import Model
from forkpath.models._types import (
    FinishReason,
    GenerateChunk,
    GenerateRequest,
    GenerateResult,
    ModelCapabilities,
    TokenInfo,
    ToolCall,
    TopLogprob,
    Usage,
)

logger = logging.getLogger(__name__)

# The most choices OpenAI's API gives one request (``n``).
_MAX_N = 128
# Providers whose text-completion endpoint continues arbitrary prefixes.
_COMPLETION_PROVIDERS = {"openai", "text-completion-openai", "hosted_vllm", "vllm", "openai_like"}
# Providers that return no logprobs at all.
_NO_LOGPROBS = {"anthropic", "bedrock", "vertex_ai", "gemini", "cohere"}
# OpenAI-compatible APIs: with an api_base, a self-hosted server (llama.cpp, vLLM, ...).
_OPENAI_COMPATIBLE = {"openai", "text-completion-openai", "openai_like", "hosted_vllm", "vllm"}
# Sampling parameters outside OpenAI's API, as each provider calls them (absent: not taken).
_EXTRA_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    # An unknown OpenAI-compatible server gets both names; each server ignores the other one.
    "self-hosted": {
        "top_k": ("top_k",),
        "min_p": ("min_p",),
        "repetition_penalty": ("repeat_penalty", "repetition_penalty"),
    },
    "hosted_vllm": {"top_k": ("top_k",), "min_p": ("min_p",), "repetition_penalty": ("repetition_penalty",)},
    "vllm": {"top_k": ("top_k",), "min_p": ("min_p",), "repetition_penalty": ("repetition_penalty",)},
    "ollama": {"top_k": ("top_k",), "min_p": ("min_p",), "repetition_penalty": ("repeat_penalty",)},
    "ollama_chat": {"top_k": ("top_k",), "min_p": ("min_p",), "repetition_penalty": ("repeat_penalty",)},
    "together_ai": {"top_k": ("top_k",), "min_p": ("min_p",), "repetition_penalty": ("repetition_penalty",)},
    "anthropic": {"top_k": ("top_k",)},
    "gemini": {"top_k": ("top_k",)},
    "vertex_ai": {"top_k": ("top_k",)},
}
_NEUTRAL = {
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


def _litellm() -> Any:
    # Offline machines must not stall fetching the price table.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    return litellm


def _guess_capabilities(model_id: str, provider: str, api_base: str | None) -> ModelCapabilities:
    # Function calling: the big providers have it; a self-hosted server may not (its template
    # decides): override with `options: {capabilities: {tool_calls: false}}` where it lacks it.
    structured: Literal["json_schema", "verify"] = (
        "json_schema" if _takes_json_schema(model_id, provider, api_base) else "verify"
    )
    if provider in _NO_LOGPROBS or "/o1" in model_id or "/o3" in model_id:
        return ModelCapabilities(prefix_continuation=False, tool_calls=True, constrained_decoding=structured)
    continuation = provider in _COMPLETION_PROVIDERS and (api_base is not None or provider != "openai")
    return ModelCapabilities(
        logprobs=True,
        top_logprobs=20,
        prefix_continuation=continuation,
        tool_calls=True,
        constrained_decoding=structured,
    )


def _takes_json_schema(model_id: str, provider: str, api_base: str | None) -> bool:
    """Whether the provider constrains output to a JSON schema (``response_format``): what
    litellm's model table says, and OpenAI-compatible self-hosted servers (llama.cpp, vLLM)."""
    if api_base is not None and provider in ("openai", "hosted_vllm"):
        return True
    try:
        return bool(_litellm().supports_response_schema(model=model_id, custom_llm_provider=provider))
    except Exception:  # unknown to litellm's table: assume not, and sample and verify
        return False


def response_format(request: GenerateRequest, api_base: str | None) -> dict[str, Any] | None:
    """The ``response_format`` that asks the provider for the request's JSON schema, if any.

    OpenAI's form (``json_schema``) for providers; self-hosted servers get the form
    llama-cpp-python's server reads (``json_object`` with a ``schema``), which llama.cpp's own
    server also accepts.
    """
    constraint = request.constraint
    if constraint is None or constraint.json_schema is None:
        return None
    if api_base is not None:
        return {"type": "json_object", "schema": constraint.json_schema}
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": constraint.json_schema, "strict": True},
    }


def capabilities_for(
    model_id: str, api_base: str | None = None, sampling: dict[str, Any] | None = None
) -> ModelCapabilities:
    """What forkpath assumes ``model_id`` returns, from its provider (raises for unknown models,
    and for ``sampling`` defaults the provider does not take: a :class:`ConfigError` at load,
    not a failure on every request)."""
    litellm = _litellm()
    try:
        _, provider, _, _ = litellm.get_llm_provider(model_id, api_base=api_base)
    except Exception as e:  # litellm raises a bare BadRequestError for unknown providers
        raise UnknownNameError(
            f"unknown model {model_id!r}: litellm knows no provider for it "
            "(use provider/model, e.g. openai/gpt-4o-mini, or local/..., llamacpp/<path.gguf>)"
        ) from e
    if sampling:
        _, refused = _sampling(GenerateRequest(prompt="", **sampling), model_id, provider, api_base)
        if refused is not None:
            raise ConfigError(f"model {model_id}: options.sampling: {refused[0]}; remove it")
    return _guess_capabilities(model_id, provider, api_base)


class LiteLLMModel(Model):
    """A model reached through litellm.

    Args:
        model_id: a litellm model string, e.g. ``openai/gpt-4o-mini``, ``anthropic/claude-...``,
            ``hosted_vllm/Qwen/...``, ``ollama/llama3``; with ``api_base``, ``openai/<name>``
            reaches any OpenAI-compatible server.
        api_base: server URL for self-hosted endpoints.
        api_key: key; by default litellm reads the provider's environment variable.
        timeout_s: per-call timeout.
        capabilities: override what forkpath assumes the provider returns.
        samples_in_one_request: whether :meth:`generate_n` sends OpenAI's ``n`` (default: where
            litellm says the provider takes it).
    """

    def __init__(
        self,
        model_id: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        capabilities: ModelCapabilities | None = None,
        samples_in_one_request: bool | None = None,
        **options: Any,
    ) -> None:
        guessed = capabilities_for(model_id, api_base)
        self._takes_n = samples_in_one_request
        """Whether :meth:`generate_n` asks for its samples as the ``n`` choices of one request
        (None until known: what litellm says the provider takes; False once a server ignored it)."""
        self.provider: str = _litellm().get_llm_provider(model_id, api_base=api_base)[1]
        """litellm's provider name (``openai``, ``hosted_vllm``, ``anthropic``, ...)."""
        self.api_base = api_base
        self._api_key = api_key
        self.timeout_s = timeout_s
        super().__init__(model_id, capabilities or guessed, **options)

    @property
    def cache_identity(self) -> str:
        return f"{self.id}@{self.api_base}" if self.api_base else self.id

    def _common_params(self, request: GenerateRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.id,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "timeout": self.timeout_s,
            "num_retries": 0,  # forkpath retries, with its own policy
            **sampling_params(request, self.id, self.provider, self.api_base),
        }
        if request.stop:
            params["stop"] = list(request.stop)
        structured = response_format(request, self.api_base)
        if structured is not None:
            params["response_format"] = structured
        if request.seed is not None:
            params["seed"] = request.seed + request.sample_index
        if self.api_base:
            params["api_base"] = self.api_base
        if self._api_key:
            params["api_key"] = self._api_key
        elif self.api_base:
            params["api_key"] = "not-needed"  # self-hosted servers ignore it; litellm insists on one
        return params

    def _request_params(self, request: GenerateRequest) -> dict[str, Any]:
        """The litellm call's arguments for ``request`` (chat or text completion)."""
        params = self._common_params(request)
        if request.is_continuation:
            params["prompt"] = self._continuation_prompt(request)
            if request.wants_logprobs:
                params["logprobs"] = max(request.top_logprobs, 1)
            return params
        assert request.messages is not None
        params["messages"] = [m.openai() for m in request.messages]
        if request.tools:
            params["tools"] = [t.openai() for t in request.tools]
            params["tool_choice"] = (
                request.tool_choice
                if request.tool_choice in ("auto", "none", "required")
                else {"type": "function", "function": {"name": request.tool_choice}}
            )
        if request.wants_logprobs:
            params["logprobs"] = True
            if request.top_logprobs:
                params["top_logprobs"] = request.top_logprobs
        return params

    async def _call(self, request: GenerateRequest, n: int = 1) -> list[GenerateResult]:
        """One request to the provider (asking for ``n`` choices when ``n > 1``); one result per
        choice it returned, in order, the reply's usage shared out among them (:func:`share_usage`)."""
        litellm = _litellm()
        params = self._request_params(request)
        if n > 1:
            params["n"] = n
        try:
            if request.is_continuation:
                return self._parse(await litellm.atext_completion(**params), request, chat=False)
            return self._parse(await litellm.acompletion(**params), request, chat=True)
        except ModelError:
            raise
        except Exception as e:
            raise translate_error(e, self.id) from e

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        first, *others = await self._call(request)
        for other in others:  # choices nobody asked for: what they cost is still this call's
            first.usage = first.usage + other.usage.model_copy(update={"calls": 0})
        return first

    async def generate_n(self, request: GenerateRequest, n: int) -> list[GenerateResult]:
        """N samples of one request (sample indexes ``request.sample_index .. + n - 1``).

        Where the provider takes OpenAI's ``n`` (litellm's ``get_supported_openai_params``, or
        the ``samples_in_one_request`` option), the samples the cache lacks go out as one request
        with ``n`` (at most 128 a request); each choice is cached under its own sample index and
        charged its share of the reply's usage (one call each; tokens and cost add up to the
        reply's). A server that returns fewer choices than asked (it ignores ``n``, as
        llama-cpp-python's does) gets the rest as concurrent requests, and so does every later
        call of this model. Otherwise, and for seeded requests (sample ``i`` is seed ``+ i``),
        greedy ones and constrained ones, the samples are concurrent requests bounded by the
        model's concurrency limit (:meth:`Model.generate_n`).
        """
        request = self.with_sampling_defaults(request)
        if n < 2 or not self._samples_in_one_request(request):
            return await super().generate_n(request, n)
        self.check_request(request)
        requests = [request.model_copy(update={"sample_index": request.sample_index + i}) for i in range(n)]
        keys = [r.cache_key(self.cache_identity) if self.cache is not None else None for r in requests]
        results: list[GenerateResult | None] = [await self._cached(key) for key in keys]
        missing = [i for i, result in enumerate(results) if result is None]
        groups = [missing[i : i + _MAX_N] for i in range(0, len(missing), _MAX_N)]
        replies = await gather_all(*(self._call_timed(requests[group[0]], len(group)) for group in groups))
        rest: list[int] = []
        for group, reply in zip(groups, replies, strict=True):
            for i, result in zip(group, reply, strict=False):
                results[i] = result
                await self._remember(keys[i], result)
            rest += group[len(reply) :]
        if rest:
            if self._takes_n is not False:
                logger.info("%s: the server ignores n; samples go out as separate requests", self.id)
            self._takes_n = False
            for i, result in zip(
                rest, await gather_all(*(self.generate(requests[i]) for i in rest)), strict=True
            ):
                results[i] = result
        done = [result for result in results if result is not None]
        assert len(done) == n
        for i, result in enumerate(done):
            if i not in rest:  # generate() accounted those
                self._account(result, requests[i])
        return done

    async def _call_timed(self, request: GenerateRequest, n: int) -> list[GenerateResult]:
        async def once() -> list[GenerateResult]:
            started, started_at = time.perf_counter(), time.time()
            results = await self._call(request, n)
            for result in results[:n]:
                result.latency_s = time.perf_counter() - started
                result.started_at = started_at  # the n choices of one request share its span
            return results[:n]

        return await self._with_retries(once)

    def _samples_in_one_request(self, request: GenerateRequest) -> bool:
        """Whether the samples of ``request`` can be the choices of one request with ``n``."""
        if request.temperature == 0.0 or request.seed is not None or request.constraint is not None:
            return False
        if self._takes_n is None:
            self._takes_n = "n" in _openai_params(self.id, self.provider)
        return self._takes_n

    async def _stream(self, request: GenerateRequest) -> AsyncGenerator[GenerateChunk, None]:
        """Stream with ``stream=True``: one chunk per delta the provider sends, then the result
        (usage from the provider's last chunk, ``stream_options.include_usage``; litellm counts
        the tokens itself when a server sends none)."""
        if request.tools:
            # Tool-call deltas arrive as fragments of JSON arguments; one call is one piece.
            result = await self._generate(request)
            if result.text:
                yield GenerateChunk(text=result.text, tokens=result.tokens)
            yield GenerateChunk(result=result)
            return
        litellm = _litellm()
        params = {**self._common_params(request), "stream": True, "stream_options": {"include_usage": True}}
        chat = not request.is_continuation
        if chat:
            assert request.messages is not None
            params["messages"] = [m.openai() for m in request.messages]
            if request.wants_logprobs:
                params["logprobs"] = True
                if request.top_logprobs:
                    params["top_logprobs"] = request.top_logprobs
        else:
            params["prompt"] = self._continuation_prompt(request)
            if request.wants_logprobs:
                params["logprobs"] = max(request.top_logprobs, 1)
        texts: list[str] = []
        tokens: list[TokenInfo] = []
        finish: FinishReason = "unknown"
        usage = Usage(calls=1)
        try:
            response = await (litellm.acompletion(**params) if chat else litellm.atext_completion(**params))
            async for part in response:
                if getattr(part, "usage", None):
                    usage = self._stream_usage(part.usage)
                for choice in getattr(part, "choices", None) or []:
                    text, new_tokens = self._delta(choice, request, chat)
                    if getattr(choice, "finish_reason", None):
                        finish = _finish(choice.finish_reason)
                    if text or new_tokens:
                        texts.append(text)
                        tokens.extend(new_tokens)
                        yield GenerateChunk(text=text, tokens=new_tokens)
        except ModelError:
            raise
        except Exception as e:
            raise translate_error(e, self.id) from e
        result = GenerateResult(
            model=self.id, text="".join(texts), tokens=tokens, finish_reason=finish, usage=usage
        )
        yield GenerateChunk(result=result)

    def _delta(self, choice: Any, request: GenerateRequest, chat: bool) -> tuple[str, list[TokenInfo]]:
        """The text and tokens of one streamed choice."""
        if not chat:
            text = choice.get("text") if isinstance(choice, dict) else getattr(choice, "text", None)
            return text or "", []
        text = getattr(getattr(choice, "delta", None), "content", None) or ""
        content = (
            getattr(getattr(choice, "logprobs", None), "content", None) if request.wants_logprobs else None
        )
        tokens = []
        for item in content or []:
            item = item if isinstance(item, dict) else item.model_dump()
            tokens.append(
                TokenInfo(
                    token=item["token"],
                    logprob=item.get("logprob"),
                    top=[
                        TopLogprob(token=t["token"], logprob=t["logprob"])
                        for t in (item.get("top_logprobs") or [])
                    ],
                )
            )
        return text, tokens

    def _stream_usage(self, usage: Any) -> Usage:
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            prompt_cost, completion_cost = _litellm().cost_per_token(
                model=self.id, prompt_tokens=prompt, completion_tokens=completion
            )
            cost = float(prompt_cost + completion_cost)
        except Exception:
            cost = 0.0  # a model without a known price
        return Usage(calls=1, prompt_tokens=prompt, completion_tokens=completion, cost=cost)

    @staticmethod
    def _continuation_prompt(request: GenerateRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        if request.messages is not None:
            # A partial assistant turn over a plain completions endpoint: a simple transcript.
            turns = [f"{m.role}: {m.content}" for m in request.messages]
            return "\n".join(turns)
        raise BadRequestError("token-id prefixes need a local model with a tokenizer")

    def _usage(self, response: Any) -> Usage:
        usage = getattr(response, "usage", None)
        cost = 0.0
        try:
            cost = float(_litellm().completion_cost(completion_response=response) or 0.0)
        except Exception:
            cost = 0.0
        return Usage(
            calls=1,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost=cost,
        )

    def _parse(self, response: Any, request: GenerateRequest, *, chat: bool) -> list[GenerateResult]:
        choices = sorted(response.choices, key=lambda c: getattr(c, "index", 0) or 0)
        results = [self._chat_choice(c, request) if chat else self._text_choice(c, request) for c in choices]
        for result, usage in zip(results, share_usage(self._usage(response), results, self.id), strict=True):
            result.usage = usage
        return results

    def _chat_choice(self, choice: Any, request: GenerateRequest) -> GenerateResult:
        tokens: list[TokenInfo] = []
        content = (
            getattr(getattr(choice, "logprobs", None), "content", None) if request.wants_logprobs else None
        )
        for item in content or []:
            item = item if isinstance(item, dict) else item.model_dump()
            tokens.append(
                TokenInfo(
                    token=item["token"],
                    logprob=item.get("logprob"),
                    top=[
                        TopLogprob(token=t["token"], logprob=t["logprob"])
                        for t in (item.get("top_logprobs") or [])
                    ],
                )
            )
        calls = [
            ToolCall(
                id=str(getattr(call, "id", None) or f"call_{i}"),
                name=call.function.name or "",
                arguments=call.function.arguments or "{}",
            )
            for i, call in enumerate(getattr(choice.message, "tool_calls", None) or [])
        ]
        return GenerateResult(
            model=self.id,
            text=choice.message.content or "",
            tokens=tokens,
            finish_reason="tool_calls" if calls else _finish(choice.finish_reason),
            tool_calls=calls,
        )

    def _text_choice(self, choice: Any, request: GenerateRequest) -> GenerateResult:
        tokens: list[TokenInfo] = []
        lp = getattr(choice, "logprobs", None) if request.wants_logprobs else None
        if lp is not None:
            lp = lp if isinstance(lp, dict) else lp.model_dump()
            tops = lp.get("top_logprobs") or [None] * len(lp.get("tokens") or [])
            for token, logprob, top in zip(
                lp.get("tokens") or [], lp.get("token_logprobs") or [], tops, strict=False
            ):
                alternatives = sorted((top or {}).items(), key=lambda kv: -kv[1])
                tokens.append(
                    TokenInfo(
                        token=token,
                        logprob=logprob,
                        top=[TopLogprob(token=t, logprob=v) for t, v in alternatives[: request.top_logprobs]],
                    )
                )
        return GenerateResult(
            model=self.id, text=choice.text or "", tokens=tokens, finish_reason=_finish(choice.finish_reason)
        )


def share_usage(total: Usage, results: list[GenerateResult], model_id: str) -> list[Usage]:
    """``total`` (one reply's usage) shared out among the reply's choices so that the shares add
    up to it: one call each; the prompt's tokens evenly; the completion tokens in proportion to
    each choice's tokens (exact when the reply has logprobs) or else its text's length; the cost
    in proportion to what each share would cost at the model's price (else to its tokens)."""
    if len(results) == 1:
        return [total]
    prompts = _apportion(total.prompt_tokens, [1.0] * len(results))
    exact = all(r.tokens for r in results)
    completions = _apportion(
        total.completion_tokens, [float(len(r.tokens) if exact else len(r.text)) for r in results]
    )
    weights: list[float] = []
    try:
        for prompt, completion in zip(prompts, completions, strict=True):
            a, b = _litellm().cost_per_token(
                model=model_id, prompt_tokens=prompt, completion_tokens=completion
            )
            weights.append(float(a + b))
    except Exception:  # a model without a known price
        weights = []
    if not weights or sum(weights) <= 0:
        weights = [float(p + c) for p, c in zip(prompts, completions, strict=True)]
    whole = sum(weights)
    return [
        Usage(
            calls=1,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=total.cost * (weight / whole if whole > 0 else 1 / len(results)),
        )
        for prompt, completion, weight in zip(prompts, completions, weights, strict=True)
    ]


def _apportion(total: int, weights: list[float]) -> list[int]:
    """``total`` split into whole shares in proportion to ``weights`` (largest remainders; equal
    shares when every weight is 0); the shares add up to ``total``."""
    whole = sum(weights)
    if whole <= 0:
        weights, whole = [1.0] * len(weights), float(len(weights))
    exact = [total * w / whole for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def sampling_params(
    request: GenerateRequest, model_id: str, provider: str, api_base: str | None
) -> dict[str, Any]:
    """top-p, top-k, min-p and the penalties of ``request`` as ``provider``'s API takes them.

    A self-hosted OpenAI-compatible server gets all of them, forkpath's defaults included, in
    the request body (``extra_body``) under its own names; any other provider gets the values
    that differ from the neutral defaults, and a value it cannot take raises
    :class:`~forkpath.BadRequestError` naming the parameter and the provider.
    """
    params, refused = _sampling(request, model_id, provider, api_base)
    if refused is not None:
        reason, field, neutral = refused
        raise BadRequestError(f"{reason}. Leave {field} at {neutral}.", model=model_id)
    return params


def _sampling(
    request: GenerateRequest, model_id: str, provider: str, api_base: str | None
) -> tuple[dict[str, Any], tuple[str, str, float] | None]:
    """:func:`sampling_params`' parameters, or why the provider refuses one: ``(reason, field,
    neutral value)`` for the first setting it does not take."""
    self_hosted = api_base is not None and provider in _OPENAI_COMPATIBLE
    if provider in ("hosted_vllm", "vllm"):
        names = _EXTRA_NAMES[provider]
    else:
        names = _EXTRA_NAMES["self-hosted"] if self_hosted else _EXTRA_NAMES.get(provider, {})
    params: dict[str, Any] = {"top_p": request.top_p}
    extra: dict[str, Any] = {}
    for field, neutral in _NEUTRAL.items():
        value = getattr(request, field)
        if field in names and (self_hosted or value != neutral):
            if field == "top_k" and value == 0 and provider in ("hosted_vllm", "vllm"):
                value = -1  # vLLM's "off" (older releases reject 0)
            for name in names[field]:
                (extra if self_hosted else params)[name] = value
        elif field in ("presence_penalty", "frequency_penalty") and (
            self_hosted or (value != neutral and field in _openai_params(model_id, provider))
        ):
            params[field] = value
        elif value != neutral:
            penalties = [
                f
                for f in ("presence_penalty", "frequency_penalty")
                if f in _openai_params(model_id, provider)
            ]
            takes = ", ".join(["top_p", *names, *penalties])
            reason = f"provider {provider!r} does not take {field} (asked for {value}); it takes {takes}"
            return params, (reason, field, neutral)
    if extra:
        params["extra_body"] = extra
    return params, None


def _openai_params(model_id: str, provider: str) -> list[str]:
    """The OpenAI parameters litellm passes on to ``provider`` (empty if it does not know)."""
    try:
        return list(
            _litellm().get_supported_openai_params(model=model_id, custom_llm_provider=provider) or []
        )
    except Exception:
        return []


def _finish(reason: str | None) -> FinishReason:
    if reason in ("stop", "eos", "stop_sequence", "end_turn"):
        return "stop"
    if reason in ("length", "max_tokens"):
        return "length"
    return "unknown"


def translate_error(error: Exception, model_id: str) -> ModelError:
    """Map a litellm/provider exception onto forkpath's error tree (one line, names the model)."""
    litellm = _litellm()
    ex = litellm.exceptions
    message = str(getattr(error, "message", None) or error).strip().splitlines()[0][:300]
    table: list[tuple[Any, type[ModelError]]] = [
        (ex.ContextWindowExceededError, ContextWindowError),
        (ex.RateLimitError, RateLimitError),
        (ex.Timeout, ModelTimeoutError),
        (ex.AuthenticationError, AuthenticationError),
        (ex.PermissionDeniedError, AuthenticationError),
        (ex.NotFoundError, ModelNotFoundError),
        (ex.APIConnectionError, ModelUnavailableError),
        (ex.ServiceUnavailableError, ServerError),
        (ex.InternalServerError, ServerError),
        (ex.BadRequestError, BadRequestError),
    ]
    if _is_connection_error(error):
        # litellm reports a refused connection as an InternalServerError; it is not a 5xx.
        return ModelUnavailableError(f"cannot reach the server: {message}", model=model_id)
    for vendor, ours in table:
        if isinstance(error, vendor):
            if ours is ModelUnavailableError:
                message = f"cannot reach the server: {message}"
            return ours(message, model=model_id)
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return ServerError(message, model=model_id)
    return ModelError(f"{type(error).__name__}: {message}", model=model_id)


def _is_connection_error(error: BaseException) -> bool:
    import httpx

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (
            isinstance(current, httpx.ConnectError | ConnectionError)
            or type(current).__name__ == "APIConnectionError"
        ):
            return True
        current = current.__cause__ or current.__context__
    return "Connection error" in str(error)
