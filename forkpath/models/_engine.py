"""The batched llama.cpp engine: one context, many sequences, one scheduler thread.

Who owns what:

- :class:`Scheduler` owns one llama.cpp model and context (``n_seq_max`` sequences over one unified
  KV cache of ``kv_cells`` cells) and the one thread that ever touches them.
- A caller (:class:`~forkpath.models._llamacpp.LlamaCppModel`) turns a request into a
  :class:`Job` and :meth:`Scheduler.submit` s it; the job's future (and, for streaming, its queue)
  is filled from the engine thread with ``call_soon_threadsafe``.
- The scheduler loop admits waiting jobs in FIFO order, each onto a :class:`Slot` (a llama.cpp
  sequence id). The slots are the **prefix index**: a new job starts from the slot whose tokens
  share its longest prefix, taking it over when it is idle or copying the shared cells
  (``llama_memory_seq_cp``) when another job is using it, so a prompt is evaluated once for all
  the samples that start from it. Finished jobs leave their slot idle, as a cache for the next
  call; idle slots are evicted (``llama_memory_seq_rm``) least recently used first when a job
  needs a slot or cells.
- Each step builds one ``llama_batch`` with the next token of every decoding job plus prompt
  tokens of jobs still prefilling, decodes it, and hands each job the logits rows it asked
  for. A step of decoding jobs only may go to ``llama_decode`` in chunks (4 + 4 rather than 8)
  where the engine's own timings show that to be faster (:mod:`~forkpath.models._shaping`);
  each chunk's logits are used before the next chunk is decoded. A job that cannot get a slot
  or cells waits; one cancelled by its caller is dropped, and its cells freed, at the next step.

Cells are accounted so that a job never fails half-way: a job is admitted only when the cells
the live slots hold, plus every running job's remaining growth, plus its own, fit.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forkpath._errors import ContextWindowError, ModelError
from forkpath.models._shaping import StepShaper


class Job:
    """One unit of work for the engine: evaluate ``tokens`` and then, step by step, what
    :meth:`on_logits` asks for.

    ``rows`` is how many trailing positions of ``tokens`` need their logits (1 for a generation's
    prompt); ``growth`` bounds how many tokens the job will append after its prompt (a
    generation's ``max_tokens``). :meth:`on_logits` receives the logits of row ``index`` (a
    view, valid until the next decode) and returns the next token to decode, or None when the
    job is done with that row (the last row of a job that appends nothing ends it).
    """

    def __init__(self, tokens: Sequence[int], *, rows: int = 1, growth: int = 0) -> None:
        self.tokens = list(tokens)
        self.rows = rows
        self.growth = growth
        self.cancelled = False
        self.done = False
        self.error: BaseException | None = None
        self.admitted_at = -1

    def on_logits(self, index: int, logits: np.ndarray) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self) -> None:
        """Called on the engine thread once the job is done (or failed, with ``error`` set)."""

    def cancel(self) -> None:
        """Ask the engine to drop this job at its next step (any thread)."""
        self.cancelled = True


@dataclass
class Slot:
    """A llama.cpp sequence: the tokens whose KV it holds and where those cells came from."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    """``(origin, lo, hi)``: positions ``lo..hi-1`` hold cells written under ``origin`` (one
    origin per run of writes; a copied prefix keeps its source's origins, which is how cells
    shared by several sequences are counted once)."""
    origin: int = -1
    job: Job | None = None
    used: int = 0
    pending: int | None = None
    """The token a decoding job chose and has not decoded yet."""
    fed: int = 0
    """How many of the job's prompt tokens are in the cache."""

    def append(self, token: int, origin_of: Callable[[], int]) -> None:
        n = len(self.tokens)
        if self.spans and self.spans[-1][0] == self.origin and self.spans[-1][2] == n:
            o, lo, _ = self.spans[-1]
            self.spans[-1] = (o, lo, n + 1)
        else:
            self.origin = origin_of()
            self.spans.append((self.origin, n, n + 1))
        self.tokens.append(token)

    def truncate(self, n: int) -> None:
        del self.tokens[n:]
        self.spans = [(o, lo, min(hi, n)) for o, lo, hi in self.spans if lo < n]
        self.origin = -1  # later writes are a new origin: cells past n may live on in a copy


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b))
    if not limit:
        return 0
    diverge = np.flatnonzero(np.asarray(a[:limit]) != np.asarray(b[:limit]))
    return int(diverge[0]) if diverge.size else limit


