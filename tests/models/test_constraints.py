"""Constrained generation: the spec and its bad inputs, the sampling function's mask and
adaptive rejection sampler, sample-and-verify, the constrained wrapper, and real SmolLM2 runs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from forkpath._errors import ConfigError, ModelError
from forkpath.models import (
    Constraint,
    FakeModel,
    GenerateRequest,
    Message,
    Sampling,
    choose_token,
    constrained,
    get_model,
    sampling_distribution,
    teacher_force,
)
from forkpath.models._sampling import MAX_REJECTIONS, RejectionDraw, choose_weighted, rejection_choice

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
PHONE = r"[0-9]{3}-[0-9]{4}"
YES_NO = 'start: answer "."\nanswer: "yes" | "no"'


# -- the spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "exactly one of json_schema, regex, grammar (given: none)"),
        ({"regex": "a", "grammar": 'start: "a"'}, "(given: regex and grammar)"),
        ({"regex": "(ab"}, "invalid regex '(ab': missing ), unterminated subpattern"),
        ({"regex": "(?=a)b"}, "invalid regex: "),  # Python takes look-ahead; the engine does not
        ({"json_schema": {"type": "nonsense"}}, "invalid JSON schema at type"),
        ({"json_schema": {"type": "object", "required": "name"}}, "invalid JSON schema at required"),
        ({"grammar": "start: foo"}, 'unknown name: "foo"'),
        ({"grammar": "start: (("}, "invalid grammar"),
        ({"grammar": "   "}, "the grammar is empty"),
        ({"regex": "a", "method": "guess"}, "Input should be 'mask' or 'rejection'"),
        ({"regex": "a", "max_tries": 0}, "greater than or equal to 1"),
        ({"regex": "a", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_constraints_are_one_clear_error(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        Constraint.model_validate(spec)
    assert message in str(e.value)


def test_accepts_checks_each_kind_independently_of_the_decoder() -> None:
    assert Constraint(json_schema=SCHEMA).accepts('{"name": "Ann", "age": 3}')
    assert not Constraint(json_schema=SCHEMA).accepts('{"name": "Ann"}')
    assert not Constraint(json_schema=SCHEMA).accepts("{not json")
    assert Constraint(regex=PHONE).accepts("555-1234")
    assert not Constraint(regex=PHONE).accepts("555-1234 ")
    assert Constraint(grammar=YES_NO).accepts("yes.")
    assert not Constraint(grammar=YES_NO).accepts("yes")


def test_a_constraint_is_part_of_the_cache_key() -> None:
    base = GenerateRequest(prompt="x")
    keys = {
        base.cache_key("m"),
        base.model_copy(update={"constraint": Constraint(regex="a")}).cache_key("m"),
        base.model_copy(update={"constraint": Constraint(regex="b")}).cache_key("m"),
    }
    assert len(keys) == 3


# -- the sampling function -------------------------------------------------------------------------


def test_mask_gives_the_renormalised_distribution() -> None:
    logits = np.log(np.array([0.5, 0.2, 0.2, 0.1]))
    allowed = np.array([False, True, False, True])
    probs = sampling_distribution(logits, Sampling(temperature=1.0), allowed=allowed)
    assert probs == pytest.approx([0.0, 2 / 3, 0.0, 1 / 3])
    assert choose_token(logits, Sampling(), np.random.default_rng(0), allowed=allowed) == 1
    with pytest.raises(ValueError, match="allows no token"):
        choose_token(logits, Sampling(), np.random.default_rng(0), allowed=np.zeros(4, dtype=bool))


def _draw(
    logits: np.ndarray, sampling: Sampling, rng: np.random.Generator, allowed: np.ndarray, fallback: bool
) -> RejectionDraw:
    """One adaptive rejection draw under the mask ``allowed`` (the full mask after the refusals
    pile up when ``fallback``)."""
    return rejection_choice(
        logits,
        sampling,
        rng,
        (),
        lambda t: bool(allowed[t]),
        full_mask=(lambda: allowed) if fallback else None,
    )


@pytest.mark.parametrize("fallback", [False, True])
def test_rejection_sampling_has_the_masked_distribution(fallback: bool) -> None:
    """Exact with or without the switch to the full mask after MAX_REJECTIONS refusals (the
    allowed tokens here are the least likely ones, so the switch happens)."""
    rng = np.random.default_rng(7)
    logits = np.sort(rng.normal(size=60) * 2)[::-1].copy()
    allowed = np.zeros(60, dtype=bool)
    allowed[[3, 30, 45, 59]] = True
    sampling = Sampling(temperature=0.8)
    exact = sampling_distribution(logits, sampling, allowed=allowed)
    draws = 6_000
    counts = np.zeros(60)
    checked = 0
    for _ in range(draws):
        draw = _draw(logits, sampling, rng, allowed, fallback)
        counts[draw.token] += 1
        checked += draw.checked
    assert counts[~allowed].sum() == 0
    se = np.sqrt(exact * (1 - exact) / draws)  # within 4 standard errors of the exact masked probabilities
    assert np.all(np.abs(counts / draws - exact) <= 4 * se + 1e-12)
    assert checked / draws <= (MAX_REJECTIONS + 1 if fallback else 60)


# -- the importance weight -------------------------------------------------------------------------


def _fake_distribution(seed: int, likely_allowed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Logits over 60 tokens and an allowed set among the likely or the unlikely ones."""
    rng = np.random.default_rng(seed)
    logits = np.sort(rng.normal(size=60) * 2)[::-1].copy()
    allowed = np.zeros(60, dtype=bool)
    allowed[[0, 2, 7, 20, 41] if likely_allowed else [3, 30, 45, 59]] = True
    return logits, allowed


