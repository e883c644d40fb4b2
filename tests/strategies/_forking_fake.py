"""A fake model whose next-token distribution forks: for token-level strategies (sed, adadec).

The plain :class:`FakeModel` follows one scripted answer with fixed confidence, so it never has
a near-tie to branch on. :class:`ForkingFake` mixes several answers with weights: the next
token's probability is the weight of the answers still consistent with what was generated so
far (plus a little deterministic noise), so where two answers part the distribution splits
exactly as the weights say. Whole-answer calls (``generate``) still follow ``script``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from forkpath.models import FakeModel
from forkpath.models._fake import END, VOCAB_SIZE

MARK = "\nassistant: "


class ForkingFake(FakeModel):
    """``branches``: a key found in the prompt selects ``{answer: weight}`` for token-level calls."""

    def __init__(
        self,
        model_id: str = "fake/fork",
        *,
        branches: dict[str, dict[str, float]],
        script: dict[str, list[str]] | None = None,
        noise: float = 0.02,
        **options: Any,
    ) -> None:
        super().__init__(model_id, script=script or {}, **options)
        self.branches = branches
        self.noise = noise
        self.token_calls = 0

    def chat_prefix(self, messages: Sequence[Any]) -> list[int]:
        return self.tokenize(self._prompt_text(tuple(messages)) + MARK)

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        self.token_calls += 1
        text = self.detokenize(prefix)
        context, _, generated = text.rpartition(MARK)
        answers = next((w for key, w in self.branches.items() if key in context), {})
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        noise = np.random.default_rng(seed).random(VOCAB_SIZE)
        probs = noise / noise.sum() * self.noise
        consistent = {a: w for a, w in answers.items() if a.startswith(generated)}
        total = sum(consistent.values())
        if total == 0:
            probs[END] += 1.0 - self.noise
        else:
            for answer, weight in consistent.items():
                nxt = ord(answer[len(generated)]) if len(answer) > len(generated) else END
                probs[nxt] += (1.0 - self.noise) * weight / total
        return np.log(probs)
