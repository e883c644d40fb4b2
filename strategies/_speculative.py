"""speculative_decoding: exact speculative decoding between two local models (Leviathan et al. 2023).

The small (draft) model proposes γ tokens one by one; the large (target) model scores all of them
in one batched teacher-forced pass (``continuation_logprobs``), giving γ + 1 next-token
distributions. Greedy: the longest prefix of the draft equal to the target's argmax is kept, then
the target's own argmax at the first mismatch (or after the whole draft). Sampling: draft token
x_i is kept with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection the next token is
drawn from norm(max(0, p − q)), and after a fully accepted draft from p_{γ+1}. Both rules emit at
least one token per target call, and the sampling rule leaves the output distributed exactly as
the target's (:func:`accept_draft`, tested with a chi-square test on synthetic distributions).
The draft length adapts: +2 after a fully accepted draft, −1 otherwise (bounded).

Greedy output equals the large model's own greedy decoding token for token only if batched
verification gives the very logits one-token decoding gives. llama.cpp's fast CPU kernels do not
(they differ by up to ~0.5 in a logit on Qwen2.5-Coder-1.5B; measured by
``bench/batch_numerics.py``), and then the two part ways at the first near-tie of the target's top
two tokens: 7 of 30 HumanEval answers of 384 tokens did. So greedy speculative decoding needs a
target loaded with ``batch_invariant: true`` (capability ``batch_invariant``), which takes the
one-token kernels for every batch size; the check happens at configuration time. Sampling does
not need it: it preserves the target's distribution up to float noise either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from forkpath._answer import AnswerWriter
from forkpath._errors import ConfigError
from forkpath._params import Int, Seed, Temperature, Tokens, TopP
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._trace import RoutingEvent, TokensEvent, TracedToken, emit
from forkpath._types import Task
from forkpath.models import (
    ModelCapabilities,
    Sampling,
    charge,
    draw_token,
    sampling_distribution,
    teacher_force,
    token_model,
)
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import traced_token
from forkpath.strategies._token_routing import PairStrategy

DRAFT = ModelCapabilities(full_distribution=True, prefix_continuation=True)
TARGET = ModelCapabilities(full_distribution=True, prefix_continuation=True, prompt_scoring=True)
EXACT_TARGET = TARGET.model_copy(update={"batch_invariant": True})


def accept_draft(
    target: np.ndarray, draft_probs: np.ndarray, draft: Sequence[int], rng: np.random.Generator
) -> tuple[int, int]:
    """The speculative sampling rule: how many draft tokens to keep, and the token after them.

    Args:
        target: ``(γ + 1, V)`` target probabilities after each draft prefix (processed: same
            temperature / top-p as the draft).
        draft_probs: ``(γ, V)`` draft probabilities the draft tokens were sampled from.
        draft: the γ draft tokens.
        rng: the random source.

    Returns:
        ``(n, token)``: keep ``draft[:n]``, then emit ``token``.
    """
    gamma = len(draft)
    if target.shape[0] != gamma + 1 or draft_probs.shape[0] != gamma:
        raise ValueError(f"need {gamma + 1} target rows and {gamma} draft rows")
    for i, x in enumerate(draft):
        p, q = float(target[i, x]), float(draft_probs[i, x])
        # Keep with probability min(1, p/q); written as u*q <= p so q == p == 0 never divides.
        if rng.random() * q > p:
            residual = np.maximum(target[i] - draft_probs[i], 0.0)
            total = residual.sum()
            if total <= 0.0:  # only when p == q numerically, where rejection cannot happen
                residual, total = target[i], target[i].sum()
            return i, draw_token(residual / total, rng)
    last = target[gamma] / target[gamma].sum()
    return gamma, draw_token(last, rng)


def accept_draft_greedy(target_logprobs: np.ndarray, draft: Sequence[int]) -> tuple[int, int]:
    """The greedy rule: keep the draft while it equals the target's argmax, then the argmax."""
    choices = np.argmax(target_logprobs, axis=1)
    for i, x in enumerate(draft):
        if int(choices[i]) != x:
            return i, int(choices[i])
    return len(draft), int(choices[len(draft)])


