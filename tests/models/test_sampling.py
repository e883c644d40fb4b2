"""The one sampling function against llama.cpp's own sampler chain (llama-cpp-python's
``llama_sampler_*``): same settings, same distribution."""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np
import pytest

from forkpath.models import Sampling, choose_token, draw_token, sampling_distribution
from forkpath.models._sampling import PENALTY_WINDOW, penalty_history
from forkpath.models._uncertainty import log_softmax


def llama_cpp_distribution(logits: np.ndarray, s: Sampling, accepted: list[int]) -> np.ndarray:
    """What llama.cpp draws from: its chain (penalties, top-k, top-p, min-p, temperature, the
    order and window llama-cpp-python uses) applied to ``logits`` after accepting ``accepted``."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    n = len(logits)
    for sampler in (
        llama_cpp.llama_sampler_init_penalties(
            n, PENALTY_WINDOW, s.repetition_penalty, s.frequency_penalty, s.presence_penalty
        ),
        llama_cpp.llama_sampler_init_top_k(s.top_k),
        llama_cpp.llama_sampler_init_top_p(s.top_p, 1),
        llama_cpp.llama_sampler_init_min_p(s.min_p, 1),
        llama_cpp.llama_sampler_init_temp(s.temperature),
    ):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    try:
        for token in accepted:
            llama_cpp.llama_sampler_accept(chain, int(token))
        data = (llama_cpp.llama_token_data * n)(
            *(llama_cpp.llama_token_data(i, float(x), 0.0) for i, x in enumerate(logits))
        )
        candidates = llama_cpp.llama_token_data_array(data, n, -1, False)
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(candidates))
        ids = np.array([candidates.data[i].id for i in range(candidates.size)])
        kept = np.array([candidates.data[i].logit for i in range(candidates.size)], dtype=np.float64)
    finally:
        llama_cpp.llama_sampler_free(chain)
    probs = np.zeros(n)
    weights = np.exp(kept - kept.max())
    probs[ids] = weights / weights.sum()
    return probs


SETTINGS = [
    Sampling(temperature=0.7),
    Sampling(
        temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, repetition_penalty=1.1
    ),  # llama.cpp's defaults
    Sampling(temperature=1.0, top_k=5),
    Sampling(temperature=1.0, top_p=0.5),
    Sampling(temperature=0.8, min_p=0.1),
    Sampling(temperature=1.3, repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.2),
    Sampling(temperature=0.5, top_k=100, min_p=0.02, repetition_penalty=0.9, frequency_penalty=-0.5),
]


@pytest.mark.parametrize("sampling", SETTINGS, ids=repr)
def test_the_same_settings_give_llama_cpps_distribution(sampling: Sampling) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 3.0, 2000).astype(np.float32)  # raw logits, both signs
    generated = [int(t) for t in rng.integers(0, 2000, 150)] + [int(np.argmax(logits))] * 3
    ours = sampling_distribution(logits, sampling, penalty_history(generated))
    theirs = llama_cpp_distribution(logits, sampling, generated)
    assert np.array_equal(ours > 0, theirs > 0)  # the same tokens survive truncation
    assert np.abs(ours - theirs).max() < 1e-6


def test_the_penalty_window_is_the_last_64_accepted_tokens() -> None:
    logits = np.zeros(100, dtype=np.float32)
    logits[7] = logits[8] = 2.0
    penalised = Sampling(temperature=1.0, repetition_penalty=2.0)
    for gap, seen in ((PENALTY_WINDOW, False), (PENALTY_WINDOW - 1, True)):
        generated = [7] + [9] * gap  # token 7 is gap + 1 tokens back
        theirs = llama_cpp_distribution(logits, penalised, generated)
        ours = sampling_distribution(logits, penalised, penalty_history(generated))
        assert bool(theirs[7] < theirs[8]) is seen and bool(ours[7] < ours[8]) is seen
        assert np.abs(ours - theirs).max() < 1e-6


def test_a_repetition_penalty_needs_raw_logits() -> None:
    """The documented pitfall: log-probabilities are all negative, so the penalty multiplies
    them all, where llama.cpp divides a token's positive logit."""
    logits = np.array([3.0, 2.5, -1.0, 0.5], dtype=np.float32)
    penalised = Sampling(temperature=1.0, repetition_penalty=1.5)
    raw = sampling_distribution(logits, penalised, [0])
    assert np.abs(raw - llama_cpp_distribution(logits, penalised, [0])).max() < 1e-6
    normalised = sampling_distribution(log_softmax(logits), penalised, [0])
    assert np.abs(normalised - raw).max() > 0.05
    unpenalised = Sampling(temperature=0.7, top_k=3, min_p=0.05)
    assert np.allclose(
        sampling_distribution(logits, unpenalised), sampling_distribution(log_softmax(logits), unpenalised)
    )


