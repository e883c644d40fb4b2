"""Forking-token analysis on the fake model: a planted forking token is found at exactly its index."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from forkpath._forks import IndexOutcomes, analyze_forks, find_forks, shift_p_value
from forkpath.models import FakeModel, Message

MESSAGES = [Message(role="user", content="pick one")]
ANSWER = "I pick X and say"
FORK = ANSWER.index("X")


async def last_word(text: str) -> str:
    return text.split()[-1] if text.split() else "none"


def planted() -> FakeModel:
    """Before X is written the model says yes or no by turns; once X is there, always yes."""
    return FakeModel(
        script={
            "I pick X": [" yes"],  # the first key in the prompt wins: a prefix holding X
            "pick one": [" yes", " no"],
        }
    )


async def test_a_planted_forking_token_is_found_at_exactly_its_index(tmp_path: Path) -> None:
    model = planted()
    answer = model.tokenize(ANSWER)
    report = await analyze_forks(model, MESSAGES, answer, outcome=last_word, samples=16, max_tokens=24)
    assert report.forks == [FORK]
    assert report.indexes[FORK].counts == {"yes": 8, "no": 8}
    assert report.indexes[FORK + 1].counts == {"yes": 16}
    assert report.p_values[FORK] < 0.01  # 8/8 then 16/0: a regrouping that extreme has p = 0.0024
    assert report.shifts[FORK] == 0.5 and max(s for i, s in enumerate(report.shifts) if i != FORK) == 0.0
    assert report.plot(tmp_path / "forks.png").stat().st_size > 1000
    assert '"forks": [\n  ' + str(FORK) in report.to_json(tmp_path / "forks.json").read_text()


async def test_stride_analyses_every_kth_index_and_no_fork_without_a_shift() -> None:
    model = FakeModel(script={"pick one": [" yes"]})
    report = await analyze_forks(
        model, MESSAGES, model.tokenize(ANSWER), outcome=last_word, samples=2, stride=4
    )
    assert [ix.index for ix in report.indexes] == list(range(0, len(ANSWER) + 1, 4))
    assert report.forks == []


async def test_a_continuation_gets_the_rest_of_the_answers_token_budget() -> None:
    """Every resampled answer is held to the base answer's budget: from index t, max_tokens - t."""

    class Recording(FakeModel):
        budgets: ClassVar[dict[int, int]] = {}

        async def generate_n(self, request: Any, n: int, **kw: Any) -> Any:
            self.budgets[len(request.prompt_tokens)] = request.max_tokens
            return await super().generate_n(request, n, **kw)

    model = Recording(script={"pick one": [" yes"]})
    prompt = len(model.chat_prefix(MESSAGES))
    answer = model.tokenize(ANSWER)
    await analyze_forks(model, MESSAGES, answer, outcome=last_word, samples=1, stride=8, max_tokens=40)
    assert {k - prompt: v for k, v in model.budgets.items()} == {0: 40, 8: 32, 16: 24}
    model.budgets.clear()
    await analyze_forks(model, MESSAGES, answer, outcome=last_word, samples=1, stride=8, max_tokens=4)
    # a given answer longer than max_tokens is the budget; its end is not analysed
    assert {k - prompt: v for k, v in model.budgets.items()} == {0: 16, 8: 8}
    report = await analyze_forks(
        model, MESSAGES, answer, outcome=last_word, samples=3, stride=8, max_tokens=4
    )
    assert [ix.index for ix in report.indexes] == [0, 8]


def test_find_forks_uses_total_variation() -> None:
    rows = [
        IndexOutcomes(index=0, token="a", counts={"x": 5, "y": 5}),
        IndexOutcomes(index=1, token="b", counts={"x": 6, "y": 4}),
        IndexOutcomes(index=2, token="c", counts={"y": 10}),
    ]
    forks, shifts, p_values = find_forks(rows, threshold=0.5)
    assert forks == [1] and shifts == pytest.approx([0.1, 0.6])
    assert p_values[1] < 0.05 < p_values[0]


