"""sed: Self-Evaluation Decoding (Luo et al. 2024, arXiv 2405.16552), training-free variant.

Decode greedily; at a *chaotic point* (the top two tokens are close: p2/p1 >= ``ratio``, or the
entropy is high), branch on the top-k tokens. For each, speculate a greedy continuation of up
to ``horizon`` tokens, and ask the same model whether that answer is right: its probability of
"yes" (from its top logprobs at the first word) is the evaluation ``e``. The token with the
highest ``p^(1-w) * e^w`` is kept, the speculation is thrown away, and decoding goes on.

The paper also fine-tunes the model for generation and self-evaluation; this is the decoding
algorithm alone, so small models gain less than the paper reports.

Capabilities: token-level access (the full next-token distribution and prefix continuation,
:class:`~forkpath.models.TokenModel`). A model without them (a chat-only API) fails at
configuration time, unless ``fallback="sequence"``: then SED becomes its documented
sequence-level approximation: sample ``k`` whole answers, self-evaluate each, keep the best.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from forkpath._errors import ConfigError
from forkpath._params import MAX_TOKENS, CountOrZero, Int, Probability, Temperature, Threshold, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._trace import ExpansionEvent, emit
from forkpath._types import Task
from forkpath.models import GenerateRequest, Message, Model, ModelCapabilities, TokenModel, entropy
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import budget_reached, verify_into
from forkpath.strategies._lookahead import TokenDecoder, changed_pauses, top2_ratio, top_candidates

EVALUATE = (
    "Look at your answer above (it may be unfinished). Is it correct so far? "
    "Answer with a single word: yes or no."
)
TOKEN_LEVEL = ModelCapabilities(full_distribution=True, prefix_continuation=True)


def evaluation_messages(messages: tuple[Message, ...], answer: str) -> tuple[Message, ...]:
    """The conversation that asks the model about its own answer (it shares the task's prefix)."""
    return (*messages, Message(role="assistant", content=answer), Message(role="user", content=EVALUATE))


async def self_evaluation(model: Model, messages: tuple[Message, ...], answer: str) -> float:
    """The model's probability that ``answer`` (its own, maybe unfinished) is correct.

    P(yes) / (P(yes) + P(no)) at the first word of its reply when it returns top logprobs,
    else 1 / 0 for a yes / no reply; 0.5 when it says neither.
    """
    from forkpath.verifiers import parse_score, yes_probability

    k = min(20, model.capabilities.top_logprobs)
    request = GenerateRequest(
        messages=evaluation_messages(messages, answer), max_tokens=4, temperature=0.0, top_logprobs=k
    )
    result = await model.generate(request)
    p = yes_probability(result.tokens) if k else None
    if p is None:
        score = parse_score(result.text)
        p = 0.5 if score is None else score
    return p


def _combine(token_logprob: float, evaluation: float, weight: float) -> float:
    """log(p^(1-w) e^w); an evaluation of 0 is floored so the token's probability still counts."""
    return (1.0 - weight) * token_logprob + weight * math.log(max(evaluation, 1e-6))


@strategies.register("sed")
def sed(
    model: str = "default",
    k: Annotated[Int, Field(ge=2, le=100)] = 3,
    criterion: Literal["ratio", "entropy"] = "ratio",
    ratio: Threshold = 0.5,
    entropy_threshold: Threshold = 1.0,
    horizon: Annotated[Int, Field(ge=0, le=MAX_TOKENS)] = 48,
    weight: Probability = 0.5,
    max_pauses: CountOrZero = 8,
    max_tokens: Tokens = 512,
    stop_at_code_end: bool = True,
    fallback: Literal["error", "sequence"] = "error",
    temperature: Temperature = 0.8,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Greedy decoding that self-evaluates speculated answers at chaotic points.

    Args:
        model: the context's model role (generator and evaluator).
        k: candidate tokens branched on at a chaotic point (and answers sampled by the fallback).
        criterion: ``ratio``: chaotic when p2/p1 >= ``ratio`` (the paper's best variant);
            ``entropy``: when the full-distribution entropy >= ``entropy_threshold`` nats.
        ratio: threshold of the ratio test.
        entropy_threshold: threshold of the entropy test, in nats.
        horizon: most tokens speculated after each candidate token (stops earlier at the end).
        weight: w in ``p^(1-w) * e^w``: 0 is plain greedy, 1 trusts the self-evaluation alone.
        max_pauses: most chaotic points handled per answer (the rest is greedy), for cost.
        max_tokens: most tokens in the answer.
        stop_at_code_end: for code tasks, stop once the answer's fenced code block is closed.
        fallback: ``error``: a model without token-level access fails at configuration time;
            ``sequence``: it runs sequence-level SED (``k`` sampled answers, self-evaluated).
        temperature: sampling temperature of the sequence-level fallback.
        prompt: a template for the user message.
    """
    if k < 2:
        raise ConfigError(f"sed: k must be at least 2 (it branches on the top-k tokens), got {k}")
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"sed: weight must be in [0, 1], got {weight}")
    needs = TOKEN_LEVEL if fallback == "error" else ModelCapabilities()

    async def run(task: Task, context: Context) -> StrategyResult:
        generator = context.model(model)
        messages = task_messages(task, prompt)
        token_level = generator.capabilities.prefix_continuation and isinstance(generator, TokenModel)
        if not token_level and fallback == "error":
            from forkpath.models import token_model

            token_model(generator, by="sed")  # raises the CapabilityError, before any call
        if token_level:
            result = await _token_level(task, context, generator, messages)
        else:
            result = await _sequence_level(task, context, generator, messages)
        if context.verifier is not None and result.chosen is not None:
            await verify_into(context.verifier, task, result.candidates[result.chosen], result.chosen)
        return result

    async def _token_level(
        task: Task, context: Context, generator: Model, messages: tuple[Message, ...]
    ) -> StrategyResult:
        assert isinstance(generator, TokenModel)
        decoder = TokenDecoder(generator, generator.chat_prefix(messages), by="sed")
        decoder.charge_call()
        generated: list[int] = []
        pauses: list[dict[str, object]] = []
        stopped: Stopped = "done"
        finish = "length"
        evaluations = 0
        while len(generated) < max_tokens:
            if budget_reached(context):
                stopped = "budget"
                break
            lp = await decoder.logprobs(generated)
            chaotic = top2_ratio(lp) >= ratio if criterion == "ratio" else entropy(lp) >= entropy_threshold
            if chaotic and len(pauses) < max_pauses:
                options = []
                for token, token_lp in top_candidates(lp, k):
                    if budget_reached(context):
                        break
                    look = await decoder.lookahead(generated, token, token_lp, horizon)
                    speculated = [t for t in [*generated, token, *look.continuation] if t not in decoder.ends]
                    answer = generator.detokenize(speculated)
                    evaluation = await self_evaluation(generator, messages, answer)
                    # The evaluation prompt took over the model's cache; our prefix is shared with it.
                    decoder.forget(generator.chat_prefix(evaluation_messages(messages, answer)))
                    evaluations += 1
                    score = _combine(token_lp, evaluation, weight)
                    options.append((score, token, token_lp, evaluation))
                    emit(
                        ExpansionEvent(
                            node=f"sed:{len(generated)}:{token}",
                            parent=f"sed:{len(generated)}",
                            text=answer[-200:],
                            value=score,
                        )
                    )
                if not options:
                    stopped = "budget"
                    break
                best = max(options, key=lambda o: (o[0], o[2]))
                token = best[1]
                pauses.append(
                    {
                        "position": len(generated),
                        "greedy": options[0][1],
                        "chosen": token,
                        "evaluations": [round(o[3], 4) for o in options],
                    }
                )
            else:
                token = int(lp.argmax())
            if decoder.accept(generated, token, stop_at_code_end=stop_at_code_end and task.kind == "code"):
                finish = "stop"
                break
        text = generator.detokenize(generated)
        changed = changed_pauses(pauses)
        candidate = Candidate(text=text, model=generator.id)
        return StrategyResult(
            answer=text,
            chosen=0,
            candidates=[candidate],
            stopped=stopped,
            info={
                "mode": "token",
                "tokens": len(generated),
                "finish": finish,
                "pauses": len(pauses),
                "changed": changed,
                "pause_rate": len(pauses) / max(1, len(generated)),
                "evaluations": evaluations,
                "forward_passes": decoder.forward_passes,
                "pause_detail": pauses,
            },
        )

    async def _sequence_level(
        task: Task, context: Context, generator: Model, messages: tuple[Message, ...]
    ) -> StrategyResult:
        candidates: list[Candidate] = []
        stopped: Stopped = "done"
        wants_lp = generator.capabilities.logprobs
        for i in range(k):
            if budget_reached(context):
                stopped = "budget"
                break
            request = GenerateRequest(
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                sample_index=i,
                logprobs=wants_lp,
            )
            result = await generator.generate(request)
            if budget_reached(context):
                candidates.append(
                    Candidate(text=result.text, model=result.model, mean_logprob=result.mean_logprob)
                )
                stopped = "budget"
                break
            evaluation = await self_evaluation(generator, messages, result.text)
            lp = result.mean_logprob if result.mean_logprob is not None else 0.0
            candidates.append(
                Candidate(
                    text=result.text,
                    model=result.model,
                    mean_logprob=result.mean_logprob,
                    score=_combine(lp, evaluation, weight),
                )
            )
        scored = [i for i, c in enumerate(candidates) if c.score is not None] or list(range(len(candidates)))
        chosen = max(scored, key=lambda i: (candidates[i].score or 0.0, -i)) if scored else None
        return StrategyResult(
            answer=candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={"mode": "sequence", "samples": len(candidates)},
        )

    return Strategy(run, needs={model: needs})
