"""adadec: entropy-triggered pause, lookahead rerank (He et al. 2025, arXiv 2506.08980).

Greedy decoding from the full next-token distribution. Where its entropy reaches the model's
learned threshold H*, decoding *pauses*: each of the top ``candidates`` tokens is extended by a
lookahead of up to ``lookahead`` tokens (beam search of width ``lookahead_beam``; 1 is greedy,
the cheap variant the API approximation uses), and scored by its length-normalised logprob,
``(log p(c) + Σ lookahead logprobs) / (lookahead length + 1)``. The best candidate token is
kept, the lookahead tokens are dropped, and greedy decoding resumes.

H* is model-specific and comes from a calibration run (:mod:`._entropy_threshold`): give it as
``threshold`` or as ``threshold_file`` (learned thresholds by model id). With ``threshold`` set
to infinity AdaDec is plain greedy decoding.

Capabilities: token-level access (full distribution, prefix continuation:
:class:`~forkpath.models.TokenModel`), checked before any call.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from forkpath._errors import ConfigError
from forkpath._params import MAX_TOKENS, CountOrZero, Int, Threshold, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._trace import ExpansionEvent, emit
from forkpath._types import Task
from forkpath.models import ModelCapabilities, entropy, token_model
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._entropy_threshold import load_threshold
from forkpath.strategies._helpers import budget_reached, verify_into
from forkpath.strategies._lookahead import (
    Lookahead,
    TokenDecoder,
    changed_pauses,
    top_candidates,
)

NEEDS = ModelCapabilities(full_distribution=True, prefix_continuation=True)


def lookahead_score(look: Lookahead) -> float:
    """AdaDec's rerank score: the candidate's and its lookahead's logprob, per token."""
    return (look.logprob + look.continuation_logprob) / (look.length + 1)


@strategies.register("adadec")
def adadec(
    model: str = "default",
    threshold: Threshold | None = None,
    threshold_file: str | None = None,
    candidates: Annotated[Int, Field(ge=2, le=100)] = 3,
    lookahead: Annotated[Int, Field(ge=0, le=MAX_TOKENS)] = 5,
    lookahead_beam: Annotated[Int, Field(ge=1, le=100)] = 1,
    max_pauses: CountOrZero | None = None,
    max_tokens: Tokens = 512,
    stop_at_code_end: bool = True,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Greedy decoding that pauses at high-entropy positions and reranks by lookahead.

    Args:
        model: the context's model role (token-level access).
        threshold: H* in nats: pause where the full-distribution entropy is at least this.
        threshold_file: JSON of thresholds learned per model id (``save_threshold``); used when
            ``threshold`` is not given.
        candidates: top tokens compared at a pause (B in the paper; 3).
        lookahead: tokens looked ahead from each candidate (L; 5).
        lookahead_beam: beam width of the lookahead (the reference uses B; 1 is greedy).
        max_pauses: most pauses per answer (None: no limit, as in the paper).
        max_tokens: most tokens in the answer.
        stop_at_code_end: for code tasks, stop once the answer's fenced code block is closed.
        prompt: a template for the user message.
    """
    if threshold is None and threshold_file is None:
        raise ConfigError(
            "adadec needs an entropy threshold learned for the model: give threshold= (nats) or "
            "threshold_file= (from calibrate_entropy_threshold)"
        )
    if candidates < 2:
        raise ConfigError(f"adadec: candidates must be at least 2, got {candidates}")
    if lookahead < 0 or lookahead_beam < 1:
        raise ConfigError(
            f"adadec: need lookahead >= 0 and lookahead_beam >= 1, got {lookahead}, {lookahead_beam}"
        )

    async def run(task: Task, context: Context) -> StrategyResult:
        generator = context.model(model)
        tm = token_model(generator, by="adadec")
        h_star = (
            threshold
            if threshold is not None
            else load_threshold(str(threshold_file), generator.id).threshold
        )
        messages = task_messages(task, prompt)
        decoder = TokenDecoder(generator, tm.chat_prefix(messages), by="adadec")
        decoder.charge_call()
        generated: list[int] = []
        pauses: list[dict[str, object]] = []
        stopped: Stopped = "done"
        finish = "length"
        while len(generated) < max_tokens:
            if budget_reached(context):
                stopped = "budget"
                break
            lp = await decoder.logprobs(generated)
            h = entropy(lp)
            if h >= h_star and (max_pauses is None or len(pauses) < max_pauses):
                looks: list[Lookahead] = []
                for token, token_lp in top_candidates(lp, candidates):
                    if budget_reached(context):
                        break
                    look = await decoder.lookahead(generated, token, token_lp, lookahead, beam=lookahead_beam)
                    looks.append(look)
                    emit(
                        ExpansionEvent(
                            node=f"adadec:{len(generated)}:{token}",
                            parent=f"adadec:{len(generated)}",
                            text=tm.detokenize([token, *look.continuation])[:200],
                            value=lookahead_score(look),
                        )
                    )
                if not looks:
                    stopped = "budget"
                    break
                best = max(looks, key=lambda x: (lookahead_score(x), x.logprob))
                token = best.token
                pauses.append(
                    {
                        "position": len(generated),
                        "entropy": round(h, 4),
                        "greedy": looks[0].token,
                        "chosen": token,
                    }
                )
            else:
                token = int(lp.argmax())
            if decoder.accept(generated, token, stop_at_code_end=stop_at_code_end and task.kind == "code"):
                finish = "stop"
                break
        text = tm.detokenize(generated)
        changed = changed_pauses(pauses)
        result = StrategyResult(
            answer=text,
            chosen=0,
            candidates=[Candidate(text=text, model=generator.id)],
            stopped=stopped,
            info={
                "threshold": h_star,
                "tokens": len(generated),
                "finish": finish,
                "pauses": len(pauses),
                "changed": changed,
                "pause_rate": len(pauses) / max(1, len(generated)),
                "forward_passes": decoder.forward_passes,
                "pause_detail": pauses,
            },
        )
        if context.verifier is not None:
            await verify_into(context.verifier, task, result.candidates[0], 0)
        return result

    return Strategy(run, needs={model: NEEDS})
