"""StepShaper: measures every candidate split of a step, then keeps the fastest, and looks again."""

from __future__ import annotations

from forkpath.models._shaping import StepShaper


def run(shaper: StepShaper, rows: int, cost: dict[int, float], steps: int) -> list[int]:
    chosen = []
    for _ in range(steps):
        chunk = shaper.choose(rows)
        shaper.record(rows, chunk, cost[chunk])
        chosen.append(chunk)
    return chosen


def test_small_steps_are_never_split() -> None:
    shaper = StepShaper()
    assert [shaper.choose(b) for b in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert StepShaper.candidates(8) == [8, 4] and StepShaper.candidates(16) == [16, 8, 4]
    assert StepShaper.candidates(6) == [6, 4]


def test_each_candidate_is_tried_then_the_fastest_is_kept() -> None:
    shaper = StepShaper(trials=3, revisit=50)
    # on this "model" two decodes of 4 rows beat one of 8 (the 1.5B on this machine kind)
    chosen = run(shaper, 8, {8: 0.26, 4: 0.23}, 40)
    assert sorted(chosen[:6]) == [4, 4, 4, 8, 8, 8]
    assert set(chosen[6:]) == {4}
    assert shaper.best(8) == 4 and shaper.best(16) is None
    # and where one batch is fastest it stays one batch (other B are measured apart)
    assert set(run(shaper, 16, {16: 0.3, 8: 0.5, 4: 0.7}, 40)[9:]) == {16}
    assert shaper.table()[8] == {8: 0.26, 4: 0.23}


def test_a_change_in_cost_is_seen_at_a_revisit() -> None:
    shaper = StepShaper(trials=2, revisit=5, window=2)
    run(shaper, 8, {8: 0.2, 4: 0.3}, 10)
    assert shaper.best(8) == 8
    # one batch of 8 becomes slow (say another process takes a core from the tiled kernel)
    later = run(shaper, 8, {8: 0.5, 4: 0.3}, 30)
    assert shaper.best(8) == 4 and later[-5:].count(4) >= 4


def test_a_far_slower_split_is_not_tried_again() -> None:
    shaper = StepShaper(trials=2, revisit=5)
    # at B=16 on the 0.5B, chunks of 4 take 2.7x as long as one batch: measured, then left
    chosen = run(shaper, 16, {16: 0.15, 8: 0.18, 4: 0.40}, 60)
    assert chosen[6:].count(4) == 0
    assert chosen[6:].count(8) > 0  # 8 is within the margin: looked at again now and then