@pytest.mark.parametrize(("likely_allowed", "fallback"), [(True, False), (False, False), (False, True)])
def test_the_rejection_weight_estimates_the_allowed_mass_without_bias(
    likely_allowed: bool, fallback: bool
) -> None:
    """Per step, E[Z_hat] = Z (the free distribution's mass on the allowed tokens) and the
    sample is properly weighted: E[Z_hat 1[x = j]] = p(j) for every allowed j. Checked within 4
    standard errors over 20,000 draws with a fixed seed."""
    logits, allowed = _fake_distribution(11, likely_allowed)
    sampling = Sampling(temperature=0.9)
    free = sampling_distribution(logits, sampling)
    exact = float(free[allowed].sum())
    rng = np.random.default_rng(3)
    draws = 20_000
    weights = np.empty(draws)
    tokens = np.empty(draws, dtype=int)
    for i in range(draws):
        draw = _draw(logits, sampling, rng, allowed, fallback)
        assert draw.allowed_mass is not None
        weights[i], tokens[i] = draw.allowed_mass, draw.token
    assert allowed[tokens].all()
    assert weights.std() > 0 or fallback  # a real estimate, not the exact mass read off a mask
    se = weights.std(ddof=1) / np.sqrt(draws)
    assert abs(weights.mean() - exact) <= 4 * se + 1e-12, (weights.mean(), exact, se)
    for j in np.flatnonzero(allowed):
        per_token = weights * (tokens == j)
        se_j = per_token.std(ddof=1) / np.sqrt(draws)
        assert abs(per_token.mean() - free[j]) <= 4 * se_j + 1e-9, (j, per_token.mean(), free[j])


def test_the_mask_weight_is_the_exact_allowed_mass() -> None:
    logits, allowed = _fake_distribution(5, True)
    sampling = Sampling(temperature=1.3)
    token, mass = choose_weighted(logits, sampling, np.random.default_rng(0), allowed=allowed)
    assert allowed[token]
    assert mass == pytest.approx(float(sampling_distribution(logits, sampling)[allowed].sum()), rel=1e-12)
    # Greedy and truncated sampling have no weight; the draw is the mask's either way.
    assert choose_weighted(logits, Sampling(), np.random.default_rng(0), allowed=allowed)[1] is None
    truncated = Sampling(temperature=1.0, top_k=3)
    assert choose_weighted(logits, truncated, np.random.default_rng(0), allowed=allowed)[1] is None


