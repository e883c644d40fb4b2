"""cascade: the small model answers; a deferral rule decides whether to ask the large model.

Gupta et al. (ICLR 2024): the small model answers greedily with token log-probabilities; a
router scores the answer (Chow-Sum, Chow-Average, Chow-Quantile-α, a learned post-hoc rule on
those features, or a verifier's verdict) and hands the whole request to the large model when the
score is on the wrong side of its threshold. Every rule needs only the chosen tokens'
log-probabilities (C1), so it works over any API that returns them; the large model needs
nothing but text. Calibrate the threshold to a deferral rate or a quality target with
``forkpath router calibrate``.
"""

from __future__ import annotations

import re

from forkpath._answer import generate_answer
from forkpath._errors import ConfigError
from forkpath._params import Tokens
from forkpath._prompts import PromptTemplate, answer_request
from forkpath._trace import RoutingEvent, VerdictEvent, emit
from forkpath._types import Task
from forkpath.models import ModelCapabilities
from forkpath.routers import ANSWER_QUANTILES, RouterSpec, make_router, result_features
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import answer_tokens

_QUANTILE = re.compile(r"q([0-9.]+(?:e-?\d+)?)_logprob")
_ANSWER_FEATURES = {"length", "sum_logprob", "mean_logprob", "mean_entropy", "max_entropy", "verdict"}


@strategies.register("cascade")
def cascade(
    router: RouterSpec = "chow_mean",
    small: str = "small",
    large: str = "large",
    max_tokens: Tokens = 512,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Answer with the small model; defer to the large one when the router says so.

    Args:
        router: a router spec handing over the ``request``: ``chow_sum``, ``chow_mean``,
            ``chow_quantile`` (with ``alpha``), ``verdict`` (needs the context's verifier), or a
            saved router file (thresholds from ``forkpath router calibrate``).
        small: context role of the small model (needs token logprobs).
        large: context role of the large model (text only).
        max_tokens: most tokens per answer.
        prompt: a template for the user message.
    """
    chosen_router = make_router(router)
    quantiles: list[float] = list(ANSWER_QUANTILES)
    for name in chosen_router.features:
        match = _QUANTILE.fullmatch(name)
        if match:
            quantiles.append(float(match.group(1)))
        elif name not in _ANSWER_FEATURES:
            raise ConfigError(
                f"cascade: router {chosen_router.name!r} reads {name!r}, which is not an answer feature"
            )
    if chosen_router.handover != "request":
        raise ConfigError(
            f"cascade: router {chosen_router.name!r} hands over a {chosen_router.handover!r}, not a request"
        )
    uses_verdict = "verdict" in chosen_router.features
    quantile_grid = tuple(sorted(set(quantiles)))

    async def run(task: Task, context: Context) -> StrategyResult:
        slm, llm = context.model(small), context.model(large)
        first = await slm.generate(answer_request(task, max_tokens=max_tokens, prompt=prompt))
        candidate = Candidate(text=first.text, model=first.model, mean_logprob=first.mean_logprob)
        verdict_score = None
        if uses_verdict:
            verdict = await context.verifier.verify(task, first.text)
            candidate.passed, candidate.score = verdict.passed, verdict.score
            candidate.verdict = verdict.model_dump(mode="json")
            verdict_score = float(verdict.score)
            emit(
                VerdictEvent(
                    verifier=type(context.verifier).__name__,
                    passed=verdict.passed,
                    score=verdict.score,
                    candidate_index=0,
                )
            )
        features = result_features(first, quantiles=quantile_grid, verdict=verdict_score)
        decision = await chosen_router.route(features)
        emit(
            RoutingEvent(
                router=chosen_router.name,
                decision=decision.handover,
                features={"score": decision.score, **{f: features[f] for f in chosen_router.features}},
            )
        )
        candidates = [candidate]
        answers = [first]
        stopped: Stopped = "done"
        if decision.routed:
            if context.budget.exhausted():
                stopped = "budget"
            else:
                second = await generate_answer(
                    llm,
                    answer_request(
                        task, max_tokens=max_tokens, prompt=prompt, logprobs=llm.capabilities.logprobs
                    ),
                )
                candidates.append(
                    Candidate(text=second.text, model=second.model, mean_logprob=second.mean_logprob)
                )
                answers.append(second)
        chosen = len(candidates) - 1
        for index, generated in enumerate(answers):
            if generated.tokens:
                emit(answer_tokens(generated, index))
        return StrategyResult(
            answer=candidates[chosen].text,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={
                "router": chosen_router.name,
                "deferred": decision.routed and chosen == 1,
                "score": decision.score,
                "threshold": chosen_router.threshold,
                "features": features,
            },
        )

    return Strategy(
        run,
        needs={small: ModelCapabilities(logprobs=True), large: ModelCapabilities()},
        needs_verifier=uses_verdict,
    )
