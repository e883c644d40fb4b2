"""speculative_decoding: exact greedy output and statistics on fakes, and a chi-square test that
the sampling rule preserves the target distribution."""

from __future__ import annotations

import numpy as np
import pytest

from forkpath import CapabilityError, ConfigError, Task
from forkpath._trace import RoutingEvent, StrategyEvent, Tracer
from forkpath.models import FakeModel, GenerateRequest
from forkpath.strategies._base import Context
from forkpath.strategies._speculative import accept_draft, accept_draft_greedy, speculative_decoding

from ._fakes import ScriptedFake

TASK = Task(id="t/0", prompt="Q?", kind="text")

CHI2_CRITICAL_DF4_P001 = 18.467
"""Upper 0.1% point of the chi-square distribution with 4 degrees of freedom (standard tables)."""


async def test_greedy_output_is_the_large_models_and_the_statistics_are_exact() -> None:
    # The draft model writes "abcd..." but follows "abcX..." once it sees the X.
    small = FakeModel("fake/small", script={"Q?": ["abcdefgh", "abcXefgh"]})
    large = FakeModel("fake/large", script={"Q?": ["abcXefgh"]})
    alone = await large.generate(GenerateRequest(prompt="user: Q?"))
    with Tracer() as tracer:
        result = await speculative_decoding(draft_tokens=4)(TASK, Context({"small": small, "large": large}))
    assert result.answer == alone.text == "abcXefgh"
    assert result.info["token_ids"] == alone.token_ids
    # 1: draft abcd, target keeps abc and writes X (gamma 4 -> 3); 2: draft efg, all kept + bonus h
    # (gamma 3 -> 5); 3: draft END, kept: done.
    assert result.info["iterations"] == 3
    assert (result.info["drafted"], result.info["accepted"]) == (8, 7)
    assert result.info["draft_lengths"] == {"1": 1, "3": 1, "4": 1}
    assert result.info["finish"] == "stop"
    routing = [(e.decision, e.position, e.features) for e in tracer.events if isinstance(e, RoutingEvent)]
    assert routing == [
        ("reject", 0, {"drafted": 4.0, "accepted": 3.0}),
        ("accept", 4, {"drafted": 3.0, "accepted": 3.0}),
        ("accept", 8, {"drafted": 1.0, "accepted": 1.0}),
    ]
    end = [e for e in tracer.events if isinstance(e, StrategyEvent) and e.phase == "end"][-1]
    assert end.info["acceptance_rate"] == pytest.approx(7 / 8)
    assert result.usage["fake/large"].calls == 3


async def test_fixed_draft_length_and_max_tokens() -> None:
    small = ScriptedFake("fake/small", ["0123456789"])
    large = ScriptedFake("fake/large", ["0123456789"])
    result = await speculative_decoding(draft_tokens=3, adaptive=False, max_tokens=7)(
        TASK, Context({"small": small, "large": large})
    )
    assert result.answer == "0123456"
    assert result.info["draft_lengths"] == {"3": 2}  # two drafts of 3, each fully kept + 1 bonus
    assert (result.info["accepted"], result.info["finish"]) == (6, "length")


async def test_sampling_mode_runs_on_the_fakes_and_is_reproducible() -> None:
    small = FakeModel("fake/small", script={"Q?": ["abcdefgh"]}, confidence=0.6)
    large = FakeModel("fake/large", script={"Q?": ["abcdefgh"]}, confidence=0.6)
    context = Context({"small": small, "large": large})
    first = await speculative_decoding(temperature=1.0, seed=3, max_tokens=12)(TASK, context)
    again = await speculative_decoding(temperature=1.0, seed=3, max_tokens=12)(TASK, context)
    assert first.answer == again.answer and first.info["token_ids"] == again.info["token_ids"]
    assert 0.0 < first.info["acceptance_rate"] <= 1.0


async def test_needs_a_shared_tokenizer_and_sane_draft_lengths() -> None:
    small = FakeModel("fake/small")
    other = FakeModel("fake/large", tokenizer_id="other")
    with pytest.raises(CapabilityError, match="shared tokenizer"):
        await speculative_decoding()(TASK, Context({"small": small, "large": other}))
    assert small.calls == 0
    with pytest.raises(ConfigError, match="draft_tokens <= max_draft_tokens"):
        speculative_decoding(draft_tokens=9, max_draft_tokens=8)


async def test_greedy_needs_a_batch_invariant_target_and_sampling_does_not() -> None:
    small = FakeModel("fake/small", script={"Q?": ["abcdefgh"]})
    large = FakeModel("fake/large", script={"Q?": ["abcdefgh"]})
    large.capabilities = large.capabilities.model_copy(update={"batch_invariant": False})
    context = Context({"small": small, "large": large})
    with pytest.raises(CapabilityError, match=r"batch-invariant logits .*batch_invariant: true.*fake/large"):
        await speculative_decoding()(TASK, context)
    assert large.calls == 0
    result = await speculative_decoding(temperature=1.0, max_tokens=4)(TASK, context)
    assert result.info["tokens"] == 4


def test_greedy_rule_keeps_the_agreeing_prefix() -> None:
    rows = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]))
    assert accept_draft_greedy(rows, [0, 1]) == (2, 2)  # all kept, bonus argmax 2
    assert accept_draft_greedy(rows, [0, 2]) == (1, 1)  # second rejected, target's choice 1
    assert accept_draft_greedy(rows, [1, 1]) == (0, 0)


def _chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


def _distributions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    target = rng.dirichlet(np.ones(5), size=3)  # p_1, p_2, p_3 (gamma = 2, plus the bonus row)
    draft = rng.dirichlet(np.ones(5), size=2)  # q_1, q_2: deliberately different from p
    return target, draft


def _emitted(rule: str, trials: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the first emitted token, and of the second among iterations that emit two."""
    target, draft = _distributions()
    rng = np.random.default_rng(11)
    first, second = np.zeros(5), np.zeros(5)
    for _ in range(trials):
        tokens = [int(rng.choice(5, p=q)) for q in draft]
        if rule == "speculative":
            n, nxt = accept_draft(target, draft, tokens, rng)
        else:  # the naive rule "keep the draft": its output follows q, not p
            n, nxt = 2, int(rng.choice(5, p=target[2]))
        out = [*tokens[:n], nxt]
        first[out[0]] += 1
        if len(out) > 1:
            second[out[1]] += 1
    return first, second


def test_speculative_sampling_preserves_the_target_distribution() -> None:
    target, draft = _distributions()
    assert np.abs(target[:2] - draft).sum() > 0.5  # the test is not trivial: p and q differ
    first, second = _emitted("speculative", 20000)
    assert _chi_square(first, target[0]) < CHI2_CRITICAL_DF4_P001
    assert second.sum() > 5000
    assert _chi_square(second, target[1]) < CHI2_CRITICAL_DF4_P001
    # The same test has the power to reject a rule that does not preserve p.
    naive_first, _ = _emitted("naive", 4000)
    assert _chi_square(naive_first, target[0]) > 10 * CHI2_CRITICAL_DF4_P001


def test_acceptance_rule_rejects_malformed_inputs() -> None:
    target, draft = _distributions()
    with pytest.raises(ValueError, match="need 3 target rows"):
        accept_draft(target[:2], draft, [0, 1], np.random.default_rng(0))
