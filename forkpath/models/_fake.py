"""A small deterministic model for unit tests of strategy logic.

It speaks characters: the vocabulary is printable ASCII plus an end token, token ids are
``ord(c)`` (end: 0). Answers come from a *script*: the first key that occurs in the prompt
selects a list of answers, and sample ``i`` gets answer ``i`` (modulo the list); greedy calls
get the first. Its next-token distribution puts most mass on the scripted continuation of the
prefix and spreads the rest deterministically, so token-level strategies have something real
to branch on. Selectable by name as ``fake/<anything>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np

from forkpath._errors import BadRequestError
from forkpath.models._base import Model
from forkpath.models._tool_calls import read_tool_calls
from forkpath.models._types import (
    GenerateChunk,
    GenerateRequest,
    GenerateResult,
    Message,
    ModelCapabilities,
    TokenInfo,
    TopLogprob,
    Usage,
)
from forkpath.models._uncertainty import entropy

END = 0
VOCAB_SIZE = 128


class FakeModel(Model):
    """Deterministic scripted model with token-level access (capabilities C1–C5)."""

    def __init__(
        self,
        model_id: str = "fake/default",
        *,
        script: dict[str, list[str]] | None = None,
        default: str = "I do not know.",
        confidence: float = 0.9,
        tokenizer_id: str = "fake-ascii",
        latency_s: float = 0.0,
        token_latency_s: float = 0.0,
        fail_on: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            model_id,
            ModelCapabilities(
                logprobs=True,
                top_logprobs=20,
                full_distribution=True,
                prefix_continuation=True,
                prompt_scoring=True,
                tokenizer_id=tokenizer_id,
                n_ctx=4096,
                batch_invariant=True,  # teacher forcing is one next_token_logprobs call per position
                tool_calls=True,  # scripted answers call tools in <tool_call> blocks
            ),
            **options,
        )
        self.script = script or {}
        self.default = default
        self.confidence = confidence
        self.latency_s = latency_s
        """Seconds each call takes (for tests of concurrency, timeouts and interrupted runs)."""
        self.token_latency_s = token_latency_s
        """Seconds between the tokens of a streamed answer (:meth:`Model.stream`)."""
        self.fail_on = fail_on or {}
        """Prompt substring -> error message: such a call raises :class:`BadRequestError`."""
        self.calls = 0
        self.decoding = 0
        """Streams being decoded now (a stream whose consumer stops is no longer decoded)."""
        self.streamed_tokens = 0
        """Tokens produced by streams so far."""

    # -- token level ---------------------------------------------------------------------------
    @property
    def end_tokens(self) -> frozenset[int]:
        return frozenset({END})

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(c) if 32 <= ord(c) < 127 or c == "\n" else ord("?") for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens if t != END)

    def chat_prefix(self, messages: Sequence[Any]) -> list[int]:
        return self.tokenize(self._prompt_text(tuple(messages)))

    def _answer_for(self, prompt: str, sample_index: int) -> str:
        for key, answers in self.script.items():
            if key in prompt:
                return answers[sample_index % len(answers)]
        return self.default

    def _distribution(self, context: str, generated: str, sample_index: int) -> np.ndarray:
        """Log-probs of the next token given the prompt text and what was generated so far."""
        target = self._answer_for(context, sample_index)
        wanted = (
            ord(target[len(generated)])
            if generated == target[: len(generated)] and len(generated) < len(target)
            else END
        )
        seed = int.from_bytes(hashlib.sha256((context + "\x00" + generated).encode()).digest()[:8], "little")
        noise = np.random.default_rng(seed).random(VOCAB_SIZE)
        probs = noise / noise.sum() * (1.0 - self.confidence)
        probs[wanted] += self.confidence
        return np.log(probs)

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        text = self.detokenize(prefix)
        return self._distribution(text, "", 0) if not self.script else self._split_distribution(text)

    async def continuation_logprobs(self, prefix: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        """One :meth:`next_token_logprobs` per position (so it agrees with them exactly)."""
        rows = [
            await self.next_token_logprobs([*prefix, *continuation[:i]]) for i in range(len(continuation) + 1)
        ]
        return np.stack(rows)

    def _split_distribution(self, text: str) -> np.ndarray:
        # The prefix is prompt + partial answer; find the scripted answer it continues.
        for key, answers in self.script.items():
            if key in text:
                for answer in answers:
                    for cut in range(len(answer), -1, -1):
                        if text.endswith(answer[:cut]) and cut > 0:
                            return self._distribution(
                                text[: len(text) - cut], answer[:cut], answers.index(answer)
                            )
                return self._distribution(text, "", 0)
        return self._distribution(text, "", 0)

    # -- generation ----------------------------------------------------------------------------
    @staticmethod
    def _prompt_text(messages: tuple[Message, ...]) -> str:
        return "\n".join(
            f"{m.role}: {m.content}" + "".join(f"\n<call {c.name} {c.arguments}>" for c in m.tool_calls)
            for m in messages
        )

    async def _stream(self, request: GenerateRequest) -> AsyncGenerator[GenerateChunk, None]:
        """One chunk per character, ``token_latency_s`` apart, then the result."""
        result = await self._generate(request)
        self.decoding += 1
        try:
            for token in result.tokens:
                await asyncio.sleep(self.token_latency_s)
                self.streamed_tokens += 1
                yield GenerateChunk(text=token.token, tokens=[token])
        finally:
            self.decoding -= 1
        yield GenerateChunk(result=result)

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        self.calls += 1
        if request.messages is not None:
            prompt = self._prompt_text(request.messages)
        elif request.prompt is not None:
            prompt = request.prompt
        else:
            prompt = self.detokenize(request.prompt_tokens or ())
        for needle, message in self.fail_on.items():
            if needle in prompt:
                raise BadRequestError(message, model=self.id)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        index = request.sample_index if request.temperature > 0 else 0
        answer = self._answer_for(prompt, index)
        finish: str = "stop"
        for stop in request.stop:
            if stop in answer:
                answer = answer[: answer.index(stop)]
        if len(answer) > request.max_tokens:
            answer, finish = answer[: request.max_tokens], "length"
        tokens: list[TokenInfo] = []
        for i, ch in enumerate(answer):
            lp = self._distribution(prompt, answer[:i], index)
            order = np.argsort(-lp)[: max(request.top_logprobs, 1)]
            tokens.append(
                TokenInfo(
                    token=ch,
                    token_id=ord(ch),
                    logprob=float(lp[ord(ch)]) if ord(ch) < VOCAB_SIZE else -math.inf,
                    top=[
                        TopLogprob(token=chr(int(t)) if t else "", token_id=int(t), logprob=float(lp[t]))
                        for t in order
                    ]
                    if request.top_logprobs
                    else [],
                    entropy=entropy(lp),
                )
            )
        result = GenerateResult(
            model=self.id,
            text=answer,
            tokens=tokens,
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(calls=1, prompt_tokens=len(prompt), completion_tokens=len(answer)),
        )
        # Scripted answers call tools the way local models do: <tool_call> blocks in the text.
        return read_tool_calls(result, request, id_prefix=f"call_{self.calls}")