def test_weighting_whole_sequences_recovers_the_globally_constrained_distribution() -> None:
    """Two steps. First token A or B, equally likely; after A the constraint allows 10% of the
    mass, after B 90%. Over whole valid sequences A has probability 0.05 / (0.05 + 0.45) = 0.1,
    but sampling step by step under the constraint picks A half the time. The self-normalised
    estimate with the product of the per-step weights (rejection's estimates) gives 0.1."""
    first = np.log(np.array([0.5, 0.5]))
    second = np.log(np.full(20, 0.05))  # 20 equally likely tokens
    after = {0: np.arange(20) < 2, 1: np.arange(20) < 18}  # A: 2 of 20 allowed, B: 18 of 20
    sampling = Sampling(temperature=1.0)
    rng = np.random.default_rng(0)
    n = 8_000
    picked_a = np.empty(n, dtype=bool)
    log_w = np.empty(n)
    for i in range(n):
        one = rejection_choice(first, sampling, rng, (), lambda t: True)
        mask = after[one.token]
        two = rejection_choice(second, sampling, rng, (), lambda t, mask=mask: bool(mask[t]))
        assert one.allowed_mass is not None and two.allowed_mass is not None
        picked_a[i] = one.token == 0
        log_w[i] = np.log(one.allowed_mass) + np.log(two.allowed_mass)
    assert picked_a.mean() == pytest.approx(0.5, abs=0.03)  # the local sampler's bias
    w = np.exp(log_w - log_w.max())
    estimate = float((w * picked_a).sum() / w.sum())
    assert estimate == pytest.approx(0.1, abs=0.03), estimate


def test_greedy_rejection_takes_the_best_allowed_token() -> None:
    logits = np.array([5.0, 4.0, 3.0, 2.0])
    checked: list[int] = []

    def check(t: int) -> bool:
        checked.append(t)
        return t in (2, 3)

    assert choose_token(logits, Sampling(), np.random.default_rng(0), check=check) == 2
    assert checked == [0, 1, 2]
    with pytest.raises(ValueError, match="no truncation"):
        choose_token(logits, Sampling(temperature=1, top_k=2), np.random.default_rng(0), check=check)


# -- models that cannot mask: sample and verify ------------------------------------------------------


async def test_sample_and_verify_returns_the_first_valid_sample() -> None:
    model = FakeModel(script={"number": ["abc", "x12", "42", "7"]})
    request = GenerateRequest(
        messages=(Message(role="user", content="a number"),), constraint=Constraint(regex="[0-9]+")
    )
    assert model.capabilities.constrained_decoding == "verify"
    assert (await model.generate(request)).text == "42"
    stingy = request.model_copy(update={"constraint": Constraint(regex="[0-9]+", max_tries=2)})
    with pytest.raises(ModelError, match="no output met the regex constraint in 2 attempts"):
        await model.generate(stingy)


# -- the constrained wrapper on a token model -------------------------------------------------------


async def test_constrained_token_model_masks_next_token_and_teacher_forcing() -> None:
    model = constrained(FakeModel(script={"n": ["42"]}), {"regex": "[0-9]+"})
    prompt = model.chat_prefix([Message(role="user", content="n?")])  # type: ignore[attr-defined]
    first = await model.next_token_logprobs(prompt)  # type: ignore[attr-defined]
    assert {chr(i) for i in np.flatnonzero(np.isfinite(first))} == set("0123456789")
    assert np.exp(first).sum() == pytest.approx(1.0)
    rows = await model.continuation_logprobs(prompt, [ord("4"), ord("2")])  # type: ignore[attr-defined]
    # after a digit the answer may end (token 0) or go on with a digit
    assert [int(np.isfinite(r).sum()) for r in rows] == [10, 11, 11]
    with pytest.raises(ConfigError, match="starts with no prompt"):
        await model.next_token_logprobs([ord("x")])  # type: ignore[attr-defined]


# -- real model ------------------------------------------------------------------------------------


def ask(content: str, constraint: Constraint, **kw: Any) -> GenerateRequest:
    return GenerateRequest(
        messages=(Message(role="user", content=content),), constraint=constraint, **{"max_tokens": 64, **kw}
    )


