"""self_consistency: sample N answers, group equal final answers, return the most voted.

Voting is the parallel aggregation of Welleck et al. §k: every sample's extracted final answer
is one vote (``majority``), or carries a weight: the verifier's score (``verifier``; meant for a
judge or reward model, since a reference-answer verifier would simply reveal the answer) or
the sample's probability ``exp(mean token logprob)`` (``probability``), or, under a
constraint, the sample's importance weight ``exp(log_weight)`` (``importance``: local models
sample a constrained answer token by token, which over-represents answers whose prefixes left
few valid continuations; the weights, self-normalised, make the vote an estimate of the answer
distribution of the model restricted to whole valid answers, Lipkin et al. 2025). Answers are read by the
task's kind: numbers for tasks whose answers are numbers (GSM8K), free-form math otherwise,
the last line for other tasks. They are grouped by equivalence: numbers exactly, free-form math
with :func:`~forkpath.verifiers.math_equal` (``0.5`` and ``\\frac12`` are one answer), others by
their normalised text. A sample whose answer cannot be read abstains. The vote, its ties and
the candidate returned follow the one voting rule of :mod:`forkpath.strategies._vote`
(:func:`~forkpath.strategies.tally`); when every sample abstains there is no answer.

With majority voting, sampling stops early once the leader cannot be overtaken by the samples
still to come (``early_stop``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from forkpath import gather_all
from forkpath._params import Count, Seed, Temperature, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import budget_reached, verify_into
from forkpath.strategies._vote import (
    Ballot,
    Extract,
    Mode,
    Vote,
    answer_mode,
    extract_answer,
    same_answer,
    tally,
)


def vote(ballots: list[Ballot], mode: Mode) -> Vote:
    """The vote over ``ballots`` (one per sample) with answers compared as ``mode``."""
    return tally(ballots, lambda a, b: same_answer(a, b, mode=mode))


@strategies.register("self_consistency")
def self_consistency(
    n: Count = 8,
    model: str = "default",
    temperature: Temperature = 0.8,
    max_tokens: Tokens = 512,
    weighting: Literal["majority", "verifier", "probability", "importance"] = "majority",
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
            score), ``probability`` (vote = exp(mean token logprob); needs logprobs) or
            ``importance`` (vote = the sample's constrained importance weight, self-normalised;
            a sample without one, e.g. unconstrained, weighs 1).
        extract: how a sample's final answer is found: ``number`` (the number of the stated
            answer, else the last number; see :func:`~forkpath.verifiers.extract_number`),
            ``math`` (free-form: boxed / #### / "the answer is" / last number), ``last_line``,
            ``full`` (the whole text), ``auto`` (number or math by the task's kind of answer
            for math tasks, else the last line).
        early_stop: with majority voting, stop once the leader cannot be overtaken.
        seed: base sampling seed.
        prompt: a template for the user message.
    """
    needs = ModelCapabilities(logprobs=weighting == "probability")

    async def run(task: Task, context: Context) -> StrategyResult:
        sampler = context.model(model)
        mode = answer_mode(extract, task)
        base = GenerateRequest(
            messages=task_messages(task, prompt),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            logprobs=sampler.capabilities.logprobs,
        )
        candidates: list[Candidate] = []
        ballots: list[Ballot] = []
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
            if sequential and _decided(candidates, ballots, n, mode):
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
                    log_weight=result.log_weight,
                )
                candidates.append(candidate)
                if weighting == "verifier":
                    await verify_into(context.verifier, task, candidate, j, detail="vote weight")
                    weight = candidate.score or 0.0
                elif weighting == "probability":
                    lp = result.mean_logprob
                    candidate.score = math.exp(lp) if lp is not None else 0.0
                    weight = candidate.score
                elif weighting == "importance":
                    weight = 1.0  # set below, once every sample's weight is known
                else:
                    candidate.score = weight = 1.0
                ballots.append(
                    Ballot(
                        answer=candidate.answer,
                        weight=weight,
                        mean_logprob=result.mean_logprob,
                        complete=result.finish_reason != "length",
                    )
                )
            i = wave.stop
        if weighting == "importance":
            ballots = _importance(candidates, ballots)
        counted = vote(ballots, mode)
        chosen = counted.winner
        total = sum(b.weight for b in ballots)  # abstentions count against agreement
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
                "votes": counted.weights(),
                "abstained": counted.abstained,
                "tie": counted.tie,
                "samples": len(candidates),
                "planned": n,
                "winner": candidates[chosen].answer if chosen is not None else None,
                "agreement": (counted.groups[0].weight / total) if counted.groups and total > 0 else 0.0,
            },
        )

    return Strategy(run, needs={model: needs}, needs_verifier=weighting == "verifier")


def _importance(candidates: list[Candidate], ballots: list[Ballot]) -> list[Ballot]:
    """The ballots weighted by ``exp(log_weight)``, scaled so the largest weighs 1 (the vote
    only compares sums); a sample without a weight counts as log weight 0."""
    logs = [c.log_weight if c.log_weight is not None else 0.0 for c in candidates]
    top = max(logs, default=0.0)
    weighted = []
    for candidate, ballot, lw in zip(candidates, ballots, logs, strict=True):
        candidate.score = math.exp(lw - top)
        weighted.append(dataclasses.replace(ballot, weight=candidate.score))
    return weighted


def _decided(candidates: list[Candidate], ballots: list[Ballot], n: int, mode: Mode) -> bool:
    """Whether the majority leader is certain, whatever the remaining samples say."""
    if not candidates:
        return False
    counted = vote(ballots, mode)
    if not counted.groups:
        return False
    lead = counted.groups[0].weight
    second = counted.groups[1].weight if len(counted.groups) > 1 else 0.0
    return lead > second + (n - len(candidates))
