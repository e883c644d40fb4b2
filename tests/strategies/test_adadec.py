"""adadec on a forking fake model (exact choices), threshold learning, budget, capabilities, e2e."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task
from forkpath._trace import Tracer
from forkpath.models import FakeModel, ModelCapabilities
from forkpath.strategies import Context
from forkpath.strategies._adadec import adadec
from forkpath.strategies._entropy_threshold import (
    EntropyThreshold,
    calibrate_entropy_threshold,
    fit_entropy_threshold,
    load_threshold,
    save_threshold,
)

try:
    from ._forking_fake import ForkingFake
except ImportError:  # tests/strategies is not a package
    from _forking_fake import ForkingFake

TASK = Task(id="t/0", prompt="What is 6*7?")
# At "ab" the X branch is more likely (0.55) but then splits three ways; Y ends at once.
BRANCHES = {"6*7": {"abX1": 0.2, "abX2": 0.2, "abX3": 0.15, "abY": 0.45}}


def forking() -> ForkingFake:
    return ForkingFake(branches=BRANCHES)


async def test_lookahead_rerank_prefers_the_branch_that_stays_likely() -> None:
    m = forking()
    with Tracer() as tracer:
        result = await adadec(threshold=0.5)(TASK, Context({"default": m}))
    assert result.answer == "abY"
    assert result.info["pauses"] == 1 and result.info["changed"] == 1
    pause = result.info["pause_detail"][0]
    assert pause["position"] == 2 and pause["greedy"] == ord("X") and pause["chosen"] == ord("Y")
    assert math.log(2) < pause["entropy"] < 1.0
    assert [e.type for e in tracer.events].count("expansion") == 3
    usage = result.usage["fake/fork"]
    assert usage.calls == 1 + 3  # the decode and three lookahead branches


async def test_infinite_threshold_is_greedy_and_no_lookahead_is_greedy_too() -> None:
    greedy = await adadec(threshold=math.inf)(TASK, Context({"default": forking()}))
    assert greedy.answer in ("abX1", "abX2") and greedy.info["pauses"] == 0
    blind = await adadec(threshold=0.5, lookahead=0)(TASK, Context({"default": forking()}))
    assert blind.answer == greedy.answer and blind.info["changed"] == 0
    beam = await adadec(threshold=0.5, lookahead_beam=3)(TASK, Context({"default": forking()}))
    assert beam.answer == "abY"


async def test_budget_stops_with_the_tokens_so_far() -> None:
    budget = Budget(BudgetLimits(max_tokens=2))
    result = await adadec(threshold=0.5)(TASK, Context({"default": forking()}, budget=budget))
    assert (
        result.stopped == "budget" and "abY".startswith(result.answer or "x") and len(result.answer or "") < 3
    )


async def test_capability_and_threshold_errors_come_before_any_call(tmp_path: Path) -> None:
    chat_only = FakeModel("fake/chat", script={"6*7": ["42"]})
    chat_only.capabilities = ModelCapabilities(logprobs=True, top_logprobs=5)
    with pytest.raises(CapabilityError, match="adadec needs the full next-token distribution"):
        await adadec(threshold=1.0)(TASK, Context({"default": chat_only}))
    with pytest.raises(ConfigError, match="adadec needs an entropy threshold"):
        adadec()
    m = forking()
    with pytest.raises(ConfigError, match="does not exist"):
        await adadec(threshold_file=str(tmp_path / "none.json"))(TASK, Context({"default": m}))
    assert chat_only.calls == 0 and m.token_calls == 0


def test_threshold_fit_separates_clean_classes() -> None:
    rng = np.random.default_rng(1)
    right = rng.uniform(0.0, 0.9, 300)
    wrong = rng.uniform(1.1, 3.0, 60)
    h, _a, b, cut, accuracy = fit_entropy_threshold(
        [*right, *wrong], [True] * len(right) + [False] * len(wrong), seed=0
    )
    assert b < 0 and 0.0 < cut < 1.0
    assert 0.85 <= h <= 1.15 and accuracy == 1.0


def test_threshold_fit_rejects_degenerate_data() -> None:
    with pytest.raises(ConfigError, match="at least 5 positions of each class"):
        fit_entropy_threshold([0.1, 0.2, 3.0], [True, True, False])
    with pytest.raises(ConfigError, match="does not predict errors"):
        fit_entropy_threshold([3.0] * 10 + [0.1] * 10, [True] * 10 + [False] * 10)


async def test_calibration_on_the_fake_and_threshold_file_roundtrip(tmp_path: Path) -> None:
    # Reference answers that the fake follows confidently (right) mixed with ones it does not.
    script = {f"q{i}": [f"answer {i}"] for i in range(12)}
    m = FakeModel("fake/cal", script=script, confidence=0.6)
    tasks = [
        Task(id=f"c{i}", prompt=f"q{i}", answer=f"answer {i}" if i % 2 else f"other {i}!") for i in range(12)
    ]
    found = await calibrate_entropy_threshold(m, tasks)
    assert found.model == "fake/cal" and found.positions > 0 and found.slope < 0
    assert 0.0 < found.top1_rate < 1.0 and len(found.tasks) == 12
    path = tmp_path / "thresholds.json"
    save_threshold(found, path)
    assert load_threshold(path, "fake/cal") == found
    with pytest.raises(ConfigError, match="no threshold learned for model fake/other"):
        load_threshold(path, "fake/other")
    fork = ForkingFake("fake/cal", branches=BRANCHES)
    save_threshold(EntropyThreshold(**{**found.model_dump(), "threshold": 0.5}), path)
    result = await adadec(threshold_file=str(path))(TASK, Context({"default": fork}))
    assert result.info["threshold"] == 0.5 and result.answer == "abY"


@pytest.mark.slow
async def test_end_to_end_on_smollm2_matches_greedy_without_pauses_and_pauses_below() -> None:
    from forkpath import humaneval_task, task_messages
    from forkpath.models import GenerateRequest, get_model
    from forkpath.verifiers import make_verifier

    m = get_model("local/smollm2-135m")
    task = humaneval_task(0)
    plain = await m.generate(GenerateRequest(messages=task_messages(task), max_tokens=10))
    same = await adadec(threshold=math.inf, max_tokens=10)(task, Context({"default": m}))
    assert same.answer == plain.text and same.info["pauses"] == 0
    paused = await adadec(threshold=0.5, max_pauses=2, lookahead=3, max_tokens=10)(
        task, Context({"default": m}, make_verifier("python_tests"))
    )
    assert 1 <= paused.info["pauses"] <= 2
    assert paused.usage[m.id].calls == 1 + 3 * paused.info["pauses"]
    assert paused.passed is False  # 10 tokens cannot solve it; the real sandbox said so
    assert paused.candidates[0].verdict is not None


async def test_token_decoder_charges_forward_pass_work() -> None:
    from forkpath.models import usage_meter
    from forkpath.strategies._lookahead import TokenDecoder

    m = forking()
    prompt = m.chat_prefix(())  # "\nassistant: ": 12 prompt tokens
    decoder = TokenDecoder(m, prompt, by="test")
    with usage_meter() as meter:
        decoder.charge_call()
        await decoder.logprobs([])  # the prefill
        await decoder.logprobs([97])  # one generated token evaluated
        await decoder.logprobs([97, 98])  # one more
        decoder.forget([*prompt, 97, 120])  # another request shared the prompt and "a"
        await decoder.logprobs([97, 98])  # re-evaluates only "b"
    usage = meter.by_model["fake/fork"]
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (1, len(prompt), 3)
    assert decoder.forward_passes == 4