@pytest.mark.parametrize("method", ["mask", "rejection"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
async def test_every_kind_is_valid_on_smollm2(method: str, temperature: float) -> None:
    model = get_model("local/smollm2-135m")
    for constraint in (
        Constraint(json_schema=SCHEMA, method=method),  # type: ignore[arg-type]
        Constraint(regex=PHONE, method=method),  # type: ignore[arg-type]
        Constraint(grammar=YES_NO, method=method),  # type: ignore[arg-type]
    ):
        for i in range(2):
            result = await model.generate(
                ask(
                    "Describe a person, or give a phone number.",
                    constraint,
                    temperature=temperature,
                    sample_index=i,
                )
            )
            assert constraint.accepts(result.text), (constraint.kind, result.text)
            assert result.finish_reason == "stop"


async def test_greedy_masking_and_rejection_agree_token_for_token_on_smollm2() -> None:
    model = get_model("local/smollm2-135m")
    for kind in ({"json_schema": SCHEMA}, {"regex": PHONE}, {"grammar": YES_NO}):
        texts = [
            (await model.generate(ask("Give a person.", Constraint(**kind, method=m)))).token_ids  # type: ignore[arg-type]
            for m in ("mask", "rejection")
        ]
        assert texts[0] == texts[1]


async def test_logprobs_and_entropy_are_those_of_the_constrained_distribution() -> None:
    model = get_model("local/smollm2-135m")
    constraint = Constraint(grammar=YES_NO)
    result = await model.generate(ask("Is the sky blue?", constraint, top_logprobs=5))
    first = result.tokens[0]
    allowed = {t.token for t in first.top if t.logprob > -np.inf}
    assert allowed <= {"yes", "no", "y", "n", "ye"}  # prefixes of the two answers, nothing else
    assert sum(np.exp(t.logprob) for t in first.top) == pytest.approx(1.0, abs=1e-6)
    free = await model.generate(
        GenerateRequest(messages=ask("Is the sky blue?", constraint).messages, max_tokens=1, top_logprobs=5)
    )
    assert first.entropy is not None and free.tokens[0].entropy is not None
    assert first.entropy < free.tokens[0].entropy


async def test_continuing_a_partial_answer_keeps_the_constraint_on_smollm2() -> None:
    model = constrained(get_model("local/smollm2-135m"), {"json_schema": SCHEMA})
    prompt = model.chat_prefix([Message(role="user", content="A person as JSON.")])  # type: ignore[attr-defined]
    partial = model.tokenize('{"name":"Bo')  # type: ignore[attr-defined]
    result = await model.generate(GenerateRequest(prompt_tokens=(*prompt, *partial), max_tokens=48))
    whole = '{"name":"Bo' + result.text
    assert json.loads(whole)["name"].startswith("Bo") and Constraint(json_schema=SCHEMA).accepts(whole)


async def test_the_mask_weight_on_smollm2_is_the_mass_the_constraint_removed() -> None:
    """Under the mask, each step's weight is p_free(x) / p_constrained(x) for the token x
    drawn, so the log weight is the sum over the answer of (free - constrained) logprobs: the
    constrained ones from the result, the free ones from teacher forcing the unconstrained model."""
    model = get_model("local/smollm2-135m", batch_invariant=True)  # decoding = teacher forcing, bit for bit
    constraint = Constraint(regex="[a-z ]{1,40}")
    request = ask(
        "Describe the sea.", constraint, temperature=1.0, logprobs=True, max_tokens=8, sample_index=2
    )
    result = await model.generate(request)
    assert result.finish_reason == "length" and result.log_weight is not None
    prompt = model.chat_prefix(list(request.messages or ()))  # type: ignore[attr-defined]
    ids = result.token_ids or []
    free = await teacher_force(model, prompt, ids)
    removed = sum(float(free[i, t]) - (result.tokens[i].logprob or 0.0) for i, t in enumerate(ids))
    assert result.log_weight < 0.0
    assert result.log_weight == pytest.approx(removed, abs=1e-4)


async def test_the_rejection_weight_on_smollm2_is_unbiased_for_the_first_step() -> None:
    """One-token answers by rejection sampling: the mean of exp(log_weight) is within 4
    standard errors of the exact allowed mass (read off one masked step)."""
    model = get_model("local/smollm2-135m", batch_invariant=True)  # every sample sees the same logits
    constraint = Constraint(grammar=YES_NO, method="rejection")
    question = "Is the sea blue? Answer yes or no."
    exact_request = ask(question, Constraint(grammar=YES_NO), temperature=1.0, max_tokens=1, logprobs=True)
    masked = await model.generate(exact_request)
    prompt = model.chat_prefix(list(exact_request.messages or ()))  # type: ignore[attr-defined]
    free = await teacher_force(model, prompt, masked.token_ids or [])
    token = (masked.token_ids or [])[0]
    exact = float(np.exp(free[0, token] - (masked.tokens[0].logprob or 0.0)))
    assert masked.log_weight == pytest.approx(np.log(exact), abs=1e-3)
    n = 240
    results = await model.generate_n(ask(question, constraint, temperature=1.0, max_tokens=1), n)
    weights = np.array([np.exp(r.log_weight) for r in results if r.log_weight is not None])
    assert weights.size == n and weights.std() > 0
    se = weights.std(ddof=1) / np.sqrt(n)
    assert abs(weights.mean() - exact) <= 4 * se, (weights.mean(), exact, se)
