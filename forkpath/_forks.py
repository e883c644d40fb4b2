"""Forking-token analysis (Bigelow et al. 2024, "Forking Paths in Neural Text Generation").

For a prompt and a base answer, resample continuations from each token index of the answer,
map every completed answer to an *outcome* (a verifier's verdict, or the extracted answer), and
estimate the outcome distribution per index. Index ``t`` resamples from the prefix
``answer[:t]``, so the distribution ``P_t`` is what the model does when it may still change
token ``t``; fixing token ``t`` moves it to ``P_{t+1}``. Token ``t`` is a *forking token* when
that move is large and real: the total variation distance ``TV(P_t, P_{t+1})`` reaches
``threshold`` and a permutation test says two groups of samples from one distribution would
rarely differ that much (p-value at most ``alpha``). (The paper fits a Bayesian change-point
model to the same series; the TV step is its simplest reading, and one token deciding the
outcome is a TV step near 1.) The test matters when outcomes are many: two groups of 8 answers
to a math problem drawn from one spread-out distribution often differ by TV 0.5 or more.

Continuations are ``generate_n`` calls on the model, so a model with a store cache replays them.

Example:
    >>> report = await analyze_forks(model, messages, answer_tokens, outcome=extract, samples=16)
    >>> report.forks, report.to_json()
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from forkpath._concurrency import gather_all
from forkpath.models import GenerateRequest, Message, Model, teacher_force, token_model

Outcome = Callable[[str], Awaitable[str]]
"""Maps a whole answer (base prefix + continuation) to an outcome label."""


class IndexOutcomes(BaseModel):
    """The outcome distribution when resampling from one token index."""

    model_config = ConfigDict(extra="forbid")

    index: int
    token: str
    """The base answer's token at this index (the one resampled); empty past the end."""
    counts: dict[str, int]
    """Outcome -> how many of the continuations reached it."""

    def probability(self, outcome: str) -> float:
        total = sum(self.counts.values())
        return self.counts.get(outcome, 0) / total if total else 0.0


