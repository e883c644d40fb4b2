"""Constraints over an API model: a real llama.cpp OpenAI-compatible server takes JSON schemas
(``constrained_decoding: json_schema``); other kinds are sampled and verified."""

from __future__ import annotations

import json

import pytest

from forkpath._errors import ModelError
from forkpath.models import Constraint, GenerateRequest, Message, ModelCapabilities, get_model

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def ask(constraint: Constraint, **kw: object) -> GenerateRequest:
    return GenerateRequest(
        messages=(Message(role="user", content="Describe a person as JSON."),),
        max_tokens=64,
        constraint=constraint,
        **kw,  # type: ignore[arg-type]
    )


async def test_the_server_enforces_a_json_schema(llama_server: str) -> None:
    model = get_model("openai/smollm2", api_base=llama_server)
    assert model.capabilities.constrained_decoding == "json_schema"
    for i in range(3):
        result = await model.generate(
            ask(Constraint(json_schema=SCHEMA), temperature=0.8, sample_index=i, seed=1)
        )
        value = json.loads(result.text)
        assert isinstance(value["name"], str) and isinstance(value["age"], int)


async def test_other_kinds_are_sampled_and_verified_within_the_budget(llama_server: str) -> None:
    verify_only = ModelCapabilities(logprobs=True, top_logprobs=20, constrained_decoding="verify")
    model = get_model("openai/smollm2", api_base=llama_server, capabilities=verify_only)
    # a constraint the model meets now and then: some JSON object
    loose = Constraint(regex=r"(?s).*\{.*\}.*", max_tries=6)
    result = await model.generate(ask(loose, temperature=0.8, seed=3))
    assert loose.accepts(result.text)
    impossible = Constraint(regex="zzzz", max_tries=2)
    with pytest.raises(ModelError, match="no output met the regex constraint in 2 attempts"):
        await model.generate(ask(impossible, temperature=0.8, seed=3))
