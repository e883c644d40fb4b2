"""self_consistency: sample N answers, group equal final answers, return the most voted.

Voting is the parallel aggregation of Welleck et al. §k: every sample's extracted final answer
is one vote (``majority``), or carries a weight: the verifier's score (``verifier``; meant for a
judge or reward model, since a reference-answer verifier would simply reveal the answer) or
the sample's probability ``exp(mean token logprob)`` (``probability``). Answers are grouped by
equivalence: math answers with :func:`~forkpath.verifiers.math_equal` (``0.5`` and ``\\frac12``
are one answer), others by their normalised text. The chosen candidate is the most likely
member of the winning group.

With majority voting, sampling stops early once the leader cannot be overtaken by the samples
still to come (``early_stop``).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from forkpath import gather_all
from forkpath._params import Count, Seed, Temperature, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import budget_reached, verify_into

Extract = Literal["auto", "math", "last_line", "full"]


def extract_answer(text: str, how: Extract, task: Task) -> str | None:
    """The final answer a sample votes for (None: it states none and does not vote)."""
    from forkpath.verifiers import extract_math_answer

    if how == "auto":
        how = "math" if task.kind == "math" else "last_line"
    if how == "math":
        return extract_math_answer(text)
    if how == "last_line":
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else None
    return text.strip() or None


def _normal(answer: str) -> str:
    return re.sub(r"\s+", " ", answer.strip().rstrip(".")).lower()


def same_answer(a: str, b: str, *, math_mode: bool) -> bool:
    """Whether two extracted answers are the same vote."""
    if _normal(a) == _normal(b):
        return True
    if not math_mode:
        return False
    from forkpath.verifiers import math_equal

    return math_equal(a, b)


def group_votes(
    answers: list[str | None], weights: list[float], *, math_mode: bool
) -> list[tuple[list[int], float]]:
    """Groups of candidate indexes with equal answers and their total weight, biggest first.

    Ties keep the group that appeared first.
    """
    groups: list[tuple[str, list[int], float]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for g, (head, members, weight) in enumerate(groups):
            if same_answer(head, answer, math_mode=math_mode):
                groups[g] = (head, [*members, i], weight + weights[i])
                break
        else:
            groups.append((answer, [i], weights[i]))
    order = sorted(range(len(groups)), key=lambda g: (-groups[g][2], g))
    return [(groups[g][1], groups[g][2]) for g in order]


@strategies.register("self_consistency")
def self_consistency(
    n: Count = 8,
    model: str = "default",
    temperature: Temperature = 0.8,
    max_tokens: Tokens = 512,
    weighting: Literal["majority", "verifier", "probability"] = "majority",
    extract: Extract = "auto",
    early_stop: bool = True,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Sample ``n`` answers and return the one most samples agree on.

    Args:
        n: samples to draw (sample indexes 0..n-1).
        model: the context's model role to sample from.
        temperature: sampling temperature.
        max_tokens: most tokens per sample.
        weighting: ``majority`` (one vote each), ``verifier`` (vote = the context verifier's
            score) or ``probability`` (vote = exp(mean token logprob); needs logprobs).
        extract: how a sample's final answer is found: ``math`` (boxed / #### / "the answer is"
            / last number), ``last_line``, ``full`` (the whole text), ``auto`` (math for math
            tasks, else the last line).
        early_stop: with majority voting, stop once the leader cannot be overtaken.
        seed: base sampling seed.
        prompt: a template for the user message.
    """
    needs = ModelCapabilities(logprobs=weighting == "probability")

    async def run(task: Task, context: Context) -> StrategyResult:
        sampler = context.model(model)
        math_mode = extract == "math" or (extract == "auto" and task.kind == "math")
        base = GenerateRequest(
            messages=task_messages(task, prompt),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            logprobs=sampler.capabilities.logprobs,
        )
        candidates: list[Candidate] = []
        weights: list[float] = []
        stopped: Stopped = "done"
        sequential = early_stop and weighting == "majority"
        planned = n
        calls_left = context.budget.calls_left()
        if calls_left is not None and calls_left < n:
            planned, stopped = calls_left, "budget"
        i = 0
        while i < planned:
            if budget_reached(context):
                stopped = "budget"
                break
            if sequential and _decided(candidates, n, math_mode):
                stopped = "early_stop"
                break
            wave = range(i, i + 1) if sequential else range(i, planned)
            results = await gather_all(
                *(sampler.generate(base.model_copy(update={"sample_index": j})) for j in wave)
            )
            for j, result in zip(wave, results, strict=True):
                candidate = Candidate(
                    text=result.text,
                    model=result.model,
                    answer=extract_answer(result.text, extract, task),
                    mean_logprob=result.mean_logprob,
                )
                candidates.append(candidate)
                if weighting == "verifier":
                    await verify_into(context.verifier, task, candidate, j, detail="vote weight")
                    weights.append(candidate.score or 0.0)
                elif weighting == "probability":
                    lp = result.mean_logprob
                    candidate.score = math.exp(lp) if lp is not None else 0.0
                    weights.append(candidate.score)
                else:
                    candidate.score = 1.0
                    weights.append(1.0)
            i = wave.stop
        groups = group_votes([c.answer for c in candidates], weights, math_mode=math_mode)
        chosen: int | None = None
        if groups:
            members = groups[0][0]
            chosen = max(members, key=lambda m: (candidates[m].mean_logprob or float("-inf"), -m))
        elif candidates:
            chosen = 0  # nobody stated an answer: the first sample, for what it is worth
        votes = {candidates[m[0]].answer or "": round(w, 6) for m, w in groups}
        if weighting != "verifier" and context.verifier is not None and chosen is not None:
            # Reported only: the verdict does not influence the vote.
            await verify_into(
                context.verifier, task, candidates[chosen], chosen, detail="chosen answer", set_score=False
            )
        return StrategyResult(
            answer=candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={
                "votes": votes,
                "samples": len(candidates),
                "planned": n,
                "winner": candidates[chosen].answer if chosen is not None else None,
                "agreement": (groups[0][1] / sum(weights)) if groups and sum(weights) > 0 else 0.0,
            },
        )

    return Strategy(run, needs={model: needs}, needs_verifier=weighting == "verifier")


def _decided(candidates: list[Candidate], n: int, math_mode: bool) -> bool:
    """Whether the majority leader is certain, whatever the remaining samples say."""
    if not candidates:
        return False
    groups = group_votes([c.answer for c in candidates], [1.0] * len(candidates), math_mode=math_mode)
    if not groups:
        return False
    lead = groups[0][1]
    second = groups[1][1] if len(groups) > 1 else 0.0
    return lead > second + (n - len(candidates))
