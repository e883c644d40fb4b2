"""How the engine shapes a decode step: one ``llama_decode`` of all B rows, or several smaller.

A step that decodes the next token of B sequences costs far less than B one-row steps, but not
always least as one decode of B rows: ggml picks its matmul kernel by the number of rows (a
tiled kernel from eight rows, repacked gemm for groups of four), and on some models and
machines a split such as 4 + 4 beats one batch of 8 (docs/benchmarks.md, "Shaping a step").
Which split wins depends on the model's weight types, the CPU and the thread count, so it is
measured, not tabled: :class:`StepShaper` times the engine's own steps.

For each B it keeps a running mean of a step's seconds for every candidate chunk size (B
itself, and 8 and 4 when smaller than B), tries each candidate a few times in turn, then takes
the fastest. Now and then it measures again a candidate that came close (within ``margin`` of
the fastest), so that a change (a longer context, another process on the cores) is seen; one
far slower is not tried again (at B=16 a step in chunks of 4 can take 2.7x as long). Steps of at
most four rows are never split.
"""

from __future__ import annotations

from collections import defaultdict

CHUNKS = (8, 4)
"""Chunk sizes tried besides one decode of all rows."""


class StepShaper:
    """Chooses the chunk size of each decode-only step from measured step times.

    Args:
        trials: times each candidate is measured before the fastest is chosen.
        revisit: after the trials, every ``revisit``-th step of a given B measures, instead of the
            fastest, the close candidate measured longest ago.
        margin: a candidate is close when its mean step is at most this times the fastest's.
        window: the running mean's memory in steps (an exponential mean once this many are seen).
    """

    def __init__(self, *, trials: int = 3, revisit: int = 50, margin: float = 1.25, window: int = 16) -> None:
        self.trials = trials
        self.revisit = revisit
        self.margin = margin
        self.window = window
        self._mean: dict[tuple[int, int], float] = {}
        self._count: dict[tuple[int, int], int] = defaultdict(int)
        self._last: dict[tuple[int, int], int] = defaultdict(int)
        self._steps: dict[int, int] = defaultdict(int)

    @staticmethod
    def splits(rows: int) -> bool:
        """Whether a step of ``rows`` rows has a split to choose (more than four rows)."""
        return rows > min(CHUNKS)

    @staticmethod
    def candidates(rows: int) -> list[int]:
        return [rows, *(k for k in CHUNKS if k < rows)] if StepShaper.splits(rows) else [rows]

    def choose(self, rows: int) -> int:
        """The chunk size for a decode-only step of ``rows`` rows."""
        options = self.candidates(rows)
        if len(options) == 1:
            return rows
        self._steps[rows] += 1
        fastest = self.best(rows)
        if fastest is None:  # still trying each candidate in turn
            return min(options, key=lambda k: self._count[rows, k])
        if self._steps[rows] % self.revisit == 0:
            bound = self.margin * self._mean[rows, fastest]
            close = [k for k in options if k != fastest and self._mean[rows, k] <= bound]
            if close:
                return min(close, key=lambda k: self._last[rows, k])
        return fastest

    def record(self, rows: int, chunk: int, seconds: float) -> None:
        """The step of ``rows`` rows decoded in chunks of ``chunk`` took ``seconds``."""
        key = (rows, chunk)
        self._count[key] += 1
        self._last[key] = self._steps[rows]
        mean = self._mean.get(key)
        self._mean[key] = (
            seconds if mean is None else mean + (seconds - mean) / min(self._count[key], self.window)
        )

    def best(self, rows: int) -> int | None:
        """The chunk size chosen for ``rows`` rows once every candidate is measured (else None)."""
        options = self.candidates(rows)
        if any(self._count[rows, k] < self.trials for k in options):
            return None
        return min(options, key=lambda k: self._mean[rows, k])

    def table(self) -> dict[int, dict[int, float]]:
        """Mean seconds per step: ``{rows: {chunk: seconds}}`` for every measured pair."""
        out: dict[int, dict[int, float]] = defaultdict(dict)
        for (rows, chunk), mean in sorted(self._mean.items()):
            out[rows][chunk] = mean
        return dict(out)