class ForkReport(BaseModel):
    """What :func:`analyze_forks` found."""

    model_config = ConfigDict(extra="forbid")

    model: str
    task: str | None = None
    """The dataset task analysed (``gsm8k/3``), when it came from one."""
    answer: str
    tokens: list[str] = Field(default_factory=list)
    """The base answer's tokens, as text (every token, analysed or not)."""
    base_outcome: str
    """The outcome of the base answer itself."""
    samples: int
    stride: int = 1
    """Every ``stride``-th index was resampled: a fork at ``t`` lies in ``[t, t + stride)``."""
    threshold: float
    indexes: list[IndexOutcomes] = Field(default_factory=list)
    alpha: float = 1.0
    """Largest p-value of a fork's shift (1: no test)."""
    forks: list[int] = Field(default_factory=list)
    """Token indexes whose choice moves the outcome distribution by at least ``threshold`` (TV)
    with a p-value of at most ``alpha``."""
    shifts: list[float] = Field(default_factory=list)
    """``TV(P_t, P_next)`` for each analysed index but the last."""
    p_values: list[float] = Field(default_factory=list)
    """For each shift, the permutation test's p-value: how often randomly regrouped samples of
    the two indexes differ by at least that much (:func:`shift_p_value`)."""
    branch_points: list[int] = Field(default_factory=list)
    """Where token tree search (``branch_at: uncertain``) would branch on this answer: the
    indexes whose most likely token has probability below ``uncertainty``."""
    uncertainty: float = 0.9

    def coinciding(self) -> list[int]:
        """The forks that coincide with a branch point: one lies in the fork's window
        ``[t, t + stride)`` (with stride 1, the fork's own token)."""
        points = sorted(self.branch_points)
        return [t for t in self.forks if any(t <= b < t + self.stride for b in points)]

    def to_json(self, path: str | Path) -> Path:
        out = Path(path)
        out.write_text(json.dumps(self.model_dump(mode="json"), indent=1))
        return out

    def plot(self, path: str | Path) -> Path:
        """Outcome probability over token index, the base answer's outcome in bold, forks marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        outcomes = sorted({o for ix in self.indexes for o in ix.counts}, key=lambda o: o != self.base_outcome)
        xs = [ix.index for ix in self.indexes]
        fig, ax = plt.subplots(figsize=(10, 3.5))
        for outcome in outcomes[:6]:
            ys = [ix.probability(outcome) for ix in self.indexes]
            bold = outcome == self.base_outcome
            ax.plot(xs, ys, lw=2.2 if bold else 1.0, label=f"{outcome[:24]}{' (base)' if bold else ''}")
        for point in self.branch_points:
            ax.axvline(point, color="grey", ls=":", lw=0.6)
        for fork in self.forks:
            ax.axvline(fork, color="red", ls="--", lw=0.8)
            token = next((ix.token for ix in self.indexes if ix.index == fork), "")
            ax.text(fork, 1.02, repr(token)[1:-1][:12], rotation=60, fontsize=7, color="red")
        ax.set_xlabel("token index of the base answer")
        ax.set_ylabel("P(outcome)")
        ax.set_ylim(0, 1.0)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def total_variation(a: dict[str, int], b: dict[str, int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in a.keys() | b.keys())


def shift_p_value(a: dict[str, int], b: dict[str, int], *, rounds: int = 2000, seed: int = 0) -> float:
    """Permutation test of ``TV(a, b)``: the fraction of random regroupings of the pooled
    outcomes (into groups of the same sizes) whose TV is at least the observed one, counting the
    observed grouping itself. Deterministic for a given ``seed``."""
    observed = total_variation(a, b)
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb or observed == 0.0:
        return 1.0
    names = sorted(a.keys() | b.keys())
    pooled = np.repeat(np.arange(len(names)), [a.get(k, 0) + b.get(k, 0) for k in names])
    shuffled = np.random.default_rng(seed).permuted(np.tile(pooled, (rounds, 1)), axis=1)
    first = np.stack([(shuffled[:, :na] == k).sum(axis=1) for k in range(len(names))], axis=1)
    second = np.stack([(shuffled[:, na:] == k).sum(axis=1) for k in range(len(names))], axis=1)
    tv = 0.5 * np.abs(first / na - second / nb).sum(axis=1)
    return float((1 + np.count_nonzero(tv >= observed - 1e-12)) / (rounds + 1))


def find_forks(
    indexes: Sequence[IndexOutcomes], threshold: float, alpha: float = 1.0
) -> tuple[list[int], list[float], list[float]]:
    """The forking indexes, the TV shift after each analysed index and its p-value."""
    pairs = list(itertools.pairwise(indexes))
    shifts = [total_variation(a.counts, b.counts) for a, b in pairs]
    p_values = [shift_p_value(a.counts, b.counts) for a, b in pairs]
    forks = [
        indexes[i].index
        for i, (s, p) in enumerate(zip(shifts, p_values, strict=True))
        if s >= threshold and p <= alpha
    ]
    return forks, shifts, p_values


async def analyze_forks(
    model: Model,
    messages: Sequence[Message],
    answer: Sequence[int],
    *,
    outcome: Outcome,
    samples: int = 16,
    stride: int = 1,
    max_tokens: int = 256,
    temperature: float = 1.0,
    threshold: float = 0.5,
    alpha: float = 0.05,
    uncertainty: float = 0.9,
    seed: int = 0,
    parallel: int = 1,
) -> ForkReport:
    """Resample ``samples`` continuations from every ``stride``-th token index of ``answer``
    (token ids of ``model``) and find the forking tokens (see the module docstring); also
    record token tree search's branch points on the answer (top-1 probability below
    ``uncertainty``, from one teacher-forced pass) to compare with them.

    ``max_tokens`` bounds a whole answer, as it bounded the base answer: a continuation from
    index ``t`` gets the rest, ``max_tokens - t`` (or ``len(answer) - t`` for a longer given
    answer), so every resampled answer has the base answer's length budget. The end of an answer
    that used the whole budget is not analysed: nothing is left to resample there, and the cut
    answer's outcome would show as a fork of the budget, not of a token.

    ``parallel`` indexes are resampled at once: their ``parallel * samples`` continuations go
    to the model together (the local engine decodes them in one batch)."""
    tm = token_model(model, by="analyze forks")
    prompt = tm.chat_prefix(list(messages))
    answer = list(answer)
    base_text = tm.detokenize(answer)
    base_outcome = await outcome(base_text)
    length = max(max_tokens, len(answer))
    limit = asyncio.Semaphore(parallel)
    judging = asyncio.Lock()

    async def resample(t: int) -> IndexOutcomes:
        token = tm.detokenize([answer[t]]) if t < len(answer) else ""
        request = GenerateRequest(
            prompt_tokens=(*prompt, *answer[:t]), max_tokens=length - t, temperature=temperature, seed=seed
        )
        async with limit:
            results = await model.generate_n(request, samples)
        head = tm.detokenize(answer[:t])
        async with judging:  # one outcome at a time: a sandboxed verifier run hung when two overlapped
            labels = [await outcome(head + r.text) for r in results]
        return IndexOutcomes(index=t, token=token, counts=dict(Counter(labels)))

    # from the end of an answer that used the whole budget nothing can be resampled: no index there
    indexes = [t for t in range(0, len(answer) + 1, stride) if t < length]
    rows = list(await gather_all(*(resample(t) for t in indexes)))
    forks, shifts, p_values = find_forks(rows, threshold, alpha)
    rows_lp = await teacher_force(model, prompt, answer)
    top1 = np.exp(rows_lp[: len(answer)].max(axis=1))
    branch_points = [int(i) for i in np.flatnonzero(top1 < uncertainty)]
    return ForkReport(
        model=model.id,
        answer=base_text,
        tokens=[tm.detokenize([t]) for t in answer],
        base_outcome=base_outcome,
        samples=samples,
        stride=stride,
        threshold=threshold,
        alpha=alpha,
        indexes=rows,
        forks=forks,
        shifts=shifts,
        p_values=p_values,
        branch_points=branch_points,
        uncertainty=uncertainty,
    )


def verdict_outcome(task: Any, verifier: Any) -> Outcome:
    """The verifier's verdict as the outcome: ``pass`` or ``fail``."""

    async def label(text: str) -> str:
        verdict = await verifier.verify(task, text)
        return "pass" if verdict.passed else "fail"

    return label
