"""token_routing on fake models: exact handovers, outputs, accounting and configuration checks."""

from __future__ import annotations

import pytest

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task
from forkpath._trace import RoutingEvent, Tracer
from forkpath.models import FakeModel, GenerateRequest
from forkpath.strategies._base import Context
from forkpath.strategies._token_routing import token_routing

from ._fakes import ScriptedFake

TASK = Task(id="t/0", prompt="Q?", kind="text")


def pair() -> tuple[ScriptedFake, ScriptedFake]:
    # The small model is unsure at answer position 4 (the first operand) and would write 1;
    # the large model writes 3 there. After the handover the small model follows the text.
    small = ScriptedFake("fake/small", ["x = 1 + 2", "x = 3 + 2"], dips={4: 0.3})
    large = ScriptedFake("fake/large", ["x = 3 + 2"])
    return small, large


async def test_the_uncertain_token_goes_to_the_large_model_and_only_it() -> None:
    small, large = pair()
    strategy = token_routing(router={"name": "entropy", "threshold": 2.0})
    with Tracer() as tracer:
        result = await strategy(TASK, Context({"small": small, "large": large}))
    assert result.answer == "x = 3 + 2"
    assert result.info["large_positions"] == [4]
    assert result.info["tokens"] == 9 and result.info["large_tokens"] == 1
    assert result.info["large_share"] == pytest.approx(1 / 9)
    assert result.info["finish"] == "stop"
    # The large model was asked once, for position 4 (after catching up on "x = ").
    assert large.positions == [4]
    # The small model saw every position, the large model's token included.
    assert small.positions == list(range(10))
    events = [e for e in tracer.events if isinstance(e, RoutingEvent)]
    assert [(e.router, e.decision, e.position) for e in events] == [("entropy", "token", 4)]
    assert events[0].features["entropy"] > 2.0
    # Usage: the small model wrote 8 answer tokens, the large one 1 after prefilling prompt + 4 tokens.
    assert result.usage["fake/small"].completion_tokens == 8
    assert result.usage["fake/large"].calls == 1
    assert result.usage["fake/large"].prompt_tokens == len("user: Q?") + 4
    assert result.usage["fake/large"].completion_tokens == 1


async def test_never_routing_is_the_small_model_and_always_routing_is_the_large_model() -> None:
    small = FakeModel("fake/small", script={"Q?": ["hello world"]})
    large = FakeModel("fake/large", script={"Q?": ["hello there"]})
    context = Context({"small": small, "large": large})
    alone_small = await small.generate(GenerateRequest(prompt="user: Q?"))
    alone_large = await large.generate(GenerateRequest(prompt="user: Q?"))
    never = await token_routing(router={"name": "entropy", "threshold": 1e9})(TASK, context)
    always = await token_routing(router={"name": "entropy", "threshold": -1.0})(TASK, context)
    assert (never.answer, never.info["large_share"]) == (alone_small.text, 0.0) == ("hello world", 0.0)
    assert (always.answer, always.info["large_share"]) == (alone_large.text, 1.0) == ("hello there", 1.0)


async def test_hold_keeps_the_large_model_for_the_following_tokens() -> None:
    small, large = pair()
    result = await token_routing(router={"name": "entropy", "threshold": 2.0}, hold=2)(
        TASK, Context({"small": small, "large": large})
    )
    assert result.answer == "x = 3 + 2"
    assert result.info["large_positions"] == [4, 5, 6]
    assert result.info["handovers"] == 1


async def test_max_tokens_and_budget_stop_cleanly() -> None:
    small, large = pair()
    short = await token_routing(router="entropy", max_tokens=3)(
        TASK, Context({"small": small, "large": large})
    )
    assert (short.answer, short.info["finish"], short.stopped) == ("x =", "length", "done")
    small, large = pair()
    budget = Budget(BudgetLimits(max_calls=4))
    capped = await token_routing(router="entropy")(
        TASK, Context({"small": small, "large": large}, budget=budget)
    )
    assert capped.stopped == "budget" and capped.answer == "x = "


async def test_configuration_is_checked_before_any_call() -> None:
    small = FakeModel("fake/small", script={"Q?": ["a"]})
    other = FakeModel("fake/other", script={"Q?": ["a"]}, tokenizer_id="another-vocabulary")
    with pytest.raises(CapabilityError, match="shared tokenizer"):
        await token_routing()(TASK, Context({"small": small, "large": other}))
    assert small.calls == other.calls == 0
    with pytest.raises(ConfigError, match="no model named 'large'"):
        await token_routing()(TASK, Context({"small": small}))
    with pytest.raises(ConfigError, match="hands over a 'segment'"):
        token_routing(router="window_entropy")
    with pytest.raises(ConfigError, match="reads sum_logprob"):
        token_routing(router="chow_sum")
    with pytest.raises(ConfigError, match="max_tokens must be at least 1"):
        token_routing(max_tokens=0)
