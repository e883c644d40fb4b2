"""best_of_n: sample N answers, rerank them, stop early at the first that passes its tests."""

from __future__ import annotations

import asyncio
from typing import Literal

from forkpath import cancel_all
from forkpath._params import Count, Seed, Temperature, Tokens, TopK
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._trace import VerdictEvent, emit
from forkpath._types import Task
from forkpath.models import GenerateRequest, GenerateResult, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import answer_tokens


@strategies.register("best_of_n")
def best_of_n(
    n: Count = 8,
    model: str = "default",
    temperature: Temperature = 0.8,
    max_tokens: Tokens = 512,
    rerank: Literal["verifier", "mean_logprob"] = "verifier",
    early_stop: bool = True,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
    top_logprobs: TopK = 0,
    in_flight: Count | None = None,
) -> Strategy:
    """Sample ``n`` candidates from ``model`` and choose the best.

    Args:
        n: samples to draw (sample indexes 0..n-1: replayable through the generation cache).
        model: the context's model role to sample from.
        temperature: sampling temperature (the first sample is greedy when 0).
        max_tokens: most tokens per sample.
        rerank: ``verifier``: the verifier's score (fraction of tests passed), ties broken by mean
            logprob; ``mean_logprob``: the sequence's mean token logprob (no verifier needed).
        early_stop: with a verifier, stop at the first candidate that passes all tests.
        seed: base sampling seed.
        prompt: a template for the user message (``{prompt}`` and other task fields).
        top_logprobs: alternatives to record for each token of the chosen answer (its tokens,
            with logprob and entropy where the model gives them, go to the trace either way).
        in_flight: samples generated at once (default: all ``n``); the next starts as one ends.
            All at once gives the answer soonest; with ``early_stop`` fewer spend fewer tokens,
            since samples still running when one passes are cancelled with what they decoded
            (a batch run of many tasks keeps the local engine's batch full either way).
    """
    needs = ModelCapabilities(logprobs=rerank == "mean_logprob", top_logprobs=top_logprobs)

    async def run(task: Task, context: Context) -> StrategyResult:
        sampler = context.model(model)
        base = GenerateRequest(
            messages=task_messages(task, prompt),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            logprobs=sampler.capabilities.logprobs,
            top_logprobs=top_logprobs,
        )
        candidates: list[Candidate] = []
        results: list[GenerateResult] = []
        stopped: Stopped = "done"
        calls_left = context.budget.calls_left()
        planned = n if calls_left is None else min(n, calls_left)
        index: dict[asyncio.Future[GenerateResult], int] = {}

        def start(i: int) -> asyncio.Future[GenerateResult]:
            future = asyncio.ensure_future(sampler.generate(base.model_copy(update={"sample_index": i})))
            index[future] = i
            return future

        pending = {start(i) for i in range(min(planned, in_flight or planned))}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=index.__getitem__):
                    candidate = await _score(
                        future.result(), task, context, rerank == "verifier", len(candidates)
                    )
                    results.append(future.result())
                    candidates.append(candidate)
                    if early_stop and candidate.passed:
                        stopped = "early_stop"
                        break
                if stopped == "early_stop":
                    break
                if (pending or len(index) < planned) and context.budget.exhausted():
                    stopped = "budget"  # what was paid for is kept; what was not started is dropped
                    break
                while len(index) < planned and len(pending) < (in_flight or planned):
                    pending.add(start(len(index)))
        finally:
            await cancel_all(index)  # dropped samples stop; every error is retrieved (`done` too)
        if stopped == "done" and planned < n:
            stopped = "budget"
        chosen = _choose(candidates)
        if chosen is not None and results[chosen].tokens:
            emit(answer_tokens(results[chosen], chosen))
        return StrategyResult(
            answer=candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={"samples": len(candidates), "planned": n},
        )

    return Strategy(run, needs={model: needs}, needs_verifier=rerank == "verifier")


async def _score(result: GenerateResult, task: Task, context: Context, verify: bool, index: int) -> Candidate:
    candidate = Candidate(
        text=result.text,
        model=result.model,
        mean_logprob=result.mean_logprob,
        tokens=result.usage.completion_tokens,
        log_weight=result.log_weight,
    )
    if not verify:
        candidate.score = result.mean_logprob
        return candidate
    verdict = await context.verifier.verify(task, result.text)
    candidate.passed, candidate.score = verdict.passed, verdict.score
    candidate.verdict = verdict.model_dump(mode="json")
    emit(
        VerdictEvent(
            verifier=type(context.verifier).__name__,
            passed=verdict.passed,
            score=verdict.score,
            candidate_index=index,
        )
    )
    return candidate


def _choose(candidates: list[Candidate]) -> int | None:
    """Highest score, then highest mean logprob, then earliest."""
    if not candidates:
        return None

    def key(i: int) -> tuple[float, float, int]:
        c = candidates[i]
        return (
            c.score if c.score is not None else float("-inf"),
            c.mean_logprob if c.mean_logprob is not None else float("-inf"),
            -i,
        )

    return max(range(len(candidates)), key=key)
