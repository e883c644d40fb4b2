"""The one sampling function: how a next token is drawn from a distribution.

Every token forkpath draws itself goes through here: the llama.cpp decode loop, token routing,
segment offload, speculative decoding and the lookahead decoders. Speculative sampling is exact
only while the draft and the target are processed by the same function, so there is one.

The steps, in llama.cpp's default order (``common_sampler``): penalties on the logits of tokens
already generated, then top-k, top-p (nucleus) and min-p on the probabilities at temperature 1,
then the temperature. A temperature of 0 takes the argmax after the penalties (greedy).

Defaults turn every step off (``top_k=0``, ``top_p=1``, ``min_p=0``, penalties neutral), which
is the model's own distribution; servers often apply their own defaults (llama.cpp's server:
top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1), so the litellm backend sends forkpath's
values explicitly to servers that accept them.

Checked against llama.cpp's own sampler chain (``tests/models/test_sampling.py``: penalties,
top-k, top-p, min-p and temperature through llama-cpp-python's ``llama_sampler_*`` give the same
distribution to 1e-6). Two things a caller must get right to match it:

- **Raw logits.** The repetition penalty divides a positive logit and multiplies a negative
  one, so it depends on the logits' offset: log-probabilities (all negative) are penalised
  differently. Pass the model's raw logits whenever a penalty is set; truncation and temperature
  alone give the same result on either.
- **The history.** llama.cpp penalises the last ``PENALTY_WINDOW`` (64) tokens its sampler has
  accepted. llama-cpp-python (``Llama.generate`` and ``llama_cpp.server``, the server forkpath's
  tests and benches run) accepts only the generated tokens; llama.cpp's C++ server also accepts
  the prompt's. :func:`penalty_history` gives the former, so a local model samples as the
  server does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from forkpath.models._uncertainty import log_softmax

PENALTY_WINDOW = 64
"""How many of the latest tokens the penalties look at (llama.cpp's ``penalty_last_n``)."""


@dataclass(frozen=True)
class Sampling:
    """The sampling settings of one request (see :class:`~forkpath.models.GenerateRequest`)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0

    @property
    def truncated(self) -> bool:
        return self.top_k > 0 or self.top_p < 1.0 or self.min_p > 0.0


def penalty_history(generated: Sequence[int]) -> Sequence[int]:
    """The tokens the penalties of the next draw look at: the last :data:`PENALTY_WINDOW`
    generated tokens (prompt excluded), as llama-cpp-python and its server do."""
    return generated[-PENALTY_WINDOW:]


def penalise(logits: np.ndarray, history: Sequence[int], sampling: Sampling) -> np.ndarray:
    """Logits after the repetition, presence and frequency penalties over ``history``.

    ``logits`` must be raw logits when a repetition penalty is set (see the module docstring).

    Repetition (CTRL, as llama.cpp applies it): a seen token's positive logit is divided by the
    penalty, a negative one multiplied. Presence and frequency (OpenAI's): subtract
    ``presence + frequency * count``. Returns a new float64 array; ``logits`` is not changed.
    """
    out = np.array(logits, dtype=np.float64)
    if not sampling.penalised or not history:
        return out
    ids, counts = np.unique(np.asarray(history, dtype=np.int64), return_counts=True)
    inside = (ids >= 0) & (ids < out.size)
    ids, counts = ids[inside], counts[inside]
    if sampling.repetition_penalty != 1.0:
        seen = out[ids]
        out[ids] = np.where(seen > 0, seen / sampling.repetition_penalty, seen * sampling.repetition_penalty)
    if sampling.presence_penalty or sampling.frequency_penalty:
        out[ids] -= sampling.presence_penalty + sampling.frequency_penalty * counts
    return out


TokenCheck = Callable[[int], bool]
"""Whether one token may come next under a constraint (see :func:`choose_token`)."""


def apply_mask(logits: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """``logits`` with the tokens outside ``allowed`` (a boolean array) at -inf.

    A constraint's mask is applied first, before penalties, truncation and temperature, so
    top-k / top-p choose among the allowed tokens and reported logprobs and entropy are those
    of the constrained distribution. ``None`` allows everything.
    """
    if allowed is None:
        return logits
    if not allowed.any():
        raise ValueError("the constraint allows no token here")
    return np.where(allowed, logits, -np.inf)


def sampling_distribution(
    logits: np.ndarray, sampling: Sampling, history: Sequence[int] = (), *, allowed: np.ndarray | None = None
) -> np.ndarray:
    """The probabilities a token is drawn from (float64, sums to 1) for a sampled request.

    ``logits`` may be raw logits or log-probabilities (the same after normalisation) unless a
    repetition penalty is set: then only raw logits give llama.cpp's distribution. ``allowed``
    (a boolean mask over the vocabulary) restricts the draw to a constraint's tokens.
    """
    if sampling.greedy:
        raise ValueError("sampling_distribution is for sampling; greedy decoding takes the argmax")
    logprobs = log_softmax(penalise(apply_mask(logits, allowed), history, sampling))
    keep = np.ones(logprobs.size, dtype=bool)
    if sampling.truncated:
        probs = np.exp(logprobs)
        order = np.argsort(-probs, kind="stable")
        if sampling.top_k > 0:
            keep[order[sampling.top_k :]] = False
        if sampling.top_p < 1.0:
            ranked = probs[order] * keep[order]
            nucleus = np.cumsum(ranked) - ranked < sampling.top_p * ranked.sum()
            keep[order[~nucleus]] = False
        if sampling.min_p > 0.0:
            keep &= probs >= sampling.min_p * probs.max()
        keep[order[0]] = True  # the most likely token always survives
    keep &= np.isfinite(logprobs)
    scaled = np.where(keep, logprobs / sampling.temperature, -np.inf)
    probs = np.exp(scaled - scaled.max())
    return probs / probs.sum()


def choose_token(
    logits: np.ndarray,
    sampling: Sampling,
    rng: np.random.Generator,
    history: Sequence[int] = (),
    *,
    allowed: np.ndarray | None = None,
    check: TokenCheck | None = None,
    full_mask: Callable[[], np.ndarray] | None = None,
) -> int:
    """The next token: the argmax when greedy (after penalties), else a draw from
    :func:`sampling_distribution`.

    Under a constraint give one of ``allowed`` (the mask of tokens that may come next) or
    ``check`` (asked about single tokens). With ``check`` the token is drawn by adaptive
    rejection sampling (:func:`rejection_choice`): the same distribution as the mask gives,
    found by checking only the tokens drawn. Truncation (top-k, top-p, min-p) ranks tokens
    among the allowed ones, which a check cannot know: pass ``allowed`` for truncated sampling.
    ``full_mask`` (with ``check``) computes the whole mask when rejections pile up.
    """
    if check is not None:
        if allowed is not None or sampling.truncated:
            raise ValueError("rejection sampling takes no mask and no truncation: pass allowed instead")
        return rejection_choice(logits, sampling, rng, history, check, full_mask=full_mask)[0]
    if sampling.greedy:
        masked = apply_mask(logits, allowed)
        return int(np.argmax(penalise(masked, history, sampling) if sampling.penalised else masked))
    probs = sampling_distribution(logits, sampling, history, allowed=allowed)
    return int(rng.choice(probs.size, p=probs))


MAX_REJECTIONS = 16
"""Refused draws after which :func:`rejection_choice` asks for the full mask (when it can)."""


def rejection_choice(
    logits: np.ndarray,
    sampling: Sampling,
    rng: np.random.Generator,
    history: Sequence[int],
    check: TokenCheck,
    *,
    full_mask: Callable[[], np.ndarray] | None = None,
) -> tuple[int, int]:
    """Adaptive rejection sampling under a constraint: ``(token, tokens checked)``.

    Draw from the model's distribution; if ``check`` refuses the token, remove it (its
    probability goes to zero), renormalise and draw again. Removing refused tokens, not
    redrawing from the full distribution, is the adaptive part (Lipkin et al. 2025, "Fast
    Controlled Generation from Language Models with Adaptive Weighted Rejection Sampling"): a
    token is never checked twice, so the loop ends after at most one check per token, and the
    token returned is distributed exactly as under the full mask, ``p(x) 1[x allowed] / Z``,
    because each draw is from ``p`` restricted to the tokens not yet refused, a superset of the
    allowed ones. Greedy decoding takes the best token the check allows, in order. Raises
    ``ValueError`` when no token is allowed.

    Where the model puts most of its mass on forbidden tokens, draws are refused again and
    again; after :data:`MAX_REJECTIONS` the rest is drawn under ``full_mask()`` if given. That
    keeps the distribution exact: given the tokens refused so far, a draw from ``p`` restricted
    to the allowed tokens is what the loop would have returned.
    """
    penalised = (
        penalise(logits, history, sampling) if sampling.penalised else np.asarray(logits, dtype=np.float64)
    )
    if sampling.greedy:
        best = int(np.argmax(penalised))
        if check(best):  # the usual case: no sort
            return best, 1
        order = np.argsort(-penalised, kind="stable")[1:]
        for checked, token in enumerate(order, start=2):
            if full_mask is not None and checked > MAX_REJECTIONS:
                rest = order[checked - 2 :]
                allowed_rest = rest[full_mask()[rest]]
                if not allowed_rest.size:
                    break
                return int(allowed_rest[0]), checked
            if check(int(token)):
                return int(token), checked
        raise ValueError("the constraint allows no token here")
    probs = sampling_distribution(penalised, sampling)
    checked = 0
    while True:
        total = probs.sum()
        if total <= 0.0 or not np.isfinite(total):
            raise ValueError("the constraint allows no token here")
        if full_mask is not None and checked >= MAX_REJECTIONS:
            probs = np.where(full_mask(), probs, 0.0)
            total = probs.sum()
            if total <= 0.0:
                raise ValueError("the constraint allows no token here")
            return int(rng.choice(probs.size, p=probs / total)), checked
        token = int(rng.choice(probs.size, p=probs / total))
        checked += 1
        if check(token):
            return token, checked
        probs[token] = 0.0


def sample_rng(seed: int | None, sample_index: int) -> np.random.Generator:
    """The random stream of sample ``sample_index`` of a request with ``seed``: the same stream
    whatever else runs beside it, so a sample is replayable on its own."""
    return np.random.default_rng((seed or 0) * 1_000_003 + sample_index)
