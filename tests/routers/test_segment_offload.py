"""segment_offload on fake models: the cut, the offloaded line, the hand-back, the accounting."""

from __future__ import annotations

import pytest

from forkpath import CapabilityError, ConfigError, Task
from forkpath._trace import RoutingEvent, Tracer
from forkpath.models import FakeModel, ModelCapabilities
from forkpath.routers import make_router
from forkpath.strategies._base import Context
from forkpath.strategies._segment_offload import segment_offload

from ._fakes import ScriptedFake

TASK = Task(id="t/0", prompt="Q?", kind="text")
TOP1 = {"name": "top1", "threshold": 0.5, "handover": "segment"}


def pair() -> tuple[ScriptedFake, ScriptedFake]:
    # The small model doubts answer position 4; the large model writes that line its own way.
    small = ScriptedFake("fake/small", ["x = 1 + 2\nprint(x)\n", "x = 3 + 2\nprint(x)\n"], dips={4: 0.3})
    large = ScriptedFake("fake/large", ["x = 3 + 2\nprint(x)\n"])
    return small, large


async def test_the_large_model_writes_the_rest_of_the_line_then_hands_back() -> None:
    small, large = pair()
    with Tracer() as tracer:
        result = await segment_offload(router=TOP1, chunk_tokens=16)(
            TASK, Context({"small": small, "large": large})
        )
    assert result.answer == "x = 3 + 2\nprint(x)\n"
    info = result.info
    # Small: "x = " (4 kept of a 16-token chunk) then "\nprint(x)\n" (10); large: "3 + 2" (5).
    assert (info["small_tokens"], info["large_tokens"], info["wasted_small_tokens"]) == (14, 5, 12)
    assert info["offloads"] == 1 and info["large_share"] == pytest.approx(5 / 19)
    assert info["finish"] == "stop"
    assert [(e.decision, e.position) for e in tracer.events if isinstance(e, RoutingEvent)] == [
        ("segment", 4)
    ]
    assert result.usage["fake/small"].calls == 2 and result.usage["fake/large"].calls == 1


async def test_a_confident_small_model_never_offloads() -> None:
    small = ScriptedFake("fake/small", ["x = 1 + 2\nprint(x)\n"])
    large = ScriptedFake("fake/large", ["x = 3 + 2\nprint(x)\n"])
    result = await segment_offload(router=TOP1, chunk_tokens=4)(
        TASK, Context({"small": small, "large": large})
    )
    assert result.answer == "x = 1 + 2\nprint(x)\n"
    assert result.info["large_tokens"] == 0 and large.calls == 0
    assert small.calls == 5  # 18 tokens in chunks of 4, the last one ending the answer


async def test_window_entropy_triggers_on_the_uncertain_stretch() -> None:
    small, large = pair()
    router = {"name": "window_entropy", "threshold": 1.0}
    result = await segment_offload(router=router, window=1, estimator="full")(
        TASK, Context({"small": small, "large": large})
    )
    assert result.answer == "x = 3 + 2\nprint(x)\n" and result.info["offloads"] == 1


async def test_an_offload_that_adds_nothing_does_not_loop() -> None:
    small = ScriptedFake("fake/small", ["ab"], dips={0: 0.3})
    large = ScriptedFake("fake/large", [""])  # ends the answer at once: the offload writes nothing
    result = await segment_offload(router=TOP1)(TASK, Context({"small": small, "large": large}))
    assert result.answer == "ab"
    assert result.info["offloads"] == 1 and result.info["large_tokens"] == 0


async def test_needs_top_logprobs_and_prefix_continuation() -> None:
    small, large = pair()
    small.capabilities = ModelCapabilities(
        top_logprobs=20, prefix_continuation=False, tokenizer_id="fake-ascii"
    )
    with pytest.raises(CapabilityError, match="prefix continuation"):
        await segment_offload()(TASK, Context({"small": small, "large": large}))
    with pytest.raises(CapabilityError, match="top-50 logprobs"):
        await segment_offload(top_logprobs=50)(TASK, Context({"small": FakeModel(), "large": FakeModel()}))
    with pytest.raises(ConfigError, match="hands over a 'token'"):
        segment_offload(router="entropy")
    with pytest.raises(ConfigError, match="must be >= 1"):
        segment_offload(chunk_tokens=0)
    calibrated = make_router("window_entropy").with_threshold(
        1.2, target="rate=0.02", rate=0.02, n=100, estimator="full"
    )
    with pytest.raises(
        ConfigError, match="calibrated on 'full' entropies and segment_offload computes 'lower'"
    ):
        segment_offload(router=calibrated)
    assert segment_offload(router=calibrated, estimator="full").name == "segment_offload"
