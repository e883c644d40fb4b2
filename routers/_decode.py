"""Token-level helpers shared by the routing strategies and the label pipeline.

The strategies drive two models token by token through :class:`~forkpath.models.TokenModel`
(``next_token_logprobs``, and ``continuation_logprobs`` for batched teacher forcing where the
backend has it). Those calls bypass :meth:`Model.generate`, so :func:`charge` records their usage
into the open meters and budgets the same way: ``prompt_tokens`` counts the tokens a call had to
evaluate (prefill) and ``completion_tokens`` the tokens of the output that model contributed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forkpath._errors import CapabilityError, ConfigError
from forkpath.models import GenerateResult, Model, TokenModel, Usage
from forkpath.models._usage import record_usage

TEACHER_FORCING_CHUNK = 256
"""Most positions scored in one batch (llama.cpp's default batch is 512 tokens)."""


def token_model(model: Model, *, by: str) -> TokenModel:
    """``model`` as a :class:`TokenModel`, or a :class:`CapabilityError` naming ``by``."""
    if not isinstance(model, TokenModel):
        raise CapabilityError(
            f"{by} needs token-level access (a local GGUF or fake model); {model.id} has none"
        )
    return model


def end_tokens(model: Model) -> frozenset[int]:
    """Token ids that end an answer (end of sequence / end of turn) for a token-level model."""
    ends = getattr(model, "end_tokens", None)
    if ends is not None:
        return frozenset(ends)
    engine = getattr(model, "_engine", None)
    if engine is not None and hasattr(engine, "eot"):
        return frozenset(int(t) for t in engine.eot)
    from forkpath.models._fake import END, FakeModel

    if isinstance(model, FakeModel):
        return frozenset({END})
    raise CapabilityError(f"cannot tell which tokens end an answer for {model.id}")


def charge(model: Model, *, prompt_tokens: int = 0, completion_tokens: int = 0, calls: int = 1) -> None:
    """Record a token-level call's usage into the open usage meters and budgets."""
    record_usage(
        GenerateResult(
            model=model.id,
            text="",
            usage=Usage(calls=calls, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        )
    )


async def teacher_force(
    model: Model, prefix: Sequence[int], continuation: Sequence[int], *, chunk: int = TEACHER_FORCING_CHUNK
) -> np.ndarray:
    """Log-probabilities over the vocabulary after ``prefix + continuation[:i]`` for every ``i``.

    Returns ``len(continuation) + 1`` rows. Uses the backend's batched ``continuation_logprobs``
    when it has one (one forward pass per ``chunk`` positions), else one call per position.
    """
    tm = token_model(model, by="teacher forcing")
    batched = getattr(model, "continuation_logprobs", None)
    if batched is None:
        rows = [
            await tm.next_token_logprobs([*prefix, *continuation[:i]]) for i in range(len(continuation) + 1)
        ]
        return np.stack(rows)
    parts: list[np.ndarray] = []
    start = 0
    while True:
        end = min(start + chunk, len(continuation))
        block: np.ndarray = await batched([*prefix, *continuation[:start]], continuation[start:end])
        last = end == len(continuation)
        parts.append(block if last else block[:-1])
        if last:
            return np.concatenate(parts, axis=0)
        start = end


def processed_probs(logprobs: np.ndarray, temperature: float, top_p: float = 1.0) -> np.ndarray:
    """The sampling distribution after temperature and nucleus (top-p) processing (float64).

    Speculative sampling is exact only for processed distributions, so the draft and the target
    go through this same function.
    """
    if temperature <= 0.0:
        raise ConfigError("processed_probs is for sampling; greedy decoding takes the argmax")
    scaled = np.asarray(logprobs, dtype=np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        keep = np.cumsum(probs[order]) - probs[order] < top_p
        mask = np.zeros_like(probs)
        mask[order[keep]] = 1.0
        probs = probs * mask
        probs /= probs.sum()
    return probs


def choose(logprobs: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """The next token: the argmax when greedy, else a draw from the processed distribution."""
    if temperature <= 0.0:
        return int(np.argmax(logprobs))
    probs = processed_probs(logprobs, temperature, top_p)
    return int(rng.choice(probs.size, p=probs))
