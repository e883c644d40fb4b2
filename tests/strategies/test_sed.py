"""sed on a forking fake model (exact choices), its fallback, budget, capability checks, e2e."""

from __future__ import annotations

import pytest

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task
from forkpath._trace import Tracer
from forkpath.models import FakeModel, ModelCapabilities
from forkpath.strategies import Context
from forkpath.strategies._sed import sed

try:
    from ._forking_fake import ForkingFake
except ImportError:  # tests/strategies is not a package
    from _forking_fake import ForkingFake

TASK = Task(id="t/0", prompt="What is 6*7?")
BRANCHES = {"6*7": {"41 maybe": 0.55, "42 maybe": 0.45}}
# The self-evaluation reads the answer in the conversation: 42 is judged right, 41 wrong.
JUDGE = {"assistant: 42": ["yes"], "assistant: 41": ["no"]}


def forking() -> ForkingFake:
    return ForkingFake(branches=BRANCHES, script=JUDGE)


async def test_self_evaluation_overrides_greedy_at_the_chaotic_point() -> None:
    m = forking()
    with Tracer() as tracer:
        result = await sed(k=2)(TASK, Context({"default": m}))
    assert result.answer == "42 maybe"
    assert result.info["pauses"] == 1 and result.info["changed"] == 1
    pause = result.info["pause_detail"][0]
    assert pause["position"] == 1 and pause["greedy"] == ord("1") and pause["chosen"] == ord("2")
    low, high = pause["evaluations"]
    assert low < 0.05 and high > 0.95
    assert result.info["evaluations"] == 2 and m.calls == 2  # one self-evaluation per branch
    kinds = [e.type for e in tracer.events]
    assert kinds.count("expansion") == 2 and kinds[0] == "strategy" and kinds[-1] == "strategy"
    usage = result.usage["fake/fork"]
    # main decode + 2 speculation branches + 2 evaluations
    assert usage.calls == 5 and usage.completion_tokens > 0


async def test_weight_zero_is_greedy_and_a_high_ratio_never_pauses() -> None:
    assert (await sed(weight=0.0)(TASK, Context({"default": forking()}))).answer == "41 maybe"
    calm = await sed(ratio=0.9)(TASK, Context({"default": forking()}))
    assert calm.answer == "41 maybe" and calm.info["pauses"] == 0


async def test_entropy_criterion_and_pause_cap() -> None:
    result = await sed(criterion="entropy", entropy_threshold=0.6, k=2)(TASK, Context({"default": forking()}))
    assert result.answer == "42 maybe" and result.info["pauses"] == 1
    capped = await sed(k=2, max_pauses=0)(TASK, Context({"default": forking()}))
    assert capped.answer == "41 maybe" and capped.info["pauses"] == 0


async def test_budget_stops_decoding_with_the_text_so_far() -> None:
    m = forking()
    budget = Budget(BudgetLimits(max_tokens=3))
    result = await sed(k=2)(TASK, Context({"default": m}, budget=budget))
    assert result.stopped == "budget"
    assert "42 maybe".startswith(result.answer or "x") or "41 maybe".startswith(result.answer or "x")
    assert len(result.answer or "") < len("41 maybe")


async def test_chat_only_model_fails_before_any_call_or_uses_the_fallback() -> None:
    chat_only = FakeModel(
        "fake/chat", script={"assistant: 42": ["yes"], "assistant: 41": ["no"], "6*7": ["41", "42"]}
    )
    chat_only.capabilities = ModelCapabilities()
    with pytest.raises(
        CapabilityError, match="sed needs the full next-token distribution, prefix continuation"
    ):
        await sed()(TASK, Context({"default": chat_only}))
    assert chat_only.calls == 0
    result = await sed(k=2, fallback="sequence")(TASK, Context({"default": chat_only}))
    assert result.info["mode"] == "sequence"
    assert [c.text for c in result.candidates] == ["41", "42"]
    assert result.answer == "42"  # the self-evaluation (yes for 42) decides between samples
    assert chat_only.calls == 4


def test_bad_configuration_is_rejected_at_creation() -> None:
    with pytest.raises(ConfigError, match="k must be at least 2"):
        sed(k=1)
    with pytest.raises(ConfigError, match=r"weight must be in \[0, 1\]"):
        sed(weight=2.0)


@pytest.mark.slow
async def test_end_to_end_on_smollm2_pauses_evaluates_and_is_judged() -> None:
    from forkpath import humaneval_task, task_messages
    from forkpath.models import GenerateRequest, get_model
    from forkpath.verifiers import make_verifier

    m = get_model("local/smollm2-135m")
    task = humaneval_task(0)
    result = await sed(k=2, ratio=0.3, horizon=4, max_pauses=1, max_tokens=8)(
        task, Context({"default": m}, make_verifier("python_tests"))
    )
    assert result.info["mode"] == "token" and result.answer
    assert result.info["tokens"] <= 8 and result.info["pauses"] <= 1
    assert result.info["evaluations"] == 2 * result.info["pauses"]
    assert result.usage[m.id].calls == 1 + 2 * result.info["pauses"] + result.info["evaluations"]
    assert result.passed is False and result.candidates[0].verdict is not None  # 8 tokens solve nothing
    # with the threshold above any possible ratio, SED is greedy decoding
    greedy = await sed(ratio=1.01, max_tokens=8)(task, Context({"default": m}))
    plain = await m.generate(GenerateRequest(messages=task_messages(task), max_tokens=8))
    assert greedy.info["pauses"] == 0 and greedy.answer == plain.text