def test_a_shift_that_sampling_noise_explains_is_no_fork() -> None:
    """Two groups of 8 answers from one spread-out distribution often differ by TV 0.5 or more;
    the permutation test keeps them from counting as forks. A real jump passes it."""
    noisy = [
        IndexOutcomes(index=0, token="a", counts={"1": 2, "2": 2, "3": 2, "4": 1, "5": 1}),
        IndexOutcomes(index=16, token="b", counts={"1": 1, "6": 2, "7": 2, "8": 2, "9": 1}),
    ]
    forks, shifts, p_values = find_forks(noisy, threshold=0.5, alpha=0.05)
    assert shifts[0] >= 0.5 and p_values[0] > 0.05 and forks == []
    jump = [
        IndexOutcomes(index=0, token="a", counts={"pass": 8, "fail": 8}),
        IndexOutcomes(index=16, token="b", counts={"fail": 16}),
    ]
    assert find_forks(jump, threshold=0.5, alpha=0.05)[0] == [0]
    assert shift_p_value({"x": 4, "y": 4}, {"x": 8}) == pytest.approx(990 / 12870, abs=0.015)  # exact: 0.077
    assert shift_p_value({"x": 3}, {"x": 5}) == 1.0  # nothing moved


async def test_resampling_several_indexes_at_once_gives_the_same_report() -> None:
    model = planted()
    answer = model.tokenize(ANSWER)
    one = await analyze_forks(
        model, MESSAGES, answer, outcome=last_word, samples=4, max_tokens=24, parallel=1
    )
    many = await analyze_forks(
        model, MESSAGES, answer, outcome=last_word, samples=4, max_tokens=24, parallel=6
    )
    assert one.model_dump() == many.model_dump()
    assert many.tokens == list(ANSWER) and many.stride == 1


def test_a_fork_coincides_with_a_branch_point_in_its_stride_window() -> None:
    from forkpath._forks import ForkReport

    report = ForkReport(
        model="m", answer="", base_outcome="a", samples=2, stride=4, threshold=0.5,
        forks=[0, 8, 16], branch_points=[3, 12, 16],
    )  # fmt: skip
    assert report.coinciding() == [0, 16]  # 3 lies in [0, 4); nothing in [8, 12); 16 in [16, 20)


async def test_analyze_forks_on_smollm2_replays_its_continuations_from_the_store(tmp_path: Path) -> None:
    """The CLI's analysis on a real model: GSM8K problem 0, a short greedy answer, two
    continuations per 8th index through generate_n; a second run finds every call in the store."""
    from forkpath._cli._analyze import analyze_task
    from forkpath.models import usage_meter

    settings: dict[str, Any] = {
        "samples": 2,
        "stride": 8,
        "max_tokens": 24,
        "store_url": str(tmp_path / "cache.db"),
        "threads": 1,
    }
    with usage_meter() as first:
        report = await analyze_task("gsm8k/0", "local/smollm2-135m", **settings)
    assert report.task == "gsm8k/0" and report.model == "local/smollm2-135m"
    # the greedy answer uses the whole budget: its end (index 24) has nothing left to resample
    assert len(report.tokens) == 24 and [ix.index for ix in report.indexes] == [0, 8, 16]
    assert all(sum(ix.counts.values()) == 2 for ix in report.indexes)
    assert len(report.shifts) == 2 and all(0.0 <= s <= 1.0 for s in report.shifts)
    assert all(0 <= b < 24 for b in report.branch_points)
    made = first.total
    assert made.calls == 1 + 3 * 2 and made.cached_calls == 0  # the greedy answer, then 3 indexes x 2
    with usage_meter() as second:
        again = await analyze_task("gsm8k/0", "local/smollm2-135m", **settings)
    assert again.model_dump() == report.model_dump()
    assert second.total.cached_calls == made.calls