@strategies.register("speculative_decoding")
def speculative_decoding(
    small: str = "small",
    large: str = "large",
    draft_tokens: Annotated[Int, Field(ge=1, le=256)] = 4,
    max_draft_tokens: Annotated[Int, Field(ge=1, le=256)] = 8,
    adaptive: bool = True,
    max_tokens: Tokens = 512,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Decode with the large model's distribution, drafting with the small model.

    Args:
        small: context role of the draft model (token-level access).
        large: context role of the target model (token-level access, batched teacher forcing,
            same tokenizer).
        draft_tokens: initial draft length γ.
        max_draft_tokens: the most γ grows to when ``adaptive``.
        adaptive: grow γ by 2 after a fully accepted draft, shrink it by 1 after a rejection.
        max_tokens: most tokens in the answer.
        temperature: 0 is greedy (output identical to the target's greedy decoding; needs a
            batch-invariant target); above 0 the output is distributed as the target's.
        top_p: nucleus mass, applied to both models before the acceptance test.
        seed: sampling seed.
        prompt: a template for the user message.
    """
    if not 1 <= draft_tokens <= max_draft_tokens:
        raise ConfigError(
            f"speculative_decoding: need 1 <= draft_tokens <= max_draft_tokens, got {draft_tokens}, {max_draft_tokens}"
        )
    if max_tokens < 1:
        raise ConfigError(f"speculative_decoding: max_tokens must be at least 1, got {max_tokens}")
    greedy = temperature <= 0.0

    async def run(task: Task, context: Context) -> StrategyResult:
        drafter, target = context.model(small), context.model(large)
        d_tok = token_model(drafter, by="speculative_decoding")
        ends = token_model(target, by="speculative_decoding").end_tokens
        rng = np.random.default_rng(seed)
        sampling = Sampling(temperature=temperature, top_p=top_p)
        prefix = d_tok.chat_prefix(task_messages(task, prompt))
        out: list[int] = []
        writer = AnswerWriter(d_tok.detokenize)  # accepted tokens are final: stream them
        gamma = draft_tokens
        drafted = accepted = iterations = draft_seen = target_seen = 0
        lengths: dict[int, int] = {}
        traced: list[TracedToken] = []
        stopped: Stopped = "done"
        finish = "length"
        while len(out) < max_tokens and finish == "length":
            if context.budget.exhausted():
                stopped = "budget"
                break
            base = [*prefix, *out]
            draft: list[int] = []
            q_rows: list[np.ndarray] = []
            for _ in range(min(gamma, max_tokens - len(out))):
                lq = await d_tok.next_token_logprobs([*base, *draft])
                charge(drafter, prompt_tokens=len(base) + len(draft) - draft_seen)
                draft_seen = len(base) + len(draft)
                if greedy:
                    token = int(np.argmax(lq))
                else:
                    q = sampling_distribution(lq, sampling)
                    token = draw_token(q, rng)
                    q_rows.append(q)
                draft.append(token)
                if token in ends:
                    break
            rows = await teacher_force(target, base, draft)
            charge(target, prompt_tokens=len(base) + len(draft) - target_seen, completion_tokens=1)
            target_seen = len(base) + len(draft)
            if greedy:
                n, nxt = accept_draft_greedy(rows, draft)
            else:
                p_rows = np.stack([sampling_distribution(r, sampling) for r in rows])
                n, nxt = accept_draft(p_rows, np.stack(q_rows), draft, rng)
            charge(drafter, completion_tokens=n, calls=0)
            iterations += 1
            drafted += len(draft)
            accepted += n
            lengths[len(draft)] = lengths.get(len(draft), 0) + 1
            emit(
                RoutingEvent(
                    router="speculative_decoding",
                    decision="accept" if n == len(draft) else "reject",
                    position=len(out),
                    features={"drafted": float(len(draft)), "accepted": float(n)},
                )
            )
            for i, token in enumerate([*draft[:n], nxt]):
                if token in ends:
                    finish = "stop"
                    break
                out.append(token)
                # the drafter wrote the accepted tokens, the target the last; both under the target's row
                traced.append(traced_token(rows[i], token, d_tok.detokenize, model=int(i == n)))
                if len(out) >= max_tokens:
                    break
            writer.update(out)
            if adaptive:
                gamma = min(gamma + 2, max_draft_tokens) if n == len(draft) else max(gamma - 1, 1)
        text = d_tok.detokenize(out)
        emit(TokensEvent(candidate_index=0, models=[drafter.id, target.id], tokens=traced))
        stats = {
            "iterations": iterations,
            "drafted": drafted,
            "accepted": accepted,
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "tokens_per_iteration": len(out) / iterations if iterations else 0.0,
        }
        return StrategyResult(
            answer=text,
            chosen=0,
            candidates=[Candidate(text=text, model=target.id)],
            stopped=stopped,
            info={
                **stats,
                "tokens": len(out),
                "token_ids": out,
                "draft_lengths": {str(k): v for k, v in sorted(lengths.items())},
                "greedy": greedy,
                "finish": finish,
            },
        )

    return PairStrategy(
        run,
        small=small,
        large=large,
        needs={small: DRAFT, large: EXACT_TARGET if greedy else TARGET},
    )