class Scheduler:
    """The scheduler over one llama.cpp context (see the module docstring).

    Args:
        llm: a loaded ``llama_cpp.Llama`` whose context has ``n_seq_max`` sequences.
        n_ctx: most tokens one sequence may hold.
        n_seq_max: sequences (slots).
        kv_cells: cells of the unified KV cache.
        prefill_chunk: most prompt tokens in one step while other jobs decode (a step with
            nothing decoding takes up to ``n_batch``).
    """

    def __init__(
        self, llm: Any, *, n_ctx: int, n_seq_max: int, kv_cells: int, prefill_chunk: int, name: str
    ) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llm
        self.ctx = llm._ctx.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = int(llm.n_vocab())
        self.n_ctx = n_ctx
        self.kv_cells = kv_cells
        self.n_batch = int(llm.n_batch)
        self.prefill_chunk = max(1, min(prefill_chunk, self.n_batch))
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [Slot(seq_id=i) for i in range(n_seq_max)]
        self._origins = itertools.count()
        self._tick = itertools.count(1)
        self._lock = threading.Condition()
        self._incoming: deque[Job] = deque()
        self._waiting: deque[Job] = deque()
        self._closing = False
        self.decoded_tokens = 0
        """Tokens decoded since load, prompts and generated ones."""
        self.prompt_tokens_decoded = 0
        """Prompt tokens decoded since load (what the prefix index did not save)."""
        self.shaper: StepShaper | None = StepShaper()
        """Chooses how each decode-only step is split into ``llama_decode`` calls (None: one)."""
        self.steps = 0
        self.batched_decode_steps = 0
        """Steps that decoded the next token of two or more sequences at once (concurrent
        calls, samples of one prompt): how a caller sees that its work shares decode steps."""
        self._thread = threading.Thread(target=self._loop, name=f"llamacpp-{name}", daemon=True)
        self._thread.start()

    # -- any thread ------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue ``job``; raise :class:`ContextWindowError` at once if it can never fit."""
        if not job.tokens:
            raise ModelError("cannot evaluate an empty prefix")
        if len(job.tokens) >= self.n_ctx:
            raise ContextWindowError(f"{len(job.tokens)} tokens do not fit the context of {self.n_ctx}")
        if not 0 < job.rows <= min(len(job.tokens), self.n_batch):
            raise ModelError(f"rows must be in 1..{min(len(job.tokens), self.n_batch)}, got {job.rows}")
        job.growth = min(job.growth, self.n_ctx - len(job.tokens))
        if len(job.tokens) + job.growth > self.kv_cells:
            raise ContextWindowError(
                f"{len(job.tokens)} prompt tokens + {job.growth} new ones exceed the engine's "
                f"{self.kv_cells} KV cells"
            )
        with self._lock:
            if self._closing:
                raise ModelError("the llama.cpp engine is closed")
            self._incoming.append(job)
            self._lock.notify()

    def wake(self) -> None:
        """Make the loop look at its jobs now (after a cancellation)."""
        with self._lock:
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.llama_cpp.llama_batch_free(self.batch)

    def run_sync(self, job: Job) -> None:
        """Submit ``job`` and block until it is done (for callers without an event loop)."""
        done = threading.Event()
        finish = job.finish

        def finished() -> None:
            finish()
            done.set()

        job.finish = finished  # type: ignore[method-assign]
        self.submit(job)
        done.wait()
        if job.error is not None:
            raise job.error

    def forget(self) -> None:
        """Drop every idle slot's cells (the next call starts cold); waits for running jobs."""
        job = _Barrier()
        self.run_sync(job)

    # -- the engine thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._incoming and not self._active() and not self._waiting and not self._closing:
                    self._lock.wait()
                if self._closing:
                    pending = [*self._incoming, *self._waiting, *(s.job for s in self.slots if s.job)]
                    self._incoming.clear()
                    self._waiting.clear()
                    for j in pending:
                        if j is not None:
                            self._fail(j, ModelError("the llama.cpp engine was closed"))
                    return
                self._waiting.extend(self._incoming)
                self._incoming.clear()
            try:
                self._drop_cancelled()
                self._admit()
                if self._active():
                    self._step()
            except BaseException as e:  # a llama.cpp failure fails the jobs in flight, not the thread
                for slot in self.slots:
                    if slot.job is not None:
                        self._release(slot, e)

    def _active(self) -> bool:
        return any(s.job is not None for s in self.slots)

    def _fail(self, job: Job, error: BaseException) -> None:
        job.error = error
        job.done = True
        job.finish()

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.cancelled]:
            self._waiting.remove(job)
            job.done = True
            job.finish()
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                job = slot.job
                self._evict(slot)
                job.done = True
                job.finish()

    def _evict(self, slot: Slot) -> None:
        self.llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
        slot.tokens.clear()
        slot.spans.clear()
        slot.origin = -1
        slot.job = None
        slot.pending = None

    def _release(self, slot: Slot, error: BaseException | None = None) -> None:
        """End ``slot``'s job; the slot stays as an idle cache unless the job failed."""
        job = slot.job
        assert job is not None
        if error is not None:
            self._evict(slot)
            self._fail(job, error)
            return
        if job.cancelled:  # nobody wants what it decoded: free the cells, not cache them
            self._evict(slot)
            job.done = True
            job.finish()
            return
        slot.job = None
        slot.pending = None
        slot.used = next(self._tick)
        job.done = True
        job.finish()

    def held_cells(self) -> int:
        """Cells the live slots hold (a cell several sequences share counts once)."""
        ends: dict[int, tuple[int, int]] = {}
        for slot in self.slots:
            for origin, lo, hi in slot.spans:
                if hi > lo:
                    _, top = ends.get(origin, (lo, lo))
                    ends[origin] = (lo, max(top, hi))
        return sum(hi - lo for lo, hi in ends.values())

    def _growth(self) -> int:
        total = 0
        for slot in self.slots:
            job = slot.job
            if job is not None:
                total += len(job.tokens) - min(slot.fed, len(job.tokens)) + job.growth
        return total

    def _admit(self) -> None:
        while self._waiting:
            job = self._waiting[0]
            if not self._place(job):
                return  # FIFO: nobody overtakes the job at the head
            self._waiting.popleft()

    def _place(self, job: Job) -> bool:
        """Put ``job`` on a slot if one and enough cells are free (else it keeps waiting)."""
        if isinstance(job, _Barrier):
            if self._active():
                return False
            for slot in self.slots:
                self._evict(slot)
            job.done = True
            job.finish()
            return True
        free = [s for s in self.slots if s.job is None]
        if not free:
            return False
        # The prefix index: the slot (running or idle) sharing the longest prefix with the job;
        # the rows' own tokens are decoded again, for their logits.
        keep = len(job.tokens) - job.rows
        best: Slot | None = None
        shared = 0
        for slot in self.slots:
            n = min(common_prefix(slot.tokens, job.tokens), keep)
            idle_tie = best is not None and n == shared and slot.job is None and best.job is not None
            if n > shared or (n > 0 and idle_tie):
                best, shared = slot, n
        for slot in self.slots:
            other = slot.job
            prefilling = other is not None and slot.pending is None and slot.fed < len(other.tokens)
            if prefilling and min(common_prefix(other.tokens, job.tokens), keep) > shared:  # type: ignore[union-attr]
                return False  # a job still prefilling this prompt will hold it: copy it then
        if best is not None and best.job is None:
            target = best  # taken over in place: cut to the shared prefix
        else:
            target = min(free, key=lambda s: (bool(s.tokens), s.used))  # empty first, then LRU
        need = len(job.tokens) - shared + job.growth
        while self._cells_after(target, best, shared) + self._growth() + need > self.kv_cells:
            victims = [s for s in free if s.tokens and s is not target and s is not best]
            if not victims:
                return False  # wait for running jobs to end
            self._evict(min(victims, key=lambda s: s.used))
        if target is best:
            self.llama_cpp.llama_memory_seq_rm(self.memory, target.seq_id, shared, -1)
            target.truncate(shared)
        else:
            if target.tokens:
                self._evict(target)
            if best is not None and shared:
                self.llama_cpp.llama_memory_seq_cp(self.memory, best.seq_id, target.seq_id, 0, shared)
                target.tokens = best.tokens[:shared]
                target.spans = [(o, lo, min(hi, shared)) for o, lo, hi in best.spans if lo < shared]
                target.origin = -1
        target.job = job
        target.fed = shared
        target.pending = None
        target.used = next(self._tick)
        job.admitted_at = self.steps
        return True

    def _cells_after(self, target: Slot, best: Slot | None, shared: int) -> int:
        """Cells held once ``target`` is cut to ``shared`` tokens (taken over) or emptied."""
        saved = target.tokens, target.spans
        if target is best:
            target.tokens, target.spans = (
                target.tokens[:shared],
                [(o, lo, min(hi, shared)) for o, lo, hi in target.spans if lo < shared],
            )
        else:
            target.tokens, target.spans = [], []
        try:
            return self.held_cells()
        finally:
            target.tokens, target.spans = saved

    def _step(self) -> None:
        entries: list[tuple[Slot, int, int, int]] = []  # slot, token, position, row index or -1
        decoding = [s for s in self.slots if s.job is not None and s.pending is not None]
        prefilling = sorted(
            (s for s in self.slots if s.job is not None and s.pending is None), key=lambda s: s.used
        )
        for slot in decoding:
            assert slot.pending is not None and slot.job is not None
            entries.append((slot, slot.pending, len(slot.tokens), slot.job.rows - 1))
        room = self.n_batch - len(entries)
        if decoding:
            room = min(room, self.prefill_chunk)
        for slot in prefilling:
            if room <= 0:
                break
            job = slot.job
            assert job is not None
            start = slot.fed
            end = min(len(job.tokens), start + room)
            first_row = len(job.tokens) - job.rows
            for pos in range(start, end):
                entries.append((slot, job.tokens[pos], pos, pos - first_row if pos >= first_row else -1))
            room -= end - start
        if not entries:
            return
        rows = len(decoding)
        # Counted before decoding: a job the step finishes wakes its caller at once, and the
        # caller must see this step counted (tests read the counters right after a call).
        self.steps += 1
        if rows > 1:
            self.batched_decode_steps += 1
        if self.shaper is not None and rows == len(entries) and StepShaper.splits(rows):
            chunk = self.shaper.choose(rows)
            started = time.perf_counter()
            for lo in range(0, rows, chunk):
                self._decode(entries[lo : lo + chunk])
            self.shaper.record(rows, chunk, time.perf_counter() - started)
        else:
            self._decode(entries)

    def _decode(self, entries: list[tuple[Slot, int, int, int]]) -> None:
        """One ``llama_decode`` of ``entries``, then each job's logits rows."""
        llama_cpp = self.llama_cpp
        batch = self.batch
        for i, (slot, token, pos, row) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot.seq_id
            batch.logits[i] = row >= 0
        batch.n_tokens = len(entries)
        code = llama_cpp.llama_decode(self.ctx, batch)
        if code != 0:
            raise ModelError(f"llama_decode failed with code {code} on a batch of {len(entries)} tokens")
        self.decoded_tokens += len(entries)
        for slot, token, _pos, _row in entries:
            if slot.pending is None:
                self.prompt_tokens_decoded += 1
            slot.append(token, lambda: next(self._origins))
            if slot.pending is None:
                slot.fed = len(slot.tokens)
            else:
                slot.pending = None
        for i, (slot, _token, _pos, row) in enumerate(entries):
            job = slot.job
            if row < 0 or job is None:
                continue
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
            try:
                nxt = job.on_logits(row, logits)
            except BaseException as e:
                self._release(slot, e)
                continue
            if row < job.rows - 1:
                continue  # more rows of its prompt to come
            if nxt is None or job.cancelled or len(slot.tokens) + 1 >= self.n_ctx:
                self._release(slot)  # done, or the context is full: what was generated stands
            else:
                slot.pending = nxt
                job.growth = max(0, job.growth - 1)


class _Barrier(Job):
    """Runs between steps: evicts every idle slot (used by :meth:`Scheduler.forget`)."""

    def __init__(self) -> None:
        super().__init__([0])
