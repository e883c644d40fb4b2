"""Backend ``llamacpp``: a GGUF model in-process through llama-cpp-python.

Why a decode loop of our own: llama-cpp-python's logprobs path needs ``logits_all=True``, which
keeps every position's logits and runs about ten times slower. We read only the last position's
logits (``llama_get_logits_ith(ctx, -1)``, a view, no copy), which gives top-k logprobs and the
entropy of the full distribution at plain-generation speed.

One :class:`_Engine` per (file, context size, batch invariance) is loaded per process and shared by every
:class:`LlamaCppModel` on it. All work on an engine runs on its single-thread executor, so
concurrent callers are serialised without sharing llama.cpp state across threads. The engine
keeps the tokens in its KV cache (``Llama.input_ids[:n_tokens]``); a call whose prompt shares a
prefix with the previous one evaluates only the new suffix.

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
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from forkpath._errors import ContextWindowError, ModelError, ModelNotFoundError
from forkpath.models._base import Model
from forkpath.models._constraints import TokenMatcher, token_matcher
from forkpath.models._sampling import apply_mask, choose_token, sample_rng
from forkpath.models._types import (
    FinishReason,
    GenerateRequest,
    GenerateResult,
    Message,
    ModelCapabilities,
    TokenInfo,
    TopLogprob,
    Usage,
)
from forkpath.models._uncertainty import entropy, log_softmax

MAX_TOP_LOGPROBS = 100
PENALTY_WINDOW = 64
"""Repetition penalties look at the last 64 tokens (prompt included), as llama.cpp's do."""


class _Engine:
    """One loaded llama.cpp model and context, driven from one thread."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None, batch_invariant: bool = False) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.path = path
        self.batch_invariant = batch_invariant
        try:
            self.llm = new_llama(
                path,
                batch_invariant=batch_invariant,
                n_ctx=n_ctx,
                n_threads=n_threads or os.cpu_count() or 1,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise ModelNotFoundError(f"cannot load GGUF file {path}: {e}") from e
        self.n_vocab = self.llm.n_vocab()
        self.n_ctx = min(n_ctx, self.llm.n_ctx(), len(self.llm.input_ids))
        self.eos = self.llm.token_eos()
        self.eot = {self.eos, *self._end_tokens()}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llamacpp-{path.stem}")
        self.chat_formatter = self._chat_formatter()
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
            whole = self.eval_prefix(probe).copy()
            self.llm.n_tokens = 0
            self.sync(probe[:-1])
            alone = self.step(probe[-1]).copy()
        except BaseException:
            self.close()
            raise
        self.llm.n_tokens = 0
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
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

    def close(self) -> None:
        self.executor.shutdown(wait=True)
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

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None

        def piece(token: int) -> str:
            return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

        bos = self.llm.token_bos()
        return Jinja2ChatFormatter(
            template=template, eos_token=piece(self.eos), bos_token=piece(bos) if bos >= 0 else ""
        )

    # -- runs on the engine thread ---------------------------------------------------------------
    def eval_prefix(self, tokens: Sequence[int]) -> np.ndarray:
        """Bring the context to exactly ``tokens``, reusing the cached prefix; return last logits."""
        if not tokens:
            raise ModelError("cannot evaluate an empty prefix")
        if len(tokens) >= self.n_ctx:
            raise ContextWindowError(f"{len(tokens)} tokens do not fit the context of {self.n_ctx}")
        # The last token is always evaluated again: its logits are what we need. Llama.eval drops
        # the KV entries past n_tokens before decoding.
        self.llm.n_tokens = min(self._cached(tokens), len(tokens) - 1)
        self.llm.eval(list(tokens[self.llm.n_tokens :]))
        return self.last_logits()

    def _cached(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` the KV cache already holds."""
        cached = self.llm.input_ids[: self.llm.n_tokens]
        limit = min(len(cached), len(tokens))
        diverge = np.flatnonzero(cached[:limit] != np.asarray(tokens[:limit]))
        return int(diverge[0]) if diverge.size else limit

    def sync(self, tokens: Sequence[int]) -> None:
        """Bring the KV cache to exactly ``tokens``, evaluating only what it lacks (no logits)."""
        common = self._cached(tokens)
        self.llm.n_tokens = common
        if common < len(tokens):
            self.llm.eval(list(tokens[common:]))

    def eval_rows(self, tokens: Sequence[int], n_rows: int) -> np.ndarray:
        """Bring the context to ``tokens`` and return the logits after each of the last
        ``n_rows`` tokens, as one ``(n_rows, n_vocab)`` array, computed in one batch.

        This is what speculative decoding's verification and teacher-forced scoring need.
        Unless the engine is batch-invariant, batched evaluation gives float results that differ
        from one-token-at-a-time evaluation (up to ~0.5 in a logit; see the module docstring).
        """
        if not 0 < n_rows <= min(len(tokens), self.llm.n_batch):
            raise ModelError(f"n_rows must be in 1..{min(len(tokens), self.llm.n_batch)}, got {n_rows}")
        if len(tokens) >= self.n_ctx:
            raise ContextWindowError(f"{len(tokens)} tokens do not fit the context of {self.n_ctx}")
        head = len(tokens) - n_rows
        self.sync(tokens[:head])  # the rows' own tokens are decoded below, in one batch
        llm = self.llm
        llm._ctx.kv_cache_seq_rm(-1, head, -1)
        tail = list(tokens[head:])
        llm._batch.set_batch(batch=tail, n_past=head, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[head : head + n_rows] = tail
        llm.n_tokens = head + n_rows
        rows = np.empty((n_rows, self.n_vocab), dtype=np.float32)
        for i in range(n_rows):
            ptr = self.llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i)
            rows[i] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return rows

    def step(self, token: int) -> np.ndarray:
        if self.llm.n_tokens + 1 >= self.n_ctx:
            raise ContextWindowError(f"generation reached the context size {self.n_ctx}")
        self.llm.eval([token])
        return self.last_logits()

    def last_logits(self) -> np.ndarray:
        ptr = self.llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def piece(self, token: int) -> bytes:
        return bytes(self.llm.detokenize([token]))


