"""Strategies whose output is final as it is produced write it into the answer stream as it comes:
a cascade's deferred answer, CoThink's solving stage, token routing, speculative decoding. The
text arrives before the call that produced it is finished and accounted (order, not time)."""

from __future__ import annotations

from typing import Any

from forkpath import Task
from forkpath._answer import (
    AnswerStream,
    answer_stream,
    current_answer_stream,
    generate_answer,
    strategy_scope,
)
from forkpath._trace import ModelCallEvent, StrategyEvent, TraceEvent, Tracer
from forkpath.models import FakeModel, GenerateRequest, Message
from forkpath.strategies import Context, cascade, cothink, speculative_decoding, token_routing

TASK = Task(id="t", prompt="Q?")


class Log(Tracer):
    """Text pieces and trace events, in the order they happened."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[str, Any]] = []

    def record(self, event: TraceEvent) -> None:
        super().record(event)
        self.order.append(("event", event))

    def text(self, delta: str) -> None:
        self.order.append(("text", delta))

    @property
    def streamed(self) -> str:
        return "".join(x for kind, x in self.order if kind == "text")

    def first_text(self) -> int:
        return next(i for i, (kind, _) in enumerate(self.order) if kind == "text")

    def index(self, match: Any) -> int:
        return next(i for i, (kind, x) in enumerate(self.order) if kind == "event" and match(x))


async def run(strategy: Any, context: Context, task: Task = TASK) -> tuple[Any, Log]:
    log = Log()
    with log, answer_stream(AnswerStream(log.text)):
        result = await strategy(task, context)
    return result, log


def strategy_end(event: Any) -> bool:
    return isinstance(event, StrategyEvent) and event.phase == "end"


async def test_a_cascade_streams_its_deferred_answer_as_the_large_model_writes_it() -> None:
    small = FakeModel("fake/small", script={"Q?": ["a long and winding answer"]})
    large = FakeModel("fake/large", script={"Q?": ["yes, certainly"]})
    result, log = await run(
        cascade(router={"name": "chow_sum", "threshold": -1.0}), Context({"small": small, "large": large})
    )
    assert result.info["deferred"] and log.streamed == result.answer == "yes, certainly"
    texts = [x for kind, x in log.order if kind == "text"]
    assert len(texts) == len("yes, certainly")  # one piece per token
    large_call = log.index(lambda e: isinstance(e, ModelCallEvent) and e.model == "fake/large")
    assert log.first_text() < large_call < log.index(strategy_end)


async def test_a_cascade_that_keeps_the_small_answer_streams_nothing_itself() -> None:
    small = FakeModel("fake/small", script={"Q?": ["42"]})
    large = FakeModel("fake/large", script={"Q?": ["forty-two"]})
    result, log = await run(
        cascade(router={"name": "chow_sum", "threshold": -1.0}), Context({"small": small, "large": large})
    )
    assert not result.info["deferred"] and log.streamed == ""  # the server sends it once chosen


async def test_cothink_streams_the_solving_stage_not_the_outline() -> None:
    planner = FakeModel("fake/instruct", script={"Problem": ["1. Read. 2. Answer."]})
    solver = FakeModel("fake/reasoning", script={"outline": ["The answer is seven."]})
    result, log = await run(cothink(), Context({"instruct": planner, "reasoning": solver}))
    assert log.streamed == result.answer == "The answer is seven."
    solve_call = log.index(lambda e: isinstance(e, ModelCallEvent) and e.model == "fake/reasoning")
    outline_call = log.index(lambda e: isinstance(e, ModelCallEvent) and e.model == "fake/instruct")
    assert outline_call < log.first_text() < solve_call


async def test_token_routing_streams_each_token_as_it_is_chosen() -> None:
    small = FakeModel("fake/small", script={"Q?": ["hello world"]})
    large = FakeModel("fake/large", script={"Q?": ["hello there"]})
    result, log = await run(
        token_routing(router={"name": "entropy", "threshold": 10.0}),
        Context({"small": small, "large": large}),
    )
    texts = [x for kind, x in log.order if kind == "text"]
    assert "".join(texts) == result.answer and len(texts) == len(result.answer)


async def test_speculative_decoding_streams_the_accepted_tokens() -> None:
    small = FakeModel("fake/small", script={"Q?": ["abcdefgh", "abcXefgh"]})
    large = FakeModel("fake/large", script={"Q?": ["abcXefgh"]})
    result, log = await run(speculative_decoding(draft_tokens=4), Context({"small": small, "large": large}))
    texts = [x for kind, x in log.order if kind == "text"]
    assert "".join(texts) == result.answer == "abcXefgh"
    assert texts == ["abcX", "efgh"]  # per iteration: the accepted draft plus the target's token


async def test_only_the_outermost_strategy_writes_and_nothing_is_written_without_a_stream() -> None:
    seen: list[Any] = []
    with answer_stream(AnswerStream(seen.append)):
        assert current_answer_stream() is None  # offered, not yet owned
        with strategy_scope():
            assert current_answer_stream() is not None
            with strategy_scope():
                assert current_answer_stream() is None  # a nested strategy's answer is not final
            assert current_answer_stream() is not None
    assert current_answer_stream() is None
    model = FakeModel(script={"hi": ["hello"]})
    request = GenerateRequest(messages=(Message(role="user", content="hi"),))
    assert (await generate_answer(model, request)).text == "hello" and seen == []
