"""A table-driven token model, so that search trees in tests and examples are known exactly.

:class:`~forkpath.models.FakeModel` replays a whole scripted answer for any prompt that contains
a key, which suits step-level searches. A token-level search needs a model whose continuation
depends on the exact prefix: :class:`TableModel` is one. Its tokens are characters (id
``ord(c)``, end of answer ``0``), and a table maps the answer so far to the probabilities of
the next character; the end of the answer is ``""``, and a prefix not in the table ends there::

    model = TableModel({"": {"a": 0.9, "x": 0.1}, "a": {"b": 0.6, "c": 0.4}})
    # greedy answer "ab"; top-2 after "": a (0.9), x (0.1)

Greedy decoding takes the most likely character (ties: the first listed). It continues token
prefixes (``prompt_tokens``) and partial assistant turns alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from forkpath.models import (
    GenerateRequest,
    GenerateResult,
    Model,
    ModelCapabilities,
    TokenInfo,
    TopLogprob,
    Usage,
)

_ASSISTANT = "<assistant>"


class TableModel(Model):
    """Characters as tokens, next-character probabilities from a table (see the module doc).

    Args:
        table: answer so far -> {next character or "" (end): probability}.
        model_id: the id it reports.
        delay_s: seconds each call sleeps (lets concurrent workers interleave in tests).
    """

    def __init__(
        self, table: Mapping[str, Mapping[str, float]], model_id: str = "table/model", *, delay_s: float = 0.0
    ) -> None:
        super().__init__(
            model_id,
            ModelCapabilities(
                logprobs=True,
                top_logprobs=20,
                full_distribution=True,
                prefix_continuation=True,
                tokenizer_id="chars",
            ),
            max_concurrency=1,
        )
        self.table = {k: dict(v) for k, v in table.items()}
        self.delay_s = delay_s
        self.calls: list[str] = []
        """The answer prefix each call continued, in order."""

    @property
    def end_tokens(self) -> frozenset[int]:
        return frozenset({0})

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens if t > 0)

    def chat_prefix(self, messages: Sequence[Any]) -> list[int]:
        turns = list(messages)
        partial = turns.pop().content if turns and turns[-1].role == "assistant" else ""
        return self.tokenize("".join(f"<{m.role}>{m.content}" for m in turns) + _ASSISTANT + partial)

    def distribution(self, answer: str) -> list[tuple[str, float]]:
        """The next-character probabilities after ``answer``, most likely first."""
        return sorted(self.table.get(answer, {"": 1.0}).items(), key=lambda kv: -kv[1])

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        answer = self.detokenize(prefix).split(_ASSISTANT, 1)[-1]
        logprobs = np.full(128, -math.inf)
        for ch, p in self.distribution(answer):
            logprobs[ord(ch) if ch else 0] = math.log(p)
        return logprobs

    async def continuation_logprobs(self, prefix: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        rows = [
            await self.next_token_logprobs([*prefix, *continuation[:i]]) for i in range(len(continuation) + 1)
        ]
        return np.stack(rows)

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        if request.prompt_tokens is not None:
            text = self.detokenize(request.prompt_tokens)
        elif request.messages is not None:
            text = self.detokenize(self.chat_prefix(request.messages))
        else:
            text = _ASSISTANT + (request.prompt or "")
        answer = text.split(_ASSISTANT, 1)[-1]
        self.calls.append(answer)
        if self.delay_s:
            import asyncio

            await asyncio.sleep(self.delay_s)
        tokens: list[TokenInfo] = []
        finish = "length"
        for _ in range(request.max_tokens):
            ranked = self.distribution(answer + "".join(t.token for t in tokens))
            ch, p = ranked[0]
            if not ch:
                finish = "stop"
                break
            tokens.append(
                TokenInfo(
                    token=ch,
                    token_id=ord(ch),
                    logprob=math.log(p),
                    top=[
                        TopLogprob(token=c, token_id=ord(c) if c else 0, logprob=math.log(q))
                        for c, q in ranked[: request.top_logprobs]
                    ],
                )
            )
            generated = "".join(t.token for t in tokens)
            if any(generated.endswith(s) for s in request.stop if s):
                finish = "stop"
                break
        generated = "".join(t.token for t in tokens)
        cut = min((generated.index(s) for s in request.stop if s and s in generated), default=len(generated))
        return GenerateResult(
            model=self.id,
            text=generated[:cut],
            tokens=tokens,
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(calls=1, prompt_tokens=len(text), completion_tokens=len(tokens)),
        )
