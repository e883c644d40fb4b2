"""Forking-token analysis on the fake model: a planted forking token is found at exactly its index."""

from __future__ import annotations

from pathlib import Path

import pytest

from forkpath._forks import IndexOutcomes, analyze_forks, find_forks
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
    report = await analyze_forks(model, MESSAGES, answer, outcome=last_word, samples=8, max_tokens=8)
    assert report.forks == [FORK]
    assert report.indexes[FORK].counts == {"yes": 4, "no": 4}
    assert report.indexes[FORK + 1].counts == {"yes": 8}
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


def test_find_forks_uses_total_variation() -> None:
    rows = [
        IndexOutcomes(index=0, token="a", counts={"x": 5, "y": 5}),
        IndexOutcomes(index=1, token="b", counts={"x": 6, "y": 4}),
        IndexOutcomes(index=2, token="c", counts={"y": 10}),
    ]
    forks, shifts = find_forks(rows, threshold=0.5)
    assert forks == [1] and shifts == pytest.approx([0.1, 0.6])
