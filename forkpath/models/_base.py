"""The one base class every model backend implements.

A backend implements :meth:`Model._generate` (one request in, one result out) and declares its
:class:`ModelCapabilities`. The public :meth:`Model.generate` wraps that with what every backend
shares: the generation cache, retries of transient failures, a concurrency limit, latency and
usage accounting. Backends that expose token-level state (local GGUF models, the fake model)
also implement :class:`TokenModel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from forkpath._concurrency import gather_all
from forkpath._errors import CapabilityError, ModelError, is_retryable
from forkpath._trace import ModelCallEvent, emit
from forkpath.models._types import GenerateChunk, GenerateRequest, GenerateResult, ModelCapabilities, Usage
from forkpath.models._usage import record_usage

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """How transient failures (rate limit, timeout, connection, 5xx) are retried."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=4, ge=1)
    """Attempts in all, the first included."""
    initial_wait_s: float = Field(default=0.5, ge=0)
    """First backoff; doubles per attempt, with jitter."""
    max_wait_s: float = Field(default=8.0, ge=0)
    """Cap on one backoff."""


@runtime_checkable
class GenerationCache(Protocol):
    """Where :meth:`Model.generate` looks up and stores results by canonical request key."""

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any]) -> None: ...


class Model(ABC):
    """A model that generates text; subclasses implement :meth:`_generate`.

    Args:
        model_id: the name this model is known by (``local/smollm2-135m``, ``openai/gpt-4o``).
        capabilities: what it can return.
        max_concurrency: calls in flight at once through this instance.
        retry: retry policy for transient failures.
        cache: optional generation cache (the store's); ``None`` disables caching.
    """

    def __init__(
        self,
        model_id: str,
        capabilities: ModelCapabilities,
        *,
        max_concurrency: int = 4,
        retry: RetryPolicy | None = None,
        cache: GenerationCache | None = None,
    ) -> None:
        self.id = model_id
        self.capabilities = capabilities
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.max_concurrency = max_concurrency
        self.sampling_defaults: dict[str, Any] = {}
        """Sampler settings applied to requests that leave them unset (the ``sampling`` option)."""
        # One semaphore per event loop: a model may outlive a loop (run_sync twice, a test per loop).
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"

    @property
    def cache_identity(self) -> str:
        """What names this model in cache keys: its id, plus the server for self-hosted endpoints
        (two servers under one model name are two models)."""
        return self.id

    @abstractmethod
    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        """Run one request against the backend; raise errors from :mod:`forkpath._errors`."""

    async def _stream(self, request: GenerateRequest) -> AsyncGenerator[GenerateChunk, None]:
        """Yield the generation as it is produced, the last chunk carrying the whole result.

        Backends that decode token by token override this; the default (one chunk at the end)
        serves the ones that cannot stream.
        """
        result = await self._generate(request)
        yield GenerateChunk(text=result.text, tokens=result.tokens, result=result)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        """Generate for one request, through the cache, retries and the concurrency limit.

        A ``constraint`` this backend cannot enforce while decoding (its
        ``constrained_decoding`` capability) is met by sampling and verifying
        (:meth:`_generate_verified`).
        """
        request = self.with_sampling_defaults(request)
        if request.constraint is not None and not self._enforces(request):
            return await self._generate_verified(request)
        return await self._generate_once(request)

    def with_sampling_defaults(self, request: GenerateRequest) -> GenerateRequest:
        """``request`` with this model's sampler defaults in the fields it does not set."""
        update = {k: v for k, v in self.sampling_defaults.items() if k not in request.model_fields_set}
        return request.model_copy(update=update) if update else request

    def _enforces(self, request: GenerateRequest) -> bool:
        """Whether this backend itself makes every output meet ``request.constraint`` (token
        masks); a provider's JSON mode is trusted less: its outputs are verified too."""
        return self.capabilities.constrained_decoding == "tokens"

    async def _generate_verified(self, request: GenerateRequest) -> GenerateResult:
        """Sample and verify: up to ``constraint.max_tries`` attempts, the first output that
        satisfies the constraint wins; none does: :class:`ModelError` naming the constraint.
        A JSON schema goes to a provider that takes one (``constrained_decoding: json_schema``)
        with each attempt; other constraints are not sent, only checked.

        Attempt ``a`` of sample ``i`` is sample ``i * max_tries + a`` of the unconstrained
        request (so N constrained samples stay N distinct, replayable ones); a greedy request
        is retried at temperature 0.7 after its first attempt.
        """
        constraint = request.constraint
        assert constraint is not None
        native = self.capabilities.constrained_decoding == "json_schema" and constraint.kind == "json_schema"
        tries = constraint.max_tries
        attempt_text = ""
        for attempt in range(tries):
            plain = request.model_copy(
                update={
                    "constraint": constraint if native else None,
                    "sample_index": request.sample_index * tries + attempt,
                    "temperature": request.temperature or (0.7 if attempt else 0.0),
                }
            )
            result = await self._generate_once(plain)
            if constraint.accepts(result.text):
                return result
            attempt_text = result.text
        raise ModelError(
            f"no output met the {constraint.kind} constraint in {tries} attempts "
            f"(sample and verify; last output {attempt_text[:80]!r})",
            model=self.id,
        )

    async def _generate_once(self, request: GenerateRequest) -> GenerateResult:
        self.check_request(request)
        key = request.cache_key(self.cache_identity) if self.cache is not None else None
        hit = await self._cached(key)
        if hit is not None:
            self._account(hit, request)
            return hit
        result = await self._generate_with_retries(request)
        await self._remember(key, result)
        self._account(result, request)
        return result

    async def stream(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        """Generate for one request, yielding text as it is produced; the last chunk carries the
        :class:`GenerateResult` (usage, finish reason), accounted and cached like :meth:`generate`.

        A cache hit is one chunk. A transient failure before the first chunk is retried as
        :meth:`generate` retries; after text has been yielded it is raised. Stopping the iteration
        (``break``, cancellation, a closed connection) stops the backend's decoding.

        Example:
            >>> async for chunk in model.stream(request):
            ...     print(chunk.text, end="", flush=True)
        """
        request = self.with_sampling_defaults(request)
        if request.constraint is not None and not self._enforces(request):
            verified = await self._generate_verified(request)  # only a verified output is shown
            yield GenerateChunk(text=verified.text, tokens=verified.tokens, result=verified)
            return
        self.check_request(request)
        key = request.cache_key(self.cache_identity) if self.cache is not None else None
        hit = await self._cached(key)
        if hit is not None:
            self._account(hit, request)
            yield GenerateChunk(text=hit.text, tokens=hit.tokens, result=hit)
            return
        attempt = 0
        while True:
            attempt += 1
            yielded = False
            try:
                async with self._semaphore(), contextlib.aclosing(self._stream(request)) as chunks:
                    started, started_at = time.perf_counter(), time.time()
                    async for chunk in chunks:
                        if chunk.result is not None:
                            chunk.result.latency_s = time.perf_counter() - started
                            chunk.result.started_at = started_at
                            await self._remember(key, chunk.result)
                            self._account(chunk.result, request)
                        yielded = True
                        yield chunk
                return
            except Exception as e:
                if yielded or not is_retryable(e) or attempt >= self.retry.max_attempts:
                    raise
                await asyncio.sleep(
                    min(self.retry.max_wait_s, self.retry.initial_wait_s * 2 ** (attempt - 1))
                )

    async def _cached(self, key: str | None) -> GenerateResult | None:
        """The cached result under ``key`` as a free replay (no tokens spent), or None."""
        if self.cache is None or key is None:
            return None
        hit = await self.cache.get(key)
        if hit is None:
            return None
        original = GenerateResult.model_validate(hit)
        result = original.model_copy(update={"cached": True, "latency_s": 0.0})
        paid = original.usage
        result.usage = Usage(
            cached_calls=1,
            replayed_prompt_tokens=paid.prompt_tokens + paid.replayed_prompt_tokens,
            replayed_completion_tokens=paid.completion_tokens + paid.replayed_completion_tokens,
            replayed_cost=paid.cost + paid.replayed_cost,
            replayed_seconds=original.latency_s + paid.replayed_seconds,
            replayed_spans=paid.replayed_spans
            + (
                ((original.started_at, original.started_at + original.latency_s),)
                if original.started_at is not None
                else ()
            ),
        )
        return result

    async def _remember(self, key: str | None, result: GenerateResult) -> None:
        if self.cache is not None and key is not None:
            await self.cache.put(key, result.model_dump(mode="json"))

    @staticmethod
    def _account(result: GenerateResult, request: GenerateRequest) -> None:
        record_usage(result)
        emit(
            ModelCallEvent(
                model=result.model,
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                latency_s=result.latency_s,
                cached=result.cached,
                cost=result.usage.cost,
                sample_index=request.sample_index,
                finish_reason=result.finish_reason,
            )
        )

    async def generate_n(self, request: GenerateRequest, n: int) -> list[GenerateResult]:
        """N samples of one request: sample indexes ``request.sample_index .. + n - 1``."""
        requests = [request.model_copy(update={"sample_index": request.sample_index + i}) for i in range(n)]
        return await gather_all(*(self.generate(r) for r in requests))

    async def _generate_with_retries(self, request: GenerateRequest) -> GenerateResult:
        async def once() -> GenerateResult:
            started, started_at = time.perf_counter(), time.time()
            result = await self._generate(request)
            result.latency_s = time.perf_counter() - started
            result.started_at = started_at
            return result

        return await self._with_retries(once)

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` under the concurrency limit, retried by the retry policy on transient errors."""
        policy = self.retry
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait_exponential_jitter(initial=policy.initial_wait_s, max=policy.max_wait_s),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._semaphore():
                    result = await call()
        return result

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrency)
        return semaphore

    def check_request(self, request: GenerateRequest) -> None:
        """Raise :class:`CapabilityError` if this model cannot serve ``request``."""
        caps = self.capabilities
        if request.top_logprobs > caps.top_logprobs:
            have = f"at most {caps.top_logprobs}" if caps.top_logprobs else "none"
            raise CapabilityError(
                f"model {self.id} cannot return {request.top_logprobs} top logprobs per token ({have})"
            )
        if request.logprobs and not caps.logprobs:
            raise CapabilityError(f"model {self.id} does not return token logprobs")
        if request.prompt_tokens is not None and not isinstance(self, TokenModel):
            raise CapabilityError(f"model {self.id} cannot continue a token-id prefix (no tokenizer access)")
        if request.is_continuation and not caps.prefix_continuation:
            raise CapabilityError(f"model {self.id} cannot continue a prefix (chat-only endpoint)")
        if request.tools and not caps.tool_calls:
            raise CapabilityError(
                f"model {self.id} cannot call tools (its API or chat template has no tool calls)"
            )

    def require(self, needs: ModelCapabilities, *, by: str) -> None:
        """Fail at configuration time if this model lacks what ``by`` (a component name) needs."""
        check_capabilities(self.capabilities, needs, model_id=self.id, by=by)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release what the backend holds (servers, threads)."""


def check_capabilities(caps: ModelCapabilities, needs: ModelCapabilities, *, model_id: str, by: str) -> None:
    """Raise :class:`CapabilityError` naming ``by`` and ``model_id`` if ``caps`` lack anything in ``needs``."""
    missing: list[str] = []
    if needs.logprobs and not caps.logprobs:
        missing.append("token logprobs")
    if needs.top_logprobs > caps.top_logprobs:
        missing.append(f"top-{needs.top_logprobs} logprobs (has {caps.top_logprobs})")
    if needs.full_distribution and not caps.full_distribution:
        missing.append("the full next-token distribution")
    if needs.prefix_continuation and not caps.prefix_continuation:
        missing.append("prefix continuation")
    if needs.prompt_scoring and not caps.prompt_scoring:
        missing.append("prompt scoring")
    if needs.tool_calls and not caps.tool_calls:
        missing.append("tool calls")
    if needs.batch_invariant and not caps.batch_invariant:
        missing.append("batch-invariant logits (load a local model with batch_invariant: true)")
    if missing:
        raise CapabilityError(f"{by} needs {', '.join(missing)}, which model {model_id} does not provide")


@runtime_checkable
class TokenModel(Protocol):
    """Token-level access: local GGUF models and the fake model (capabilities C3, C4 and C5).

    Calls through this protocol bypass :meth:`Model.generate`; a strategy that makes them
    records their cost with :func:`forkpath.models.charge`.
    """

    @property
    def end_tokens(self) -> frozenset[int]:
        """Token ids that end an answer (end of sequence, end of turn)."""
        ...

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        """Log-probabilities over the whole vocabulary of the token after ``prefix``."""
        ...

    async def continuation_logprobs(self, prefix: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        """Teacher forcing: row ``i`` holds the log-probabilities of the token after
        ``prefix + continuation[:i]``; ``len(continuation) + 1`` rows."""
        ...

    def chat_prefix(self, messages: Sequence[Any]) -> list[int]:
        """Token ids of the chat template applied to ``messages``, ready for generation."""
        ...


def require_shared_tokenizer(a: Model, b: Model, *, by: str) -> None:
    """Fail unless ``a`` and ``b`` have the same vocabulary (token-level mixing needs it)."""
    ta, tb = a.capabilities.tokenizer_id, b.capabilities.tokenizer_id
    if ta is None or tb is None or ta != tb:
        raise CapabilityError(
            f"{by} needs two models with a shared tokenizer; {a.id} has {ta or 'an unknown tokenizer'}, "
            f"{b.id} has {tb or 'an unknown tokenizer'}"
        )
