"""segment_offload: when the small model's windowed uncertainty spikes, the large model writes to
the end of the line (SplitReason's offloading, with a training-free trigger).

The small model writes in chunks with top-k log-probabilities. Features are computed per token
from those top-k values (entropy by the ``estimator``, top-1, margin, and their window over the
last ``window`` tokens); at the first token where the router hands over a ``segment``, the chunk
is cut before that token and the large model continues the partial answer up to the end of the
current line (``segment_stop``) or ``segment_tokens``, then control returns to the small model.
Hand-offs are at text level (a partial assistant turn), so the two models need no shared
tokenizer, and everything goes through :meth:`Model.generate`: it works over any API with prefix
continuation and top logprobs (a litellm text-completion endpoint), where per-token routing would
cost a round trip per token. Small-model tokens after a cut are paid for and discarded; smaller
``chunk_tokens`` waste less and call more.

After a segment, control always returns to the small model, whatever ended the segment: APIs
report a stop string and the end of the answer alike (``finish_reason="stop"``), so the small
model, seeing the whole answer so far, is the one that ends it (one cheap call). When the
token detail shows the stop string (the local backend), it is kept in the text.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from forkpath._errors import ConfigError
from forkpath._params import Count, Int, Seed, Temperature, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._trace import RoutingEvent, emit
from forkpath._types import Task
from forkpath.models import GenerateRequest, GenerateResult, Message, ModelCapabilities
from forkpath.routers import (
    TOKEN_FEATURES,
    Estimator,
    Router,
    RouterSpec,
    UncertaintyWindow,
    make_router,
    summarize_top,
    token_features,
)
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._token_routing import check_router


@strategies.register("segment_offload")
def segment_offload(
    router: RouterSpec = "window_entropy",
    small: str = "small",
    large: str = "large",
    max_tokens: Tokens = 512,
    chunk_tokens: Tokens = 16,
    segment_tokens: Tokens = 64,
    segment_stop: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)] = ("\n",),
    top_logprobs: Annotated[Int, Field(ge=1, le=100)] = 5,
    estimator: Estimator = "lower",
    window: Count = 8,
    cooldown: Count = 4,
    temperature: Temperature = 0.0,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Small model writes; uncertain stretches are offloaded to the large model a line at a time.

    Args:
        router: a router spec handing over a ``segment`` (default ``window_entropy``).
        small: context role of the small model (needs top logprobs and prefix continuation).
        large: context role of the large model (needs prefix continuation).
        max_tokens: most tokens in the answer (both models' tokens together).
        chunk_tokens: tokens the small model writes per call before its features are checked.
        segment_tokens: most tokens the large model writes per offload.
        segment_stop: where an offloaded segment ends (end of line by default).
        top_logprobs: alternatives per token the features are computed from.
        estimator: entropy estimator: ``lower`` or ``renorm`` from the top-k (any API), or
            ``full`` (backends that report the full-distribution entropy).
        window: tokens in the window statistics.
        cooldown: after a segment, the small model writes at least this many tokens before the
            next offload can trigger (the window restarts empty; this also guarantees progress).
        temperature: sampling temperature of both models (0: greedy).
        seed: sampling seed.
        prompt: a template for the user message.
    """
    chosen_router = make_router(router)
    check_router(chosen_router, TOKEN_FEATURES, "segment", by="segment_offload", estimator=estimator)
    if min(max_tokens, chunk_tokens, segment_tokens, top_logprobs, window, cooldown) < 1:
        raise ConfigError(
            "segment_offload: max_tokens, chunk_tokens, segment_tokens, top_logprobs, window and cooldown "
            "must be >= 1"
        )
    if not segment_stop:
        raise ConfigError("segment_offload: segment_stop needs at least one stop string")

    async def run(task: Task, context: Context) -> StrategyResult:
        slm, llm = context.model(small), context.model(large)
        messages = task_messages(task, prompt)
        text = ""
        small_tokens = large_tokens = wasted = offloads = 0
        recent = UncertaintyWindow(window)
        stopped: Stopped = "done"
        finished = False
        cooling = 0  # small-model tokens still to write before the next offload may trigger
        while not finished and small_tokens + large_tokens < max_tokens:
            if context.budget.exhausted():
                stopped = "budget"
                break
            left = max_tokens - small_tokens - large_tokens
            chunk = await slm.generate(
                GenerateRequest(
                    messages=_continuing(messages, text),
                    max_tokens=min(chunk_tokens, left),
                    top_logprobs=top_logprobs,
                    temperature=temperature,
                    seed=seed,
                )
            )
            cut = await _first_handover(
                chunk, chosen_router, recent, estimator, small_tokens + large_tokens, skip=cooling
            )
            cooling = max(cooling - len(chunk.tokens), 0) if cut is None else 0
            if cut is None:
                text += chunk.text
                small_tokens += len(chunk.tokens)
                finished = chunk.finish_reason == "stop"
                continue
            index, features, score = cut
            text += "".join(t.token for t in chunk.tokens[:index])
            small_tokens += index
            wasted += len(chunk.tokens) - index
            offloads += 1
            emit(
                RoutingEvent(
                    router=chosen_router.name,
                    decision="segment",
                    position=small_tokens + large_tokens,
                    features={"score": score, **{f: features[f] for f in chosen_router.features}},
                )
            )
            segment = await llm.generate(
                GenerateRequest(
                    messages=_continuing(messages, text),
                    max_tokens=min(segment_tokens, max_tokens - small_tokens - large_tokens),
                    stop=segment_stop,
                    temperature=temperature,
                    seed=seed,
                )
            )
            large_tokens += len(segment.tokens) or segment.usage.completion_tokens
            text += segment.text + _stop_tail(segment, segment_stop)
            cooling = cooldown
            recent.clear()
        total = small_tokens + large_tokens
        return StrategyResult(
            answer=text,
            chosen=0,
            candidates=[Candidate(text=text, model=f"{slm.id}+{llm.id}")],
            stopped=stopped,
            info={
                "router": chosen_router.name,
                "threshold": chosen_router.threshold,
                "tokens": total,
                "small_tokens": small_tokens,
                "large_tokens": large_tokens,
                "large_share": large_tokens / total if total else 0.0,
                "offloads": offloads,
                "wasted_small_tokens": wasted,
                "finish": "stop" if finished else "length",
            },
        )

    return Strategy(
        run,
        needs={
            small: ModelCapabilities(top_logprobs=top_logprobs, prefix_continuation=True),
            large: ModelCapabilities(prefix_continuation=True),
        },
    )


