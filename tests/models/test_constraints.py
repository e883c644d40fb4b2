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
)
from forkpath.models._sampling import MAX_REJECTIONS, rejection_choice

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
        token, n = rejection_choice(
            logits,
            sampling,
            rng,
            (),
            lambda t: bool(allowed[t]),
            full_mask=(lambda: allowed) if fallback else None,
        )
        counts[token] += 1
        checked += n
    assert counts[~allowed].sum() == 0
    se = np.sqrt(exact * (1 - exact) / draws)  # within 4 standard errors of the exact masked probabilities
    assert np.all(np.abs(counts / draws - exact) <= 4 * se + 1e-12)
    assert checked / draws <= (MAX_REJECTIONS if fallback else 60)


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
        messages=(Message(role="user", content=content),), max_tokens=64, constraint=constraint, **kw
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
