"""A model under a constraint: every request it serves, and every token-level call, obeys it.

:func:`constrained` is how a constraint reaches a whole strategy (a flow node's
``constraint:`` uses it): strategies keep calling ``generate`` and the token-level methods, and
never learn about the constraint.

- ``generate`` / ``stream`` add the constraint to requests that have none. A request that
  continues a token prefix (``prompt_tokens`` starting with a prompt this model made with
  ``chat_prefix``) carries the part already generated in ``constraint_prefix``, so the
  constraint applies to the whole answer, not just its new tokens.
- ``next_token_logprobs`` and ``continuation_logprobs`` return the constrained distribution
  (tokens the constraint forbids at -inf, the rest renormalised). The answer so far is what
  follows the longest prompt this model handed out through ``chat_prefix``. Token tree search
  then branches only on allowed tokens, and speculative decoding drafts and verifies under the
  same mask (both distributions are restricted to the same tokens, so it stays exact).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from forkpath._errors import ConfigError
from forkpath.models._base import Model, TokenModel
from forkpath.models._constraints import Constraint, TokenMatcher, generic_matcher
from forkpath.models._sampling import apply_mask
from forkpath.models._types import GenerateChunk, GenerateRequest, GenerateResult
from forkpath.models._uncertainty import log_softmax


class ConstrainedModel(Model):
    """``inner`` with ``constraint`` on every request (see the module docstring)."""

    def __init__(
        self, inner: Model, constraint: Constraint, prompts: set[tuple[int, ...]] | None = None
    ) -> None:
        super().__init__(
            inner.id, inner.capabilities, max_concurrency=inner.max_concurrency, retry=inner.retry
        )
        self.inner = inner
        self.constraint = constraint
        self._prompts: set[tuple[int, ...]] = set() if prompts is None else prompts

    def __repr__(self) -> str:
        return f"constrained({self.inner!r}, {self.constraint.kind})"

    @property
    def cache_identity(self) -> str:
        return self.inner.cache_identity

    def _constrain(self, request: GenerateRequest) -> GenerateRequest:
        if request.constraint is not None:
            return request
        update: dict[str, Any] = {"constraint": self.constraint}
        if request.prompt_tokens is not None:
            prompt = self._prompt_of(request.prompt_tokens)
            if prompt is not None:
                update["constraint_prefix"] = len(request.prompt_tokens) - len(prompt)
        return request.model_copy(update=update)

    def _prompt_of(self, tokens: Sequence[int]) -> tuple[int, ...] | None:
        """The longest prompt handed out by ``chat_prefix`` that ``tokens`` start with."""
        starts = [p for p in self._prompts if len(p) <= len(tokens) and tuple(tokens[: len(p)]) == p]
        return max(starts, key=len, default=None)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        return await self.inner.generate(self._constrain(request))

    async def stream(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        async for chunk in self.inner.stream(self._constrain(request)):
            yield chunk

    async def _generate(self, request: GenerateRequest) -> GenerateResult:  # pragma: no cover
        return await self.inner.generate(self._constrain(request))

    async def aclose(self) -> None:
        await self.inner.aclose()


class ConstrainedTokenModel(ConstrainedModel):
    """A constrained :class:`TokenModel`: the token-level calls see the constrained distribution."""

    def __init__(
        self, inner: Model, constraint: Constraint, prompts: set[tuple[int, ...]] | None = None
    ) -> None:
        super().__init__(inner, constraint, prompts)
        assert isinstance(inner, TokenModel)
        self.tm: TokenModel = inner
        self._states: dict[tuple[tuple[int, ...], tuple[int, ...]], TokenMatcher] = {}

    @property
    def end_tokens(self) -> frozenset[int]:
        return self.tm.end_tokens

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self.tm.tokenize(text, special=special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tm.detokenize(tokens)

    def chat_prefix(self, messages: Sequence[Any]) -> list[int]:
        ids = self.tm.chat_prefix(messages)
        self._prompts.add(tuple(ids))
        return ids

    def _new_matcher(self) -> TokenMatcher:
        make = getattr(self.inner, "token_matcher", None)
        if make is not None:
            probe = GenerateRequest(prompt="", constraint=self.constraint)
            matcher: TokenMatcher | None = make(probe)
            assert matcher is not None
            return matcher
        return generic_matcher(
            self.constraint, self.tm, self.inner.capabilities.tokenizer_id or self.inner.id
        )

    def _state(self, prefix: Sequence[int]) -> TokenMatcher:
        """The constraint's state after ``prefix`` (prompt + the answer so far)."""
        prompt = self._prompt_of(prefix)
        if prompt is None:
            raise ConfigError(
                f"constrained {self.inner.id}: a token-level call on a prefix that starts with no prompt "
                "from this model's chat_prefix, so where the answer starts is unknown"
            )
        answer = tuple(prefix[len(prompt) :])
        cut = len(answer)
        while cut > 0 and (prompt, answer[:cut]) not in self._states:
            cut -= 1
        state = self._states.get((prompt, answer[:cut])) or self._new_matcher()
        self._states.setdefault((prompt, answer[:cut]), state)
        for i in range(cut, len(answer)):
            state = state.copy()
            state.advance(answer[i])
            self._states[(prompt, answer[: i + 1])] = state
        return state

    def _masked(self, logprobs: np.ndarray, prefix: Sequence[int]) -> np.ndarray:
        state = self._state(prefix)
        if state.finished:
            allowed = np.zeros(logprobs.shape[-1], dtype=bool)
            allowed[list(self.tm.end_tokens)] = True
        else:
            allowed = state.allowed()
        return log_softmax(apply_mask(logprobs, allowed))

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        return self._masked(await self.tm.next_token_logprobs(prefix), prefix)

    async def continuation_logprobs(self, prefix: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        rows = await self.tm.continuation_logprobs(prefix, continuation)
        out = np.empty(rows.shape, dtype=np.float64)
        for i in range(rows.shape[0]):
            out[i] = self._masked(rows[i], [*prefix, *continuation[:i]])
        return out


def constrained(
    model: Model, constraint: Constraint | dict[str, Any], *, prompts: set[tuple[int, ...]] | None = None
) -> Model:
    """``model`` with ``constraint`` on everything it generates (token-level calls included).

    Models that work on one answer together (speculative decoding's drafter and target) share
    ``prompts``: the prompts any of them made, so each knows where the answer starts.

    Example:
        >>> yes_no = constrained(get_model("local/smollm2-135m"), {"regex": "(yes|no)"})
    """
    spec = constraint if isinstance(constraint, Constraint) else Constraint.model_validate(constraint)
    if isinstance(model, TokenModel):
        return ConstrainedTokenModel(model, spec, prompts)
    return ConstrainedModel(model, spec, prompts)
