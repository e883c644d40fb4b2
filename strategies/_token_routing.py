"""token_routing: the small model writes; a router hands single tokens to the large model (R2R).

At every position the small model computes its next-token distribution and picks a token; a
router reads the features of that position (entropy, top-1, margin, the top log-probabilities,
window statistics, the kind of token picked) and decides whether the large model produces this
token instead. Both models then consume the chosen token, so the sequence stays shared. The
large model catches up on the tokens it has not seen in one batched evaluation (the local engine
keeps the longest shared prefix in its KV cache), so a routed token costs one prefill of the new
tokens plus one step. Token-level mixing needs a shared tokenizer, checked before any call.

Training-free routers: ``entropy``, ``top1``, ``margin``; the learned one is a logistic router
file from ``forkpath router label`` + ``forkpath router calibrate``.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from forkpath._answer import AnswerWriter
from forkpath._errors import ConfigError
from forkpath._params import MAX_TOKENS, Count, Int, Seed, Temperature, Tokens, TopP
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._trace import RoutingEvent, TokensEvent, TracedToken, emit
from forkpath._types import Task
from forkpath.models import (
    ModelCapabilities,
    Sampling,
    charge,
    choose_token,
    require_shared_tokenizer,
    token_model,
)
from forkpath.routers import (
    TOKEN_FEATURES,
    Handover,
    Router,
    RouterSpec,
    UncertaintyWindow,
    make_router,
    summarize_distribution,
    token_features,
)
from forkpath.strategies._base import Candidate, Context, RunFn, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import traced_token

TOKEN_LEVEL = ModelCapabilities(full_distribution=True, prefix_continuation=True)


class PairStrategy(Strategy):
    """A strategy that mixes tokens of two models: also checks that they share a tokenizer."""

    def __init__(self, run: RunFn, *, small: str, large: str, needs: dict[str, ModelCapabilities]) -> None:
        super().__init__(run, needs=needs)
        self.pair = (small, large)

    def check(self, context: Context) -> None:
        super().check(context)
        small, large = self.pair
        for role in self.pair:
            token_model(context.model(role), by=self.name)
        require_shared_tokenizer(context.model(small), context.model(large), by=self.name)


def check_router(
    router: Router, available: tuple[str, ...], handover: Handover, *, by: str, estimator: str | None = None
) -> None:
    """Fail at configuration time if ``router`` reads a feature ``by`` does not compute, hands
    over something other than what ``by`` can give the large model, or was calibrated on
    entropies from another estimator than ``by`` computes (its threshold would not transfer)."""
    calibration = getattr(router, "calibration", None)
    calibrated_on = getattr(calibration, "estimator", None)
    if estimator and calibrated_on and calibrated_on != estimator:
        raise ConfigError(
            f"{by}: router {router.name!r} was calibrated on {calibrated_on!r} entropies and {by} computes "
            f"{estimator!r} ones; recalibrate, or set the strategy's estimator to {calibrated_on!r}"
        )
    missing = [f for f in router.features if f not in available]
    if missing:
        raise ConfigError(
            f"{by}: router {router.name!r} reads {', '.join(missing)}, which {by} does not provide"
        )
    if router.handover != handover:
        raise ConfigError(
            f"{by}: router {router.name!r} hands over a {router.handover!r}, and {by} hands over a {handover!r} "
            f"(make it with handover={handover!r})"
        )


@strategies.register("token_routing")
def token_routing(
    router: RouterSpec = "entropy",
    small: str = "small",
    large: str = "large",
    max_tokens: Tokens = 512,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    hold: Annotated[Int, Field(ge=0, le=MAX_TOKENS)] = 0,
    window: Count = 8,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Generate with the small model, handing the tokens the router picks to the large model.

    Args:
        router: a router spec (name, ``{"name": ..., **params}``, a saved ``.json`` router);
            it must hand over ``token``.
        small: context role of the small model (token-level access).
        large: context role of the large model (token-level access, same tokenizer).
        max_tokens: most tokens in the answer.
        temperature: 0 is greedy; both models sample with the same settings otherwise.
        top_p: nucleus sampling mass (with ``temperature > 0``).
        hold: after a handover, the large model also writes this many following tokens
            (R2R-style hysteresis; 0 = decide every token afresh).
        window: positions in the window statistics (``window_entropy`` ...).
        seed: sampling seed.
        prompt: a template for the user message (``{prompt}`` and the task's fields).
    """
    chosen_router = make_router(router)
    check_router(chosen_router, TOKEN_FEATURES, "token", by="token_routing", estimator="full")
    if max_tokens < 1:
        raise ConfigError(f"token_routing: max_tokens must be at least 1, got {max_tokens}")
    if hold < 0 or window < 1:
        raise ConfigError("token_routing: hold must be >= 0 and window >= 1")

    async def run(task: Task, context: Context) -> StrategyResult:
        slm, llm = context.model(small), context.model(large)
        s_tok, l_tok = token_model(slm, by="token_routing"), token_model(llm, by="token_routing")
        ends = s_tok.end_tokens
        sampling = Sampling(temperature=temperature, top_p=top_p)
        rng = np.random.default_rng(seed)
        seq = s_tok.chat_prefix(task_messages(task, prompt))
        start = len(seq)
        writer = AnswerWriter(s_tok.detokenize)  # each token is final once chosen: stream it
        small_seen = large_seen = 0
        recent = UncertaintyWindow(window)
        from_large: list[bool] = []
        logprobs: list[float] = []
        traced: list[TracedToken] = []
        handovers = held = 0
        stopped: Stopped = "done"
        finish = "length"
        while len(seq) - start < max_tokens:
            if context.budget.exhausted():
                stopped = "budget"
                break
            position = len(seq) - start
            lp_small = await s_tok.next_token_logprobs(seq)
            token = choose_token(lp_small, sampling, rng)
            top, ent = summarize_distribution(lp_small)
            features = token_features(
                top,
                ent,
                chosen_logprob=float(lp_small[token]),
                position=position,
                token_text=s_tok.detokenize([token]),
                window=recent,
            )
            decision = await chosen_router.route(features)
            use_large = decision.routed or held > 0
            small_prefill = len(seq) - small_seen
            small_seen = len(seq)
            chosen_lp = float(lp_small[token])
            drawn_from = lp_small
            drawn_entropy: float | None = ent
            if use_large:
                held = hold if decision.routed else held - 1
                handovers += decision.routed
                lp_large = await l_tok.next_token_logprobs(seq)
                token = choose_token(lp_large, sampling, rng)
                charge(llm, prompt_tokens=len(seq) - large_seen, completion_tokens=int(token not in ends))
                large_seen = len(seq)
                chosen_lp = float(lp_large[token])
                drawn_from, drawn_entropy = lp_large, None  # its entropy: computed when traced
                if decision.routed:
                    emit(
                        RoutingEvent(
                            router=chosen_router.name,
                            decision=decision.handover,
                            position=position,
                            features={
                                "score": decision.score,
                                **{f: features[f] for f in chosen_router.features},
                            },
                        )
                    )
            # An end token is not an answer token (as in Model.generate's accounting).
            charge(
                slm, prompt_tokens=small_prefill, completion_tokens=int(not use_large and token not in ends)
            )
            if token in ends:
                finish = "stop"
                break
            seq.append(token)
            writer.update(seq[start:])
            from_large.append(use_large)
            logprobs.append(chosen_lp)
            traced.append(
                traced_token(drawn_from, token, s_tok.detokenize, model=int(use_large), entropy=drawn_entropy)
            )
        text = s_tok.detokenize(seq[start:])
        n = len(from_large)
        large_tokens = sum(from_large)
        candidate = Candidate(
            text=text,
            model=f"{slm.id}+{llm.id}",
            mean_logprob=sum(logprobs) / n if n else None,
        )
        emit(TokensEvent(candidate_index=0, models=[slm.id, llm.id], tokens=traced))
        return StrategyResult(
            answer=text,
            chosen=0,
            candidates=[candidate],
            stopped=stopped,
            info={
                "router": chosen_router.name,
                "threshold": chosen_router.threshold,
                "tokens": n,
                "large_tokens": large_tokens,
                "large_share": large_tokens / n if n else 0.0,
                "handovers": handovers,
                "large_positions": [i for i, b in enumerate(from_large) if b],
                "finish": finish,
            },
        )

    return PairStrategy(run, small=small, large=large, needs={small: TOKEN_LEVEL, large: TOKEN_LEVEL})