_ENGINES: dict[tuple[str, int, bool], _Engine] = {}
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


def new_llama(path: str | Path, *, batch_invariant: bool = False, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` loaded as forkpath loads models: extra weight buffers
    only where they are safe, and with ``batch_invariant`` the settings of the module docstring.
    ``kwargs`` go to ``Llama`` (``n_ctx``, ``n_threads``, ``logits_all``, ...)."""
    import llama_cpp

    if batch_invariant:
        reserve_batch_invariance()
        q8 = llama_cpp.GGML_TYPE_Q8_0
        kwargs = {**kwargs, "flash_attn": True, "type_k": q8, "type_v": q8}
    with model_params(use_extra_bufts=not batch_invariant and extra_buffers_safe()):
        return llama_cpp.Llama(model_path=str(path), **kwargs)


@contextlib.contextmanager
def model_params(*, use_extra_bufts: bool) -> Iterator[None]:
    """Load models with ``use_extra_bufts`` set, which ``llama_cpp.Llama`` has no argument for:
    its constructor takes the defaults from ``llama_model_default_params``, patched here."""
    import llama_cpp.llama_cpp as low

    with _PARAMS_LOCK:  # one patch at a time: a second would save the first's as the default
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


@atexit.register
def _close_engines() -> None:
    # Free llama.cpp models while the interpreter is still whole; at shutdown the library's own
    # finalisers run after their module globals are gone and print errors.
    for engine in _ENGINES.values():
        engine.close()
    _ENGINES.clear()


def _engine(path: Path, n_ctx: int, n_threads: int | None, batch_invariant: bool) -> _Engine:
    key = (str(path.resolve()), n_ctx, batch_invariant)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = _Engine(path, n_ctx, n_threads, batch_invariant)
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
        self._engine = _engine(path, n_ctx, n_threads, batch_invariant)
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
                constrained_decoding="tokens",
            ),
            **{"max_concurrency": 1, **options},
        )

    @property
    def cache_identity(self) -> str:
        """A batch-invariant load decodes differently from a default one: separate cache entries."""
        return f"{self.id}+batch_invariant" if self._engine.batch_invariant else self.id

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._engine.executor, fn, *args)

    # -- token level (TokenModel) ----------------------------------------------------------------
    @property
    def end_tokens(self) -> frozenset[int]:
        return frozenset(int(t) for t in self._engine.eot)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self._engine.llm.tokenize(text.encode(), add_bos=False, special=special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(self._engine.llm.detokenize(list(tokens))).decode("utf-8", errors="replace")

    def chat_prefix(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of ``messages`` under the model's chat template (a trailing assistant
        message is left open, so generation continues it)."""
        engine = self._engine
        partial = messages[-1].content if messages and messages[-1].role == "assistant" else None
        turns = list(messages[:-1]) if partial is not None else list(messages)
        if engine.chat_formatter is None:
            text = "".join(f"{m.role}: {m.content}\n" for m in turns) + "assistant: "
        else:
            text = engine.chat_formatter(messages=[m.model_dump() for m in turns]).prompt
        text += partial or ""
        ids = engine.llm.tokenize(text.encode(), add_bos=False, special=True)
        bos = engine.llm.token_bos()
        add_bos = engine.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        if add_bos and bos >= 0 and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return list(ids)

    async def next_token_logprobs(self, prefix: Sequence[int]) -> np.ndarray:
        def run() -> np.ndarray:
            return log_softmax(self._engine.eval_prefix(prefix))

        result: np.ndarray = await self._run(run)
        return result

    async def continuation_logprobs(self, prefix: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        """Teacher forcing in one batch (C5): row ``i`` holds the log-probabilities over the
        vocabulary of the token after ``prefix + continuation[:i]``; there are
        ``len(continuation) + 1`` rows, the last one predicting the token after all of it.

        Speculative decoding verifies a draft with this; the logprob of the given tokens
        is ``rows[i, continuation[i]]``.
        """
        tokens = [*prefix, *continuation]

        def run() -> np.ndarray:
            return log_softmax(self._engine.eval_rows(tokens, len(continuation) + 1))

        result: np.ndarray = await self._run(run)
        return result

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
        return self.chat_prefix(request.messages)

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        prompt = self._prompt_ids(request)
        result: GenerateResult = await self._run(self._decode, prompt, request)
        return result

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
        return self._engine.llama_cpp.llama_model_get_vocab(self._engine.llm.model)

    def _decode(self, prompt: list[int], request: GenerateRequest) -> GenerateResult:
        """The decode loop (engine thread): sample, record logprobs/top-k/entropy, stop."""
        engine = self._engine
        rng = sample_rng(request.seed, request.sample_index)
        sampling = request.sampling
        recent = prompt[-PENALTY_WINDOW:] if sampling.penalised else []
        k = request.top_logprobs
        tokens: list[TokenInfo] = []
        text = bytearray()
        finish: FinishReason = "length"
        logits = engine.eval_prefix(prompt) if request.max_tokens else None
        matcher = self.token_matcher(request)
        if matcher is not None and request.constraint_prefix:
            for done in prompt[-request.constraint_prefix :]:
                matcher.advance(done)
        # Rejection sampling checks single tokens; logprobs, entropy and truncation need the mask.
        by_rejection = (
            matcher is not None
            and request.constraint is not None
            and request.constraint.method == "rejection"
            and not request.wants_logprobs
            and not sampling.truncated
        )
        for i in range(request.max_tokens):
            if i:  # evaluate the previous token only when another one is wanted
                if engine.llm.n_tokens + 1 >= engine.n_ctx:
                    break  # the context is full: what was generated is returned, finish "length"
                logits = engine.step(tokens[-1].token_id or 0)
            assert logits is not None
            if matcher is not None and matcher.finished:
                finish = "stop"
                break
            allowed = matcher.allowed() if matcher is not None and not by_rejection else None
            logprobs = log_softmax(apply_mask(logits, allowed))
            check = matcher.allows if by_rejection and matcher is not None else None
            token = choose_token(
                logprobs,
                sampling,
                rng,
                recent[-PENALTY_WINDOW:],
                check=check,
                full_mask=matcher.allowed if check is not None and matcher is not None else None,
            )
            if matcher is not None:
                matcher.advance(token)
            if sampling.penalised:
                recent.append(token)
            if token in engine.eot:
                finish = "stop"
                break
            piece = engine.piece(token)
            info = TokenInfo(token=piece.decode("utf-8", errors="replace"), token_id=token)
            if request.wants_logprobs:
                info.logprob = float(logprobs[token])
                info.entropy = entropy(logprobs)
                if k:
                    top = np.argpartition(-logprobs, k)[:k]
                    top = top[np.argsort(-logprobs[top])]
                    top = top[
                        np.isfinite(logprobs[top])
                    ]  # a constraint's forbidden tokens are no alternatives
                    info.top = [
                        TopLogprob(
                            token=engine.piece(int(t)).decode("utf-8", errors="replace"),
                            token_id=int(t),
                            logprob=float(logprobs[t]),
                        )
                        for t in top
                    ]
            tokens.append(info)
            text.extend(piece)
            if request.stop:
                decoded = text.decode("utf-8", errors="ignore")
                hit = [decoded.index(s) for s in request.stop if s in decoded]
                if hit:
                    text = bytearray(decoded[: min(hit)].encode())
                    tokens = _tokens_within(tokens, len(text), engine)
                    finish = "stop"
                    break
        return GenerateResult(
            model=self.id,
            text=text.decode("utf-8", errors="replace"),
            tokens=tokens,
            finish_reason=finish,
            usage=Usage(calls=1, prompt_tokens=len(prompt), completion_tokens=len(tokens)),
        )


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
