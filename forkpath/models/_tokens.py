"""Token-level helpers for strategies that drive a model position by position.

Strategies such as token routing, speculative decoding, SED and AdaDec call a
:class:`~forkpath.models.TokenModel`'s ``next_token_logprobs`` and ``continuation_logprobs``
directly. Those calls bypass :meth:`Model.generate`, so :func:`charge` records their usage into
the open meters and budgets and emits a :class:`~forkpath._trace.ModelCallEvent`, exactly as a
generation does: ``prompt_tokens`` counts the tokens a call had to evaluate (prefill) and
``completion_tokens`` the tokens of the output that model contributed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forkpath._errors import CapabilityError
from forkpath._trace import ModelCallEvent, emit
from forkpath.models._base import Model, TokenModel
from forkpath.models._types import GenerateResult, Usage
from forkpath.models._usage import record_usage

TEACHER_FORCING_CHUNK = 256
"""Most positions scored in one batch (llama.cpp's default batch is 512 tokens)."""


def token_model(model: Model, *, by: str) -> TokenModel:
    """``model`` as a :class:`TokenModel`, or a :class:`CapabilityError` naming ``by``."""
    if not isinstance(model, TokenModel):
        raise CapabilityError(
            f"{by} needs token-level access (next-token distributions and prefix continuation, e.g. a "
            f"local GGUF model); model {model.id} has none"
        )
    return model


def charge(
    model: Model,
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    calls: int = 1,
    latency_s: float = 0.0,
) -> None:
    """Record a token-level call's usage into the open meters and budgets, and trace it."""
    usage = Usage(calls=calls, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    record_usage(GenerateResult(model=model.id, text="", usage=usage))
    emit(
        ModelCallEvent(
            model=model.id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency_s,
            cached=False,
            calls=calls,
            finish_reason="token_level",
        )
    )


async def teacher_force(
    model: Model, prefix: Sequence[int], continuation: Sequence[int], *, chunk: int = TEACHER_FORCING_CHUNK
) -> np.ndarray:
    """Log-probabilities over the vocabulary after ``prefix + continuation[:i]`` for every ``i``.

    Returns ``len(continuation) + 1`` rows, in batches of at most ``chunk`` positions through
    the model's ``continuation_logprobs``.
    """
    tm = token_model(model, by="teacher forcing")
    parts: list[np.ndarray] = []
    start = 0
    while True:
        end = min(start + chunk, len(continuation))
        block = await tm.continuation_logprobs([*prefix, *continuation[:start]], continuation[start:end])
        last = end == len(continuation)
        parts.append(block if last else block[:-1])
        if last:
            return np.concatenate(parts, axis=0)
        start = end
