"""Backend ``litellm``: any provider litellm knows, and any OpenAI-compatible server.

litellm is imported on first use (it takes seconds), never at ``import forkpath``. Chat requests
go to ``acompletion``; raw prefixes and partial assistant turns go to ``atext_completion``
(the legacy ``/v1/completions`` endpoint that vLLM and llama.cpp servers keep), which is what
prefix continuation needs. Vendor exceptions are translated into forkpath's error tree here.
"""

from __future__ import annotations

import os
from typing import Any

from forkpath._errors import (
    AuthenticationError,
    BadRequestError,
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
    GenerateRequest,
    GenerateResult,
    ModelCapabilities,
    TokenInfo,
    ToolCall,
    TopLogprob,
    Usage,
)

# Providers whose text-completion endpoint continues arbitrary prefixes.
_COMPLETION_PROVIDERS = {"openai", "text-completion-openai", "hosted_vllm", "vllm", "openai_like"}
# Providers that return no logprobs at all.
_NO_LOGPROBS = {"anthropic", "bedrock", "vertex_ai", "gemini", "cohere"}


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
    if provider in _NO_LOGPROBS or "/o1" in model_id or "/o3" in model_id:
        return ModelCapabilities(prefix_continuation=False, tool_calls=True)
    continuation = provider in _COMPLETION_PROVIDERS and (api_base is not None or provider != "openai")
    return ModelCapabilities(
        logprobs=True, top_logprobs=20, prefix_continuation=continuation, tool_calls=True
    )


def capabilities_for(model_id: str, api_base: str | None = None) -> ModelCapabilities:
    """What forkpath assumes ``model_id`` returns, from its provider (raises for unknown models)."""
    litellm = _litellm()
    try:
        _, provider, _, _ = litellm.get_llm_provider(model_id, api_base=api_base)
    except Exception as e:  # litellm raises a bare BadRequestError for unknown providers
        raise UnknownNameError(
            f"unknown model {model_id!r}: litellm knows no provider for it "
            "(use provider/model, e.g. openai/gpt-4o-mini, or local/..., llamacpp/<path.gguf>)"
        ) from e
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
    """

    def __init__(
        self,
        model_id: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        capabilities: ModelCapabilities | None = None,
        **options: Any,
    ) -> None:
        guessed = capabilities_for(model_id, api_base)
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
            "top_p": request.top_p,
            "timeout": self.timeout_s,
            "num_retries": 0,  # forkpath retries, with its own policy
        }
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed + request.sample_index
        if self.api_base:
            params["api_base"] = self.api_base
        if self._api_key:
            params["api_key"] = self._api_key
        elif self.api_base:
            params["api_key"] = "not-needed"  # self-hosted servers ignore it; litellm insists on one
        return params

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        litellm = _litellm()
        params = self._common_params(request)
        try:
            if request.is_continuation:
                params["prompt"] = self._continuation_prompt(request)
                if request.wants_logprobs:
                    params["logprobs"] = max(request.top_logprobs, 1)
                response = await litellm.atext_completion(**params)
                return self._parse_text(response, request)
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
            response = await litellm.acompletion(**params)
            return self._parse_chat(response, request)
        except ModelError:
            raise
        except Exception as e:
            raise translate_error(e, self.id) from e

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

    def _parse_chat(self, response: Any, request: GenerateRequest) -> GenerateResult:
        choice = response.choices[0]
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
            usage=self._usage(response),
        )

    def _parse_text(self, response: Any, request: GenerateRequest) -> GenerateResult:
        choice = response.choices[0]
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
            model=self.id,
            text=choice.text or "",
            tokens=tokens,
            finish_reason=_finish(choice.finish_reason),
            usage=self._usage(response),
        )


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
