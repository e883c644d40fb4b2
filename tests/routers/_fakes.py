"""Test doubles built on the deterministic FakeModel.

:class:`ScriptedFake` keeps FakeModel's character vocabulary, capabilities and next-token
distributions (most mass on the scripted character, the rest spread by a seeded hash), and
adds two things the routing tests need: it continues *any* partial answer (the first scripted
answer that extends the text so far is followed; none: the answer ends), and its confidence
can dip at chosen answer positions, so a router has exact places to hand over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from forkpath.models import FakeModel, GenerateRequest, GenerateResult, TokenInfo, TopLogprob, Usage
from forkpath.models._fake import END
from forkpath.models._uncertainty import entropy

PROMPT = "user: Q?"
"""The chat prefix of a task whose prompt is ``Q?`` (kind ``text``), as FakeModel renders it."""


class ScriptedFake(FakeModel):
    """A FakeModel that continues partial answers along ``answers`` (see the module docstring)."""

    def __init__(
        self,
        model_id: str,
        answers: list[str],
        *,
        dips: dict[int, float] | None = None,
        confidence: float = 0.95,
        tokenizer_id: str = "fake-ascii",
    ) -> None:
        super().__init__(model_id, script={"Q?": answers}, confidence=confidence, tokenizer_id=tokenizer_id)
        self.answers = answers
        self.dips = dips or {}
        self.positions: list[int] = []
        """Answer positions of every next_token_logprobs call (what the model was asked)."""

    def _follow(self, generated: str) -> int:
        return next((i for i, a in enumerate(self.answers) if a.startswith(generated)), -1)

    def _dist(self, generated: str) -> np.ndarray:
        # Off script, FakeModel's own rule applies: the scripted answer is not matched, so END.
        index = max(self._follow(generated), 0)
        base = self.confidence
        self.confidence = self.dips.get(len(generated), base)
        try:
            return self._distribution(PROMPT, generated, index)
        finally:
            self.confidence = base

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        text = self.detokenize(prefix)
        assert text.startswith(PROMPT), text
        self.positions.append(len(text) - len(PROMPT))
        return self._dist(text[len(PROMPT) :])

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        self.calls += 1
        if request.messages is not None:
            messages = request.messages
            partial = messages[-1].content if messages[-1].role == "assistant" else ""
            text = self._prompt_text(messages[:-1] if messages[-1].role == "assistant" else messages)
            text += partial
        else:
            text = self.detokenize(request.prompt_tokens or ()) if request.prompt is None else request.prompt
        assert text.startswith(PROMPT), text
        generated = text[len(PROMPT) :]
        out = ""
        tokens: list[TokenInfo] = []
        finish = "length"
        while len(tokens) < request.max_tokens:
            lp = self._dist(generated + out)
            token = int(np.argmax(lp))
            if token == END:
                finish = "stop"
                break
            candidate = out + chr(token)
            if any(s in candidate for s in request.stop):
                finish = "stop"
                break
            order = np.argsort(-lp)[: max(request.top_logprobs, 1)]
            tokens.append(
                TokenInfo(
                    token=chr(token),
                    token_id=token,
                    logprob=float(lp[token]),
                    top=[
                        TopLogprob(token=chr(int(t)) if t else "", token_id=int(t), logprob=float(lp[t]))
                        for t in order
                    ]
                    if request.top_logprobs
                    else [],
                    entropy=entropy(lp),
                )
            )
            out = candidate
        return GenerateResult(
            model=self.id,
            text=out,
            tokens=tokens,
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(calls=1, prompt_tokens=len(text), completion_tokens=len(tokens)),
        )


class VaryingFake(FakeModel):
    """A FakeModel whose confidence differs from prompt to prompt (a seeded hash of the prompt),
    so answer-level scores spread out the way a real model's do across tasks."""

    def _distribution(self, context: str, generated: str, sample_index: int) -> np.ndarray:
        digest = hashlib.sha256(context.encode()).digest()
        base = self.confidence
        self.confidence = 0.3 + 0.69 * int.from_bytes(digest[:4], "little") / 2**32
        try:
            return super()._distribution(context, generated, sample_index)
        finally:
            self.confidence = base