@pytest.mark.slow
async def test_top_k_and_min_p_truncate_in_process_sampling() -> None:
    """On the real local model, as through the server (tests/models/test_litellm.py): top_k 1
    or min_p 1 at a high temperature leave only the most likely token."""
    from forkpath.models import GenerateRequest, Message, get_model

    model = get_model("local/smollm2-135m")
    base = GenerateRequest(messages=(Message(role="user", content="Say hello."),), max_tokens=12)
    greedy = (await model.generate(base)).text
    hot = base.model_copy(update={"temperature": 1.5})
    for setting in ({"top_k": 1}, {"min_p": 1.0}):
        texts = {
            (await model.generate(hot.model_copy(update={**setting, "sample_index": i}))).text
            for i in range(3)
        }
        assert texts == {greedy}, setting
    free = {(await model.generate(hot.model_copy(update={"sample_index": i}))).text for i in range(3)}
    assert len(free) > 1


def test_draw_token_is_rng_choice_without_its_checks() -> None:
    """The engine draws through ``draw_token``: the same token and the same random stream as
    ``Generator.choice(p=...)``, so a sample with a seed and index is the one it always was."""
    logits = np.random.default_rng(3).normal(size=4096).astype(np.float32)
    for temperature in (0.3, 0.8, 1.5):
        probs = sampling_distribution(logits, Sampling(temperature=temperature))
        ours, theirs = np.random.default_rng(11), np.random.default_rng(11)
        drawn = [draw_token(probs, ours) for _ in range(200)]
        assert drawn == [int(theirs.choice(probs.size, p=probs)) for _ in range(200)]
        assert len(set(drawn)) > 10  # a real draw, not one token
        assert ours.random() == theirs.random()  # the streams stayed together


def test_the_in_place_path_gives_the_bits_of_the_masked_one() -> None:
    """Untruncated sampling divides the log-probabilities in place; -inf entries (a
    constraint's forbidden tokens) give what ``np.where`` gave before."""
    logits = (np.random.default_rng(4).normal(size=2048) * 3).astype(np.float64)
    logits[::7] = -np.inf
    sampling = Sampling(temperature=0.7)
    logprobs = log_softmax(logits)
    keep = np.isfinite(logprobs)
    scaled = np.where(keep, logprobs / sampling.temperature, -np.inf)
    expected = np.exp(scaled - scaled.max())
    expected = expected / expected.sum()
    assert np.array_equal(sampling_distribution(logits, sampling), expected)
    assert np.all(sampling_distribution(logits, sampling)[::7] == 0.0)


def test_nan_logits_are_refused_not_drawn_from() -> None:
    """A broken model's NaN logits end in a ValueError, as ``Generator.choice`` gave, never in a
    token id drawn from NaN probabilities."""
    logits = np.zeros(1000)
    logits[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        choose_token(logits, Sampling(temperature=0.8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        draw_token(np.zeros(10), np.random.default_rng(0))