def _continuing(messages: tuple[Message, ...], text: str) -> tuple[Message, ...]:
    """The chat so far with ``text`` as the partial assistant turn to continue."""
    return (*messages, Message(role="assistant", content=text)) if text else messages


async def _first_handover(
    chunk: GenerateResult,
    router: Router,
    recent: UncertaintyWindow,
    estimator: Estimator,
    offset: int,
    *,
    skip: int = 0,
) -> tuple[int, dict[str, float], float] | None:
    """The index of the first token of ``chunk`` the router offloads (none of the first ``skip``),
    with its features and score."""
    for i, info in enumerate(chunk.tokens):
        alternatives = [t.logprob for t in info.top]
        if estimator == "full":
            if info.entropy is None:
                raise ConfigError(
                    f"segment_offload: estimator 'full' needs per-token entropy, which {chunk.model} does not report"
                )
            top, ent = sorted(alternatives, reverse=True), info.entropy
        else:
            top, ent = summarize_top(alternatives, estimator)
        chosen = info.logprob if info.logprob is not None else (top[0] if top else 0.0)
        features = token_features(
            top, ent, chosen_logprob=chosen, position=offset + i, token_text=info.token, window=recent
        )
        decision = await router.route(features)
        if decision.routed and i >= skip:
            return i, features, decision.score
    return None


def _stop_tail(result: GenerateResult, stops: tuple[str, ...]) -> str:
    """The rest of the token that hit the stop string, when the token detail shows it.

    Keeping the whole token (e.g. ``"\n   "``, newline plus indentation, is one token in many
    vocabularies) leaves the text at a boundary the model itself produced; cutting right after
    ``"\n"`` would hand the small model a prefix it never tokenizes that way.
    """
    if result.finish_reason != "stop":
        return ""
    written = "".join(t.token for t in result.tokens)
    rest = written[len(result.text) :] if written.startswith(result.text) else ""
    return rest if any(rest.startswith(s) for s in stops) else ""
