"""Token-level decoding with lookahead, shared by ``sed`` and ``adadec``.

Both strategies decode greedily from the model's full next-token distribution
(:class:`~forkpath.models.TokenModel`), pause at uncertain positions, look ahead from each of a
few candidate tokens, and continue with the best. :class:`TokenDecoder` is that machinery.

Accounting. These calls bypass :meth:`Model.generate`, so the decoder records their usage into
the open meters and budgets itself, as *forward-pass work*: ``completion_tokens`` counts
generated tokens (answer, lookahead and speculation alike) as they are evaluated,
``prompt_tokens`` counts prompt tokens evaluated (the first prefill, and any re-evaluation after
another request moved the model's cache). ``calls`` counts request-equivalents: one per decoding
branch started (the answer itself, each lookahead or speculation branch), which is what the same
work would cost through a completions endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from forkpath.models import Model, charge, token_model


def code_block_closed(text: str) -> bool:
    """Whether ``text`` holds a complete fenced code block (the answer to a code task is done)."""
    return text.count("```") >= 2


def changed_pauses(pauses: Sequence[Mapping[str, object]]) -> int:
    """How many pauses chose a token other than the greedy one (``greedy`` != ``chosen``)."""
    return sum(p["greedy"] != p["chosen"] for p in pauses)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class Lookahead:
    """The best continuation found from one forced candidate token."""

    token: int
    logprob: float
    """Log-probability of the candidate token itself."""
    continuation: list[int]
    """Tokens after the candidate (an end token, if reached, is included)."""
    continuation_logprob: float
    """Sum of the continuation's token logprobs."""
    ended: bool
    """Whether the continuation reached an end token."""

    @property
    def length(self) -> int:
        return len(self.continuation)


class TokenDecoder:
    """Greedy and lookahead decoding of one prompt on one token-level model.

    Args:
        model: the model (must be a :class:`TokenModel`).
        prompt: token ids of the prompt (chat template applied).
        by: the strategy name, for error messages.
    """

    def __init__(self, model: Model, prompt: Sequence[int], *, by: str) -> None:
        self.model = model
        self.tm = token_model(model, by=by)
        self.ends = self.tm.end_tokens
        self.prompt = list(prompt)
        self._seen: list[int] = []
        self.forward_passes = 0

    def forget(self, other: Sequence[int] = ()) -> None:
        """Say that another request (token ids ``other``) used the model since our last call.

        The model's cache then holds ``other``; what we share with it is not evaluated again.
        """
        self._seen = list(other)

    def charge_call(self) -> None:
        """Record one request-equivalent (a decoding branch started)."""
        charge(self.model, calls=1)

    def accept(self, generated: list[int], token: int, *, stop_at_code_end: bool = False) -> bool:
        """Append the chosen ``token`` to the answer ``generated``; whether the answer is finished.

        It is finished when ``token`` is an end token (not appended), or, with
        ``stop_at_code_end``, when ``token`` closes the answer's fenced code block.
        """
        if token in self.ends:
            return True
        generated.append(token)
        return (
            stop_at_code_end
            and "`" in self.tm.detokenize([token])
            and code_block_closed(self.tm.detokenize(generated))
        )

    async def logprobs(self, generated: Sequence[int]) -> np.ndarray:
        """Log-probabilities over the vocabulary of the token after ``prompt + generated``."""
        ids = [*self.prompt, *generated]
        common = _common_prefix(self._seen, ids)
        # The model re-evaluates at least the last token; count what is new since our last call.
        new_from = min(common, len(ids) - 1)
        prompt_part = max(0, len(self.prompt) - new_from)
        completion_part = len(ids) - max(new_from, len(self.prompt))
        charge(self.model, calls=0, prompt_tokens=prompt_part, completion_tokens=completion_part)
        self._seen = ids
        self.forward_passes += 1
        return await self.tm.next_token_logprobs(ids)

    async def continue_greedy(
        self,
        generated: Sequence[int],
        max_new: int,
        *,
        done: Callable[[list[int]], bool] | None = None,
    ) -> tuple[list[int], float, bool]:
        """Greedy continuation of ``generated``: (new tokens, their summed logprob, reached an end)."""
        new: list[int] = []
        total = 0.0
        for _ in range(max_new):
            lp = await self.logprobs([*generated, *new])
            token = int(np.argmax(lp))
            total += float(lp[token])
            new.append(token)
            if token in self.ends:
                return new, total, True
            if done is not None and done(new):
                return new, total, True
        return new, total, False

    async def lookahead(
        self,
        generated: Sequence[int],
        token: int,
        token_logprob: float,
        steps: int,
        *,
        beam: int = 1,
    ) -> Lookahead:
        """The best ``steps``-token continuation after forcing ``token`` (beam search of width ``beam``).

        The best final beam is the one with the highest summed logprob; beams stop at end tokens.
        """
        self.charge_call()
        start = [*generated, token]
        if token in self.ends or steps <= 0:
            return Lookahead(token, token_logprob, [], 0.0, token in self.ends)
        if beam <= 1:
            new, total, ended = await self.continue_greedy(start, steps)
            return Lookahead(token, token_logprob, new, total, ended)
        beams: list[tuple[list[int], float, bool]] = [([], 0.0, False)]
        for _ in range(steps):
            grown: list[tuple[list[int], float, bool]] = []
            for tokens, score, ended in beams:
                if ended:
                    grown.append((tokens, score, ended))
                    continue
                lp = await self.logprobs([*start, *tokens])
                top = np.argpartition(-lp, beam)[:beam] if lp.size > beam else np.arange(lp.size)
                for t in top:
                    t = int(t)
                    grown.append(([*tokens, t], score + float(lp[t]), t in self.ends))
            grown.sort(key=lambda b: -b[1])
            beams = grown[:beam]
            if all(ended for _, _, ended in beams):
                break
        tokens, score, ended = max(beams, key=lambda b: b[1])
        return Lookahead(token, token_logprob, tokens, score, ended)


def top_candidates(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely tokens and their logprobs, most likely first (ties: lower id first)."""
    k = min(k, logprobs.size)
    top = np.argpartition(-logprobs, k - 1)[:k] if k < logprobs.size else np.arange(logprobs.size)
    ordered = sorted((int(t) for t in top), key=lambda t: (-float(logprobs[t]), t))
    return [(t, float(logprobs[t])) for t in ordered]


def top2_ratio(logprobs: np.ndarray) -> float:
    """p(second) / p(first): 1 is a tie, near 0 a confident choice (SED's chaos test)."""
    first, second = (lp for _, lp in top_candidates(logprobs, 2))
    return math.exp(second - first)
