"""Backend ``llamacpp``: a GGUF model in-process through llama-cpp-python.

Why a decode loop of our own: llama-cpp-python's logprobs path needs ``logits_all=True``, which
keeps every position's logits and runs about ten times slower. We read only the last position's
logits (``llama_get_logits_ith(ctx, -1)``, a view, no copy), which gives top-k logprobs and the
entropy of the full distribution at plain-generation speed.

One :class:`_Engine` per (file, context size, batch invariance, sequences, KV cells) is loaded
per process and shared by every :class:`LlamaCppModel` on it. Its
:class:`~forkpath.models._engine.Scheduler` owns the llama.cpp context and decodes every caller's
sequences together, one batch per step (continuous batching, shared prompt KV, a prefix index
over the sequences: see :mod:`forkpath.models._engine`). A generation becomes a
:class:`_DecodeJob` (its sampler state: seed + sample index, stop strings, max_tokens, logprobs),
a token-level call a :class:`_RowsJob` (the logits rows it asks for).

Two load-time settings matter for correctness, not just speed:

- ``batch_invariant=True`` makes a token's logits independent of how it was batched: evaluated
  alone, in a prompt, or in a speculative-decoding verification batch of any size, at any
  thread count, they are the same bits. llama.cpp's fast CPU kernels are not: weight repacking
  (gemm for groups of four rows, gemv for the rest), the tiled K-quant matmul (8 rows and more),
  the tiled flash-attention kernel (64 queries and more) and the split-KV attention path (one
  query over 512 cells and more) each round differently from the one-token path, by up to ~0.5 in
  a logit on Qwen2.5-Coder-1.5B. The setting turns them off: no extra buffer types, no tiled
  matmul (``GGML_CPU_TILED_MM=0``, process-wide), flash attention on with a Q8_0 KV cache (which
  takes neither tiled nor split-KV attention). A probe at load checks the matmul paths bit for
  bit and raises if the process's llama.cpp still differs (the tests also check the attention
  paths, past 64 queries and 512 cells). Cost: measured by ``bench/batch_numerics.py``.
- On CPUs with AMX, llama.cpp's AMX weight buffers crash in ``ggml_backend_amx_mul_mat`` on
  Q4_K_M models (upstream ggml-org/llama.cpp#20824, still open); extra buffer types are turned
  off there (:func:`extra_buffers_safe`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forkpath._errors import ModelError, ModelNotFoundError
from forkpath.models._base import Model
from forkpath.models._constraints import TokenMatcher, token_matcher
from forkpath.models._engine import Job, Scheduler
from forkpath.models._sampling import apply_mask, choose_weighted, penalty_history, sample_rng
from forkpath.models._tool_calls import (
    TOOL_CALL_TAGS,
    forced_call_constraint,
    forced_call_opening,
    read_tool_calls,
    template_supports_tools,
)
from forkpath.models._types import (
    FinishReason,
    GenerateChunk,
    GenerateRequest,
    GenerateResult,
    Message,
    ModelCapabilities,
    TokenInfo,
    ToolSpec,
    TopLogprob,
    Usage,
)
from forkpath.models._uncertainty import entropy, log_softmax
from forkpath.models._usage import record_usage

MAX_TOP_LOGPROBS = 100
DEFAULT_SEQUENCES = 16
"""Sequences one engine decodes together (``n_seq_max``)."""
DEFAULT_KV_PER_CTX = 2
"""KV cells of an engine, per token of ``n_ctx`` (the cache is shared by all its sequences)."""
DEFAULT_FLASH_ATTN = True
"""Whether engines load with llama.cpp's flash attention. Measured on both Qwen models and SmolLM2
(``bench/flash_attn.py``): 1.03-1.35x the decode speed of one sequence, 1.16-1.37x for 8-16
sequences after a short prompt, 1.00-1.13x prefill; 0.77-0.89x for 8-16 sequences sharing an
1,800-token prompt (each query reads every shared cell where the matmul path reads them once)."""
MAX_QUEUED = 1024
"""Calls in flight through one model instance (the engine queues them FIFO)."""
PREFILL_CHUNK = 512
"""Most prompt tokens added to a step in which other sequences decode."""


class _Engine:
    """One loaded llama.cpp model and context, decoded by its scheduler thread."""

    def __init__(
        self,
        path: Path,
        n_ctx: int,
        n_threads: int | None,
        batch_invariant: bool = False,
        *,
        n_seq_max: int = DEFAULT_SEQUENCES,
        kv_cells: int | None = None,
        flash_attn: bool = DEFAULT_FLASH_ATTN,
    ) -> None:
        self.path = path
        self.batch_invariant = batch_invariant
        cells = kv_cells or DEFAULT_KV_PER_CTX * n_ctx
        try:
            self.llm = new_llama(
                path,
                batch_invariant=batch_invariant,
                n_seq_max=n_seq_max,
                flash_attn=flash_attn,
                n_ctx=cells,
                n_threads=n_threads or os.cpu_count() or 1,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise ModelNotFoundError(f"cannot load GGUF file {path}: {e}") from e
        self.n_vocab = self.llm.n_vocab()
        self.n_ctx = n_ctx
        self.eos = self.llm.token_eos()
        self.eot = {self.eos, *self._end_tokens()}
        self.chat_template: str | None = self.llm.metadata.get("tokenizer.chat_template")
        self.chat_formatter = self._chat_formatter()
        self._pieces: dict[int, bytes] = self._shown_specials()
        self.scheduler = Scheduler(
            self.llm,
            n_ctx=self.n_ctx,
            n_seq_max=n_seq_max,
            kv_cells=self.llm.n_ctx(),
            prefill_chunk=PREFILL_CHUNK,
            name=path.stem,
        )
        if batch_invariant:
            self._probe_batch_invariance()

    def _probe_batch_invariance(self) -> None:
        """Raise unless 12 tokens give the same last logits in one batch as 11 + 1.

        Twelve rows take every batched matmul path that the one-token path does not (repacked
        gemm for groups of four, the tiled matmul from eight rows); one row takes gemv / vec_dot.
        The attention paths that differ (tiled from 64 queries, split-KV from 512 cells) are not
        probed: the Q8_0 KV cache keeps them out, and the tests check them (past 64 and 512).
        """
        text = b"def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n"
        probe = (self.llm.tokenize(text) * 12)[:12]
        try:
            whole = self.rows(probe, 1)[0]
            self.scheduler.forget()
            self.rows(probe[:-1], 1)
            alone = self.rows(probe, 1)[0]
            self.scheduler.forget()
        except BaseException:
            self.close()
            raise
        gap = float(np.max(np.abs(whole - alone)))
        if gap == 0.0:
            return
        self.close()
        tiled = os.environ.get("GGML_CPU_TILED_MM")
        why = (
            "this llama.cpp build rounds batches differently even with the batch-invariant settings"
            if tiled == "0"
            else f"llama.cpp reads GGML_CPU_TILED_MM once, at its first matrix product (here: {tiled!r}): "
            "set it to 0 in the environment, or load batch-invariant models before any other model computes"
        )
        raise ModelError(
            f"batch_invariant: {self.path.name} gives different logits in a batch than alone "
            f"(max difference {gap:.3g}) in this process; {why}"
        )

    def rows(self, tokens: Sequence[int], n_rows: int) -> np.ndarray:
        """The logits after each of the last ``n_rows`` of ``tokens``, blocking (no event loop)."""
        job = _RowsJob(tokens, n_rows, self.n_vocab)
        self.scheduler.run_sync(job)
        return job.out

    def close(self) -> None:
        self.scheduler.close()
        self.llm.close()

    def _end_tokens(self) -> set[int]:
        ends: set[int] = set()
        for text in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            ids = self.llm.tokenize(text.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                ends.add(ids[0])
        return ends

    def _chat_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.chat_template
        if not template:
            return None

        def piece(token: int) -> str:
            return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

        bos = self.llm.token_bos()
        return Jinja2ChatFormatter(
            template=template, eos_token=piece(self.eos), bos_token=piece(bos) if bos >= 0 else ""
        )

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = bytes(self.llm.detokenize([token]))
        return cached

    def _shown_specials(self) -> dict[int, bytes]:
        """Special tokens that are part of the text a caller reads: the tool-call tags of
        templates such as Qwen2.5's (``<tool_call>`` is one special token there)."""
        shown = {}
        for tag in TOOL_CALL_TAGS:
            ids = self.llm.tokenize(tag.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                shown[int(ids[0])] = tag.encode()
        return shown


class _RowsJob(Job):
    """A token-level call: the logits rows after the last ``n_rows`` tokens (teacher forcing,
    a next-token distribution, speculative verification)."""

    def __init__(self, tokens: Sequence[int], n_rows: int, n_vocab: int) -> None:
        super().__init__(tokens, rows=n_rows)
        self.out = np.empty((n_rows, n_vocab), dtype=np.float32)

    def on_logits(self, index: int, logits: np.ndarray) -> int | None:
        self.out[index] = logits
        return None


class _DecodeJob(Job):
    """A generation's sampler state; runs on the engine thread, one token per step."""

    def __init__(
        self,
        engine: _Engine,
        prompt: list[int],
        request: GenerateRequest,
        on_token: Callable[[TokenInfo], None] | None = None,
        matcher: TokenMatcher | None = None,
    ) -> None:
        super().__init__(prompt, rows=1, growth=request.max_tokens)
        self.matcher = matcher
        if matcher is not None and request.constraint_prefix:
            for done in prompt[-request.constraint_prefix :]:
                matcher.advance(done)
        # Rejection sampling checks single tokens; logprobs, entropy and truncation need the mask.
        self.by_rejection = (
            matcher is not None
            and request.constraint is not None
            and request.constraint.method == "rejection"
            and not request.wants_logprobs
            and not request.sampling.truncated
        )
        self.engine = engine
        self.request = request
        self.sampling = request.sampling
        self.rng = sample_rng(request.seed, request.sample_index)
        self.generated: list[int] = []
        self.log_weight: float | None = (
            0.0 if matcher is not None and not self.sampling.greedy and not self.sampling.truncated else None
        )
        """Sum of the steps' log allowed mass (``GenerateResult.log_weight``)."""
        self.infos: list[TokenInfo] = []
        self.text = bytearray()
        self.finish_reason: FinishReason = "length"
        self.on_token = on_token
        self.streamed = 0
        self.hold = max((len(s.encode()) for s in request.stop), default=1) - 1
        """Bytes of text not streamed yet because a stop string may still cut them."""

    def on_logits(self, index: int, logits: np.ndarray) -> int | None:
        engine, request, sampling = self.engine, self.request, self.sampling
        # Penalties act on raw logits over the generated tokens, as llama-cpp-python's server does.
        history = penalty_history(self.generated) if sampling.penalised else ()
        matcher = self.matcher
        if matcher is not None and matcher.finished:
            self.finish_reason = "stop"
            return None
        allowed = matcher.allowed() if matcher is not None and not self.by_rejection else None
        check = matcher.allows if matcher is not None and self.by_rejection else None
        token, mass = choose_weighted(
            logits,
            sampling,
            self.rng,
            history,
            allowed=allowed,
            check=check,
            full_mask=matcher.allowed if check is not None and matcher is not None else None,
        )
        if self.log_weight is not None and mass is not None:
            self.log_weight += math.log(mass)
        if matcher is not None:
            matcher.advance(token)
        self.generated.append(token)
        if token in engine.eot:
            self.finish_reason = "stop"
            return None
        piece = engine.piece(token)
        info = TokenInfo(token=piece.decode("utf-8", errors="replace"), token_id=token)
        if request.wants_logprobs:
            logprobs = log_softmax(apply_mask(logits, allowed))  # the constrained distribution
            info.logprob = float(logprobs[token])
            info.entropy = entropy(logprobs)
            k = request.top_logprobs
            if k:
                top = np.argpartition(-logprobs, k)[:k]
                top = top[np.argsort(-logprobs[top])]
                top = top[np.isfinite(logprobs[top])]  # a constraint's forbidden tokens are no alternatives
                info.top = [
                    TopLogprob(
                        token=engine.piece(int(t)).decode("utf-8", errors="replace"),
                        token_id=int(t),
                        logprob=float(logprobs[t]),
                    )
                    for t in top
                ]
        self.infos.append(info)
        self.text.extend(piece)
        if request.stop:
            decoded = self.text.decode("utf-8", errors="ignore")
            hit = [decoded.index(s) for s in request.stop if s in decoded]
            if hit:
                self.text = bytearray(decoded[: min(hit)].encode())
                self.infos = _tokens_within(self.infos, len(self.text), engine)
                self.finish_reason = "stop"
                return None
        if self.on_token is not None:
            self._stream_safe()
        return token if len(self.infos) < request.max_tokens else None

    def _stream_safe(self) -> None:
        """Hand the tokens no stop string can cut any more to ``on_token``."""
        assert self.on_token is not None
        safe = len(self.text) - self.hold
        used = sum(len(self.engine.piece(i.token_id or 0)) for i in self.infos[: self.streamed])
        while self.streamed < len(self.infos):
            info = self.infos[self.streamed]
            used += len(self.engine.piece(info.token_id or 0))
            if used > safe:
                break
            self.on_token(info)
            self.streamed += 1

    def result(self, model_id: str) -> GenerateResult:
        return GenerateResult(
            model=model_id,
            text=self.text.decode("utf-8", errors="replace"),
            tokens=self.infos,
            finish_reason=self.finish_reason,
            usage=Usage(calls=1, prompt_tokens=len(self.tokens), completion_tokens=len(self.infos)),
            log_weight=self.log_weight,
        )


_ENGINES: dict[tuple[str, int, bool, int, int | None, bool], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def extra_buffers_safe() -> bool:
    """Whether llama.cpp's extra weight buffer types (repacking, AMX) can be used here.

    Not on CPUs with AMX: ``ggml_backend_amx_mul_mat`` crashes on Q4_K_M models
    (ggml-org/llama.cpp#20824). Repacking would be safe but comes in the same switch.
    """
    import llama_cpp

    return b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info()


def reserve_batch_invariance() -> None:
    """Turn llama.cpp's tiled matmul off for this process unless the environment says otherwise.

    llama.cpp reads ``GGML_CPU_TILED_MM`` once, at the process's first matrix product, so this
    must happen before any model computes. Loading a ``batch_invariant`` model does it, and a
    flow run does it for all its models at its start (:func:`forkpath.models._resolve.prepare_model`);
    in a process where some model computed earlier that is too late, and the load probe says so.
    """
    os.environ.setdefault("GGML_CPU_TILED_MM", "0")


def new_llama(
    path: str | Path,
    *,
    batch_invariant: bool = False,
    n_seq_max: int = 1,
    flash_attn: bool = DEFAULT_FLASH_ATTN,
    **kwargs: Any,
) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` loaded as forkpath loads models: extra weight buffers
    only where they are safe, flash attention as forkpath's default, and with ``batch_invariant``
    the settings of the module docstring. ``n_seq_max`` > 1 gives a context of that many
    sequences over one unified KV cache of ``n_ctx`` cells. ``kwargs`` go to ``Llama``
    (``n_ctx``, ``n_threads``, ``logits_all``, ...)."""
    import llama_cpp

    kwargs["flash_attn"] = flash_attn
    if batch_invariant:
        reserve_batch_invariance()
        q8 = llama_cpp.GGML_TYPE_Q8_0
        kwargs = {**kwargs, "flash_attn": True, "type_k": q8, "type_v": q8}
    with (
        model_params(use_extra_bufts=not batch_invariant and extra_buffers_safe()),
        _sequences(n_seq_max),
    ):
        return llama_cpp.Llama(model_path=str(path), **kwargs)


@contextlib.contextmanager
def _sequences(n_seq_max: int) -> Iterator[None]:
    """Create contexts with ``n_seq_max`` sequences and a unified KV cache, which ``Llama`` has
    no argument for: its constructor takes ``llama_context_default_params``, patched here."""
    import llama_cpp.llama_cpp as low

    if n_seq_max == 1:
        yield
        return
    with _PARAMS_LOCK:
        default = low.llama_context_default_params

        def params() -> Any:
            p = default()
            p.n_seq_max = n_seq_max
            p.kv_unified = True
            return p

        low.llama_context_default_params = params
        try:
            yield
        finally:
            low.llama_context_default_params = default


@contextlib.contextmanager
def model_params(*, use_extra_bufts: bool) -> Iterator[None]:
    """Load models with ``use_extra_bufts`` set, which ``llama_cpp.Llama`` has no argument for:
    its constructor takes the defaults from ``llama_model_default_params``, patched here."""
    import llama_cpp.llama_cpp as low

    with _MODEL_PARAMS_LOCK:  # one patch at a time: a second would save the first's as the default
        default = low.llama_model_default_params

        def params() -> Any:
            p = default()
            p.use_extra_bufts = use_extra_bufts
            return p

        low.llama_model_default_params = params
        try:
            yield
        finally:
            low.llama_model_default_params = default


_PARAMS_LOCK = threading.Lock()
_MODEL_PARAMS_LOCK = threading.Lock()


@atexit.register
def _close_engines() -> None:
    # Free llama.cpp models while the interpreter is still whole; at shutdown the library's own
    # finalisers run after their module globals are gone and print errors.
    for engine in _ENGINES.values():
        engine.close()
    _ENGINES.clear()


def _engine(
    path: Path,
    n_ctx: int,
    n_threads: int | None,
    batch_invariant: bool,
    n_seq_max: int,
    kv_cells: int | None,
    flash_attn: bool,
) -> _Engine:
    flash_attn = flash_attn or batch_invariant
    key = (str(path.resolve()), n_ctx, batch_invariant, n_seq_max, kv_cells, flash_attn)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = _Engine(
                path,
                n_ctx,
                n_threads,
                batch_invariant,
                n_seq_max=n_seq_max,
                kv_cells=kv_cells,
                flash_attn=flash_attn,
            )
        return _ENGINES[key]


class LlamaCppModel(Model):
    """A GGUF model run in-process, with token-level access (capabilities C1–C5).

    Args:
        model_id: the name it is known by (``local/smollm2-135m``, ``llamacpp/path.gguf``).
        path: the GGUF file.
        n_ctx: context size in tokens.
        n_threads: CPU threads (default: all cores).
        tokenizer_id: vocabulary identity; by default the file's tokenizer model and vocabulary size.
        batch_invariant: load so that a token's logits are the same bits whether it is evaluated
            alone or in a batch (needed for greedy speculative decoding to equal this model's own
            greedy decoding); slower prefill, see the module docstring.
        n_seq_max: sequences decoded together in one batch.
        kv_cells: KV cache cells shared by those sequences (default: twice ``n_ctx``).
        flash_attn: llama.cpp's flash-attention kernels (always on with ``batch_invariant``);
            faster decoding here, see :data:`DEFAULT_FLASH_ATTN`.
    """

    def __init__(
        self,
        model_id: str,
        path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        tokenizer_id: str | None = None,
        batch_invariant: bool = False,
        n_seq_max: int = DEFAULT_SEQUENCES,
        kv_cells: int | None = None,
        flash_attn: bool = DEFAULT_FLASH_ATTN,
        **options: Any,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}", model=model_id)
        try:
            import llama_cpp  # noqa: F401
        except ImportError as e:
            raise ModelNotFoundError(
                "llama-cpp-python is not installed (pip install 'forkpath[local]')", model=model_id
            ) from e
        self.path = path
        self._engine = _engine(path, n_ctx, n_threads, batch_invariant, n_seq_max, kv_cells, flash_attn)
        vocab_id = (
            tokenizer_id
            or f"{self._engine.llm.metadata.get('tokenizer.ggml.model', 'gguf')}-{self._engine.n_vocab}"
        )
        super().__init__(
            model_id,
            ModelCapabilities(
                logprobs=True,
                top_logprobs=MAX_TOP_LOGPROBS,
                full_distribution=True,
                prefix_continuation=True,
                prompt_scoring=True,
                tokenizer_id=vocab_id,
                n_ctx=self._engine.n_ctx,
                batch_invariant=batch_invariant,
                tool_calls=template_supports_tools(self._engine.chat_template),
                constrained_decoding="tokens",
            ),
            # The engine's scheduler bounds and orders the work (FIFO); the semaphore only keeps
            # a runaway caller from queueing without limit.
            **{"max_concurrency": MAX_QUEUED, **options},
        )

    @property
    def cache_identity(self) -> str:
        """A batch-invariant load decodes differently from a default one: separate cache entries."""
        return f"{self.id}+batch_invariant" if self._engine.batch_invariant else self.id

    async def _run(self, job: Job) -> None:
        """Submit ``job`` to the engine and wait for it; cancelling the wait drops the job (its
        sequence is freed at the engine's next step)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        job.finish = lambda: _call_soon(loop, _resolve, done)  # type: ignore[method-assign]
        scheduler = self._engine.scheduler
        scheduler.submit(job)
        try:
            await done
        except asyncio.CancelledError:
            job.cancel()
            scheduler.wake()
            raise
        if job.error is not None:
            raise job.error

    # -- token level (TokenModel) ----------------------------------------------------------------
    @property
    def end_tokens(self) -> frozenset[int]:
        return frozenset(int(t) for t in self._engine.eot)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self._engine.llm.tokenize(text.encode(), add_bos=False, special=special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(self._engine.llm.detokenize(list(tokens))).decode("utf-8", errors="replace")

    def chat_prefix(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), opening: str = ""
    ) -> list[int]:
        """Token ids of ``messages`` under the model's chat template (a trailing assistant
        message is left open, so generation continues it). ``tools`` are rendered by the
        template; ``opening`` is text the assistant's reply starts with (a forced tool call)."""
        engine = self._engine
        partial = messages[-1].content if messages and messages[-1].role == "assistant" else None
        turns = list(messages[:-1]) if partial is not None else list(messages)
        if engine.chat_formatter is None:
            text = "".join(f"{m.role}: {m.content}\n" for m in turns) + "assistant: "
        else:
            text = engine.chat_formatter(
                messages=[m.openai() for m in turns], tools=[t.openai() for t in tools] or None
            ).prompt
        text += (partial or "") + opening
        ids = engine.llm.tokenize(text.encode(), add_bos=False, special=True)
        bos = engine.llm.token_bos()
        add_bos = engine.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        if add_bos and bos >= 0 and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return list(ids)

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        job = _RowsJob(prefix, 1, self._engine.n_vocab)
        await self._run(job)
        return log_softmax(job.out[0])

    async def continuation_logprobs(self, prefix: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        """Teacher forcing in one batch (C5): row ``i`` holds the log-probabilities over the
        vocabulary of the token after ``prefix + continuation[:i]``; there are
        ``len(continuation) + 1`` rows, the last one predicting the token after all of it.

        Speculative decoding verifies a draft with this; the logprob of the given tokens
        is ``rows[i, continuation[i]]``.
        """
        job = _RowsJob([*prefix, *continuation], len(continuation) + 1, self._engine.n_vocab)
        await self._run(job)
        return log_softmax(job.out)

    # -- generation ----------------------------------------------------------------------------
    def _prompt_ids(self, request: GenerateRequest) -> list[int]:
        if request.prompt_tokens is not None:
            return list(request.prompt_tokens)
        if request.prompt is not None:
            ids = self.tokenize(request.prompt, special=True)
            bos = self._engine.llm.token_bos()
            add_bos = self._engine.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
            return [bos, *ids] if add_bos and bos >= 0 else ids
        assert request.messages is not None
        tools = request.tools if request.tool_choice != "none" else ()
        return self.chat_prefix(request.messages, tools, forced_call_opening(request))

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        prompt = self._prompt_ids(request)
        call = forced_call_constraint(request)
        decoded = request if call is None else request.model_copy(update={"constraint": call})
        job = _DecodeJob(self._engine, prompt, decoded, matcher=self.token_matcher(decoded))
        if request.max_tokens:
            try:
                await self._run(job)
            except asyncio.CancelledError:
                # A cancelled call (best-of-N's early stop, a budget cut) spent what it decoded:
                # charge it to the open meters, or a strategy's cost leaves out its losers. One
                # cancelled while it waited for a sequence spent nothing.
                if job.admitted_at >= 0:
                    spent = Usage(calls=1, prompt_tokens=len(prompt), completion_tokens=len(job.generated))
                    record_usage(GenerateResult(model=self.id, text="", usage=spent))
                raise
        return read_tool_calls(job.result(self.id), request, opening=forced_call_opening(request))

    def token_matcher(self, request: GenerateRequest) -> TokenMatcher | None:
        """The constraint's state for one new sequence of this model (None: no constraint)."""
        if request.constraint is None:
            return None
        engine = self._engine

        def make_tokenizer() -> Any:
            from llguidance.llamacpp import lltokenizer_from_vocab

            vocab = self.llama_cpp_vocab()
            return lltokenizer_from_vocab(vocab, n_vocab=engine.n_vocab, eos_token=sorted(engine.eot))

        return token_matcher(
            request.constraint,
            vocab_key=str(engine.path.resolve()),
            make_tokenizer=make_tokenizer,
            n_vocab=engine.n_vocab,
            end_tokens=sorted(engine.eot),
        )

    def llama_cpp_vocab(self) -> Any:
        import llama_cpp

        return llama_cpp.llama_model_get_vocab(self._engine.llm.model)

    async def _stream(self, request: GenerateRequest) -> AsyncGenerator[GenerateChunk, None]:
        """Token by token from the engine's scheduler as each step samples it (text a stop string
        may still cut is held back until it cannot); the last chunk carries the result. A request
        with tools is one piece: its reply is read as calls only once it is complete."""
        if request.tools and request.tool_choice != "none":
            result = await self._generate(request)
            if result.text:
                yield GenerateChunk(text=result.text, tokens=result.tokens)
            yield GenerateChunk(result=result)
            return
        prompt = self._prompt_ids(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TokenInfo | None] = asyncio.Queue()
        job = _DecodeJob(
            self._engine,
            prompt,
            request,
            on_token=lambda t: _call_soon(loop, queue.put_nowait, t),
            matcher=self.token_matcher(request),
        )
        job.finish = lambda: _call_soon(loop, queue.put_nowait, None)  # type: ignore[method-assign]
        if request.max_tokens:
            scheduler = self._engine.scheduler
            scheduler.submit(job)
            try:
                while (info := await queue.get()) is not None:
                    yield GenerateChunk(text=info.token, tokens=[info])
            finally:
                if not job.done:  # the consumer stopped early or was cancelled: free the sequence
                    job.cancel()
                    scheduler.wake()
            if job.error is not None:
                raise job.error
        rest = job.infos[job.streamed :]
        if rest:
            yield GenerateChunk(text="".join(t.token for t in rest), tokens=rest)
        yield GenerateChunk(result=job.result(self.id))


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn`` on ``loop`` from the engine thread (a loop closed meanwhile wants nothing)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _tokens_within(tokens: list[TokenInfo], n_bytes: int, engine: _Engine) -> list[TokenInfo]:
    """The generated tokens that lie wholly inside the first ``n_bytes`` of the text (after a stop
    string cut it), so ``tokens`` and ``completion_tokens`` describe the text that is returned."""
    kept: list[TokenInfo] = []
    used = 0
    for info in tokens:
        used += len(engine.piece(info.token_id or 0))
        if used > n_bytes:
            break
        kept.append(info)
    return kept
