"""Model-layer mechanics on the fake model: cache keys, usage meters, capabilities."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from forkpath import CapabilityError
from forkpath.models import FakeModel, GenerateRequest, Message, ModelCapabilities, get_model, usage_meter
from forkpath.models._base import require_shared_tokenizer

ASK = (Message(role="user", content="What is 2+2?"),)


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value


def test_cache_key_is_canonical() -> None:
    greedy = GenerateRequest(messages=ASK, max_tokens=8)
    assert greedy.cache_key("m") == GenerateRequest(
        messages=ASK, max_tokens=8, sample_index=3, seed=1
    ).cache_key("m")
    assert greedy.cache_key("m") != greedy.cache_key("other")
    hot = [GenerateRequest(messages=ASK, temperature=0.7, sample_index=i) for i in range(3)]
    assert len({r.cache_key("m") for r in hot}) == 3
    assert GenerateRequest(messages=ASK, max_tokens=9).cache_key("m") != greedy.cache_key("m")


def test_request_takes_exactly_one_input() -> None:
    with pytest.raises(ValueError, match="exactly one of messages, prompt, prompt_tokens"):
        GenerateRequest(messages=ASK, prompt="x")
    with pytest.raises(ValueError, match="exactly one"):
        GenerateRequest()


async def test_generation_cache_replays_and_counts() -> None:
    cache = DictCache()
    model = FakeModel("fake/m", script={"2+2": ["4", "5", "four"]}, cache=cache)
    with usage_meter() as meter:
        first = await model.generate(GenerateRequest(messages=ASK))
        again = await model.generate(GenerateRequest(messages=ASK))
        samples = await model.generate_n(GenerateRequest(messages=ASK, temperature=1.0), 3)
        replay = await model.generate_n(GenerateRequest(messages=ASK, temperature=1.0), 3)
    assert (first.cached, again.cached) == (False, True)
    assert again.text == first.text == "4"
    assert [s.text for s in samples] == ["4", "5", "four"] == [s.text for s in replay]
    assert all(r.cached for r in replay)
    assert model.calls == 4  # one greedy call and three samples reached the model
    usage = meter.by_model["fake/m"]
    assert (usage.calls, usage.cached_calls) == (4, 4)
    assert usage.completion_tokens == len("4") + len("4") + len("5") + len("four")


async def test_meters_nest_and_follow_tasks() -> None:
    a, b = FakeModel("fake/a"), FakeModel("fake/b")
    request = GenerateRequest(messages=ASK)
    with usage_meter() as outer:
        with usage_meter() as inner:
            await asyncio.gather(a.generate(request), b.generate(request))
        await a.generate(request)
    assert inner.by_model["fake/a"].calls == 1 and inner.by_model["fake/b"].calls == 1
    assert outer.by_model["fake/a"].calls == 2
    assert outer.total.calls == 3


def test_capability_requirements_name_both_sides() -> None:
    chat_only = get_model("fake/x")
    chat_only.capabilities = ModelCapabilities()
    with pytest.raises(
        CapabilityError, match="sed needs top-5 logprobs \\(has 0\\), prefix continuation, which model fake/x"
    ):
        chat_only.require(ModelCapabilities(top_logprobs=5, prefix_continuation=True), by="sed")
    require_shared_tokenizer(FakeModel("fake/s"), FakeModel("fake/l"), by="token_routing")
    with pytest.raises(CapabilityError, match="token_routing needs two models with a shared tokenizer"):
        require_shared_tokenizer(
            FakeModel("fake/s"), FakeModel("fake/l", tokenizer_id="other"), by="token_routing"
        )


async def test_fake_model_token_level_is_consistent() -> None:
    model = FakeModel("fake/t", script={"2+2": ["4 is the answer"]})
    result = await model.generate(GenerateRequest(messages=ASK, top_logprobs=3))
    assert result.text == "4 is the answer"
    assert all(t.top[0].token_id == t.token_id for t in result.tokens)  # the script is the mode
    prefix = model.chat_prefix(ASK) + model.tokenize("4 is")
    dist = await model.next_token_logprobs(prefix)
    assert int(dist.argmax()) == ord(" ")


async def test_a_meter_opened_twice_counts_each_call_once() -> None:
    model = FakeModel("fake/once")
    with usage_meter() as meter, usage_meter(meter):
        await model.generate(GenerateRequest(messages=ASK))
    assert meter.total.calls == 1
