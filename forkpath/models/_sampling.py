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
from typing import NamedTuple

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
    if sampling.truncated:
        keep = np.ones(logprobs.size, dtype=bool)
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
    else:  # in place: -inf / T is -inf, as np.where gave (NaN logits: draw_token refuses them)
        scaled = np.divide(logprobs, sampling.temperature, out=logprobs)
    probs = np.exp(np.subtract(scaled, scaled.max(), out=scaled), out=scaled)
    return np.divide(probs, probs.sum(), out=probs)


def draw_token(probs: np.ndarray, rng: np.random.Generator) -> int:
    """A token drawn from ``probs`` (float64, sums to 1): the token and the random stream
    ``rng.choice(probs.size, p=probs)`` give, without its checks of ``probs`` (over a 150k
    vocabulary they cost half as much again as the rest of a sampled token, or more)."""
    cdf = probs.cumsum()
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0.0:  # Generator.choice's one check that matters here
        raise ValueError("the probabilities contain NaN or sum to zero")
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


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
    :func:`choose_weighted` also gives the step's importance weight.
    """
    return choose_weighted(logits, sampling, rng, history, allowed=allowed, check=check, full_mask=full_mask)[
        0
    ]


def choose_weighted(
    logits: np.ndarray,
    sampling: Sampling,
    rng: np.random.Generator,
    history: Sequence[int] = (),
    *,
    allowed: np.ndarray | None = None,
    check: TokenCheck | None = None,
    full_mask: Callable[[], np.ndarray] | None = None,
) -> tuple[int, float | None]:
    """:func:`choose_token` and the step's *allowed mass*: ``(token, Z)``.

    ``Z`` is the probability the sampling distribution (penalties and temperature applied, no
    constraint) puts on the tokens the constraint allows: exact with ``allowed``, an unbiased
    estimate with ``check`` (:func:`rejection_choice`). The token is drawn from that
    distribution restricted to the allowed tokens, so ``Z`` is the step's importance weight
    towards the *globally* constrained distribution (``p(x)·1[x valid] / Z_global`` over whole
    sequences): the product of a sequence's ``Z`` is its weight (``GenerateResult.log_weight``).
    ``None`` when greedy or truncated (no such weight) or without a constraint (the weight is 1).
    """
    if check is not None:
        if allowed is not None or sampling.truncated:
            raise ValueError("rejection sampling takes no mask and no truncation: pass allowed instead")
        drawn = rejection_choice(logits, sampling, rng, history, check, full_mask=full_mask)
        return drawn.token, drawn.allowed_mass
    if sampling.greedy:
        masked = apply_mask(logits, allowed)
        return int(np.argmax(penalise(masked, history, sampling) if sampling.penalised else masked)), None
    if allowed is None or sampling.truncated:
        probs = sampling_distribution(logits, sampling, history, allowed=allowed)
        return draw_token(probs, rng), None
    # Untruncated: the masked distribution is the free one restricted to the allowed tokens and
    # renormalised, and the mass it drops is the weight.
    if not allowed.any():
        raise ValueError("the constraint allows no token here")
    free = sampling_distribution(logits, sampling, history)
    kept = np.where(allowed, free, 0.0)
    mass = float(kept.sum())
    if mass <= 0.0:  # every allowed token underflowed: draw from the masked logits themselves
        probs = sampling_distribution(logits, sampling, history, allowed=allowed)
        return draw_token(probs, rng), float(np.finfo(float).tiny)
    return draw_token(kept / mass, rng), mass


MAX_REJECTIONS = 16
"""Refused draws after which :func:`rejection_choice` asks for the full mask (when it can)."""


class RejectionDraw(NamedTuple):
    """What :func:`rejection_choice` drew."""

    token: int
    checked: int
    """Tokens checked (the constraint's cost)."""
    allowed_mass: float | None
    """An unbiased estimate of ``Z``, the mass the allowed tokens have (None when greedy)."""


def rejection_choice(
    logits: np.ndarray,
    sampling: Sampling,
    rng: np.random.Generator,
    history: Sequence[int],
    check: TokenCheck,
    *,
    full_mask: Callable[[], np.ndarray] | None = None,
) -> RejectionDraw:
    """Adaptive weighted rejection sampling under a constraint (Lipkin et al. 2025, "Fast
    Controlled Generation from Language Models with Adaptive Weighted Rejection Sampling").

    Draw from the model's distribution ``p``; if ``check`` refuses the token, remove it (its
    probability goes to zero), renormalise and draw again. Removing refused tokens, not
    redrawing from the full distribution, is the adaptive part: a token is never checked
    twice, so the loop ends after at most one check per token, and the token returned is
    distributed exactly as under the full mask, ``p(x) 1[x allowed] / Z``, because each draw
    is from ``p`` restricted to the tokens not yet refused, a superset of the allowed ones.
    Greedy decoding takes the best token the check allows, in order. Raises ``ValueError``
    when no token is allowed.

    The weight. With ``R`` the refused mass and ``x`` the token accepted, the allowed mass is
    ``Z = p(x) + (allowed mass among the tokens neither refused nor x)``, a set of mass
    ``rest = 1 - R - p(x)``. One more draw ``y`` from ``p`` restricted to that set, checked,
    estimates the second term by ``rest · 1[y allowed]``, so ``Z_hat = p(x) + rest·1[y allowed]``
    has ``E[Z_hat | x] = Z`` exactly: unbiased whatever ``x`` is, hence properly weighted
    (``E[Z_hat f(x)] = sum over allowed x of p(x) f(x)``). This is the paper's recursive
    estimator, whose product of the ``1 - q`` of the refused draws telescopes to ``1 - R``; it
    costs one check more per step (none when ``rest`` is 0).

    Where the model puts most of its mass on forbidden tokens, draws are refused again and
    again; after :data:`MAX_REJECTIONS` the rest is drawn under ``full_mask()`` if given. That
    keeps the distribution exact (given the tokens refused so far, a draw from ``p``
    restricted to the allowed tokens is what the loop would have returned), and the weight
    is then the exact ``Z``, the mask's mass.
    """
    penalised = (
        penalise(logits, history, sampling) if sampling.penalised else np.asarray(logits, dtype=np.float64)
    )
    if sampling.greedy:
        best = int(np.argmax(penalised))
        if check(best):  # the usual case: no sort
            return RejectionDraw(best, 1, None)
        order = np.argsort(-penalised, kind="stable")[1:]
        for checked, token in enumerate(order, start=2):
            if full_mask is not None and checked > MAX_REJECTIONS:
                rest = order[checked - 2 :]
                allowed_rest = rest[full_mask()[rest]]
                if not allowed_rest.size:
                    break
                return RejectionDraw(int(allowed_rest[0]), checked, None)
            if check(int(token)):
                return RejectionDraw(int(token), checked, None)
        raise ValueError("the constraint allows no token here")
    probs = sampling_distribution(penalised, sampling)
    checked = 0
    while True:
        total = probs.sum()
        if total <= 0.0 or not np.isfinite(total):
            raise ValueError("the constraint allows no token here")
        if full_mask is not None and checked >= MAX_REJECTIONS:
            probs = np.where(full_mask(), probs, 0.0)
            mass = probs.sum()
            if mass <= 0.0:
                raise ValueError("the constraint allows no token here")
            return RejectionDraw(draw_token(probs / mass, rng), checked, float(mass))
        token = draw_token(probs / total, rng)
        checked += 1
        if check(token):
            chosen = float(probs[token])
            probs[token] = 0.0
            unseen = float(probs.sum())
            if unseen <= 0.0:
                return RejectionDraw(token, checked, chosen)
            other = draw_token(probs / unseen, rng)
            checked += 1
            return RejectionDraw(token, checked, chosen + unseen * float(check(other)))
        probs[token] = 0.0


def sample_rng(seed: int | None, sample_index: int) -> np.random.Generator:
    """The random stream of sample ``sample_index`` of a request with ``seed``: the same stream
    whatever else runs beside it, so a sample is replayable on its own."""
    return np.random.default_rng((seed or 0) * 1_000_003 + sample_index)
