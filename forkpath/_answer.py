"""The answer stream: how a strategy's final answer reaches a streaming client as it is produced.

A caller that streams (``forkpath serve``) opens an :class:`AnswerStream` around the strategy it
runs (:func:`answer_stream`). The outermost strategy call owns it (:func:`strategy_scope`, which
``Strategy.__call__`` enters); a strategy nested inside another sees none, because its answer is
not final. Where a strategy produces text that is final as it is produced (a cascade's deferred
answer, CoThink's solving stage, token routing, speculative decoding), it writes the text through
:func:`generate_answer` (a model call streamed with ``Model.stream``) or an :class:`AnswerWriter`
(token ids decoded as they are accepted). With no stream open both cost a context-variable lookup,
and ``generate_answer`` is exactly ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forkpath.models import GenerateRequest, GenerateResult, Model


class AnswerStream:
    """Receives the final answer's text as it is produced.

    Args:
        on_text: called with each new piece of text, in order.
    """

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self._on_text = on_text
        self.text = ""
        """Everything written so far."""

    def write(self, delta: str) -> None:
        if delta:
            self.text += delta
            self._on_text(delta)


@dataclass(frozen=True)
class _Slot:
    stream: AnswerStream
    owned: bool


_slot: ContextVar[_Slot | None] = ContextVar("forkpath_answer_stream", default=None)


@contextmanager
def answer_stream(stream: AnswerStream) -> Iterator[AnswerStream]:
    """Offer ``stream`` to the next strategy called in this context (the outermost one)."""
    token = _slot.set(_Slot(stream, owned=False))
    try:
        yield stream
    finally:
        _slot.reset(token)


@contextmanager
def strategy_scope() -> Iterator[None]:
    """Entered by every strategy call: the first one takes the offered stream, nested ones none."""
    slot = _slot.get()
    if slot is None:
        yield
        return
    token = _slot.set(None if slot.owned else _Slot(slot.stream, owned=True))
    try:
        yield
    finally:
        _slot.reset(token)


def current_answer_stream() -> AnswerStream | None:
    """The stream the running strategy's final answer goes to, or None."""
    slot = _slot.get()
    return slot.stream if slot is not None and slot.owned else None


async def generate_answer(model: Model, request: GenerateRequest) -> GenerateResult:
    """``model.generate(request)`` for a call whose text is the final answer: with an answer
    stream open, the text is written into it as the model produces it (``Model.stream``)."""
    stream = current_answer_stream()
    if stream is None:
        return await model.generate(request)
    result = None
    async for chunk in model.stream(request):
        stream.write(chunk.text)
        if chunk.result is not None:
            result = chunk.result
    assert result is not None, "Model.stream ended without a result"
    return result


class AnswerWriter:
    """Writes the text of a growing sequence of answer token ids into the open answer stream.

    A character whose bytes are split across tokens is held back until it is whole.

    Args:
        detokenize: token ids to text (the model's tokenizer).
    """

    def __init__(self, detokenize: Callable[[Sequence[int]], str]) -> None:
        self._stream = current_answer_stream()
        self._detokenize = detokenize
        self._sent = ""

    def update(self, tokens: Sequence[int]) -> None:
        """``tokens`` is the whole answer so far; write what is new since the last update."""
        if self._stream is None:
            return
        text = self._detokenize(tokens).rstrip("\ufffd")
        if len(text) > len(self._sent) and text.startswith(self._sent):
            self._stream.write(text[len(self._sent) :])
            self._sent = text
