"""What ``forkpath view`` reads: the runs under a folder, their records and traces, lazily.

A JSONL file is read once, front to back, into a small index (the byte offset and kind of each
line, plus running totals) that is kept while the file's size and modification time stay the
same; when the file grows (a batch still running appends to it) only the new bytes are read.
Pages then seek to the lines they show, so a 100 MB trace is never held in memory whole.

Lines that cannot be read are skipped and counted: a torn last line (a write in progress, or a
killed process), an event of a type this version does not know (a newer forkpath) or one whose
fields no longer match (an older one).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forkpath._forks import ForkReport
from forkpath._trace import FlowEvent, TraceEvent, event_types, parse_event
from forkpath.batch import RunManifest, TaskRecord

_CODE = {name: i for i, name in enumerate(event_types())}
_CHECKED_ON_READ = frozenset({"expansion", "routing", "verdict", "candidate", "tokens"})
"""Event types indexed without reading them whole (no total needs them)."""
_TYPE = re.compile(rb'"type":\s*"([A-Za-z0-9_]+)"')
"""The first ``"type": "..."`` of a line: forkpath writes ``time``, ``span``, ``type`` first, and
inside a JSON string a quote is always escaped, so this cannot match in a string."""
_TIME = re.compile(rb'\{"time":\s*(-?[0-9][0-9.eE+-]*)')
RECENT_S = 120.0
"""A run without an end whose files changed this recently is taken as still running."""


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class _Incremental:
    """Reads the complete lines an append-only JSONL file gained since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.consumed = 0
        """Bytes read so far: always the end of a complete line."""
        self.identity: tuple[int, int, int] | None = None
        self.pending = 0
        """Bytes of a last line with no newline yet (being written, or torn by a kill)."""
        self.bad_lines = 0

    def reset(self) -> None:
        self.consumed = 0
        self.pending = 0
        self.bad_lines = 0

    def refresh(self) -> None:
        """Bring the index up to date with the file (from the start if it shrank or was replaced)."""
        with self.lock:
            identity = _stat(self.path)
            if identity == self.identity:
                return
            replaced = identity is None or self.identity is None or identity[0] != self.identity[0]
            if replaced or identity[1] < self.consumed + self.pending:  # type: ignore[index]
                self.reset()
            if identity is None:
                self.identity = None
                return
            with self.path.open("rb") as f:
                f.seek(self.consumed)
                offset = self.consumed
                self.pending = 0
                for line in f:
                    if not line.endswith(b"\n"):
                        self.pending = len(line)
                        break
                    if line.strip():
                        self.take(offset, line)
                    offset += len(line)
                self.consumed = offset
            self.identity = identity

    def take(self, offset: int, line: bytes) -> None:
        raise NotImplementedError

    def read_line(self, offset: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.readline()


@dataclass
class ModelTotals:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class TraceIndex(_Incremental):
    """One ``trace.jsonl``: where each event is, what kind it is, and the run's totals."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.offsets = array("q")
        self.kinds = bytearray()
        self.unknown: Counter[str] = Counter()
        """Events of types this version does not know, by type."""
        self.counts: Counter[str] = Counter()
        self.models: dict[str, ModelTotals] = {}
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.flow_start: FlowEvent | None = None
        self.flow_end: FlowEvent | None = None
        self.unreadable: set[int] = set()
        """Positions of indexed lines that did not read as their event when a page read them."""

    def take(self, offset: int, line: bytes) -> None:
        found = _TYPE.search(line, 0, 200)
        kind = found.group(1).decode() if found else None
        if kind in _CHECKED_ON_READ:
            # The bulk of a long trace: indexed by its type alone, checked when a page reads it.
            when = _TIME.match(line)
            self._add(offset, kind, float(when.group(1)) if when else None)
            return
        try:
            event = parse_event(line)
        except ValidationError:
            kind = _kind_of(line)
            if kind is not None and kind not in _CODE:
                self.unknown[kind] += 1
            else:
                self.bad_lines += 1
            return
        self._add(offset, event.type, event.time)
        if event.type == "model_call":
            totals = self.models.setdefault(event.model, ModelTotals())
            totals.calls += event.calls
            totals.cached += int(event.cached)
            totals.prompt_tokens += event.prompt_tokens
            totals.completion_tokens += event.completion_tokens
            totals.cost += event.cost
        elif event.type == "flow":
            if event.phase == "start" and self.flow_start is None:
                self.flow_start = event
            elif event.phase == "end":
                self.flow_end = event

    def _add(self, offset: int, kind: str, when: float | None) -> None:
        self.offsets.append(offset)
        self.kinds.append(_CODE[kind])
        self.counts[kind] += 1
        if when is not None:
            if self.first_time is None:
                self.first_time = when
            self.last_time = when

    # -- reading back --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offsets)

    def positions(self, *kinds: str) -> list[int]:
        """Indexes of the events of these kinds (all events when none is named)."""
        if not kinds:
            return list(range(len(self.offsets)))
        codes = {_CODE[k] for k in kinds if k in _CODE}
        return [i for i, code in enumerate(self.kinds) if code in codes]

    def event(self, position: int) -> TraceEvent | None:
        """The event at ``position``; None when its line does not read as one."""
        return next((e for _, e in self.events([position])), None)

    def events(self, positions: list[int]) -> Iterator[tuple[int, TraceEvent]]:
        """The events at ``positions`` (in that order, with their position), read with one open
        file; a line that turns out unreadable is skipped and counted in :attr:`bad_lines`."""
        with self.path.open("rb") as f:
            for position in positions:
                f.seek(self.offsets[position])
                try:
                    yield position, parse_event(f.readline())
                except ValidationError:
                    if position not in self.unreadable:
                        self.unreadable.add(position)
                        self.bad_lines += 1

    @property
    def tokens(self) -> int:
        return sum(m.prompt_tokens + m.completion_tokens for m in self.models.values())

    @property
    def cost(self) -> float:
        return sum(m.cost for m in self.models.values())

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.models.values())

    @property
    def skipped(self) -> int:
        return self.bad_lines + sum(self.unknown.values())


def _kind_of(line: bytes) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


@dataclass
class TaskRow:
    """What the run's tables need of a task's last record (the rest is read from ``offset``)."""

    task_id: str
    offset: int
    status: str
    passed: bool | None
    score: float | None
    tokens: int
    cost: float
    calls: int
    latency_s: float
    stopped: str | None
    answer_hash: int
    has_trace: bool

    @property
    def outcome(self) -> str:
        if self.status != "ok":
            return self.status
        if self.stopped == "budget":
            return "budget"
        return "unverified" if self.passed is None else "passed" if self.passed else "failed"


class RecordsIndex(_Incremental):
    """``results.jsonl``: the last record of each task, by task id, in order of first appearance."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.rows: dict[str, TaskRow] = {}

    def reset(self) -> None:
        super().reset()
        self.rows = {}

    def take(self, offset: int, line: bytes) -> None:
        try:
            record = TaskRecord.model_validate_json(line)
        except ValidationError:
            self.bad_lines += 1
            return
        self.rows[record.task_id] = TaskRow(
            task_id=record.task_id,
            offset=offset,
            status=record.status,
            passed=record.passed,
            score=record.score,
            tokens=record.tokens,
            cost=record.cost,
            calls=sum(u.calls for u in record.usage.values()),
            latency_s=record.latency_s,
            stopped=record.stopped,
            answer_hash=hash(record.answer),
            has_trace=record.trace_path is not None,
        )

    def record(self, task_id: str) -> TaskRecord | None:
        row = self.rows.get(task_id)
        if row is None:
            return None
        return TaskRecord.model_validate_json(self.read_line(row.offset))


class _Cache:
    """At most ``size`` indexes, the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Path, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path, make: type[_Incremental]) -> Any:
        with self.lock:
            item = self.items.pop(path, None) or make(path)
            self.items[path] = item
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        item.refresh()
        return item


@dataclass
class Run:
    """One run under the viewer's folder: a batch (``results.jsonl``), a flow run
    (``trace.jsonl``) or a forking-token analysis (``forks.json``, ``forkpath analyze forks``)."""

    key: str
    dir: Path
    kind: str
    """``batch``, ``flow`` or ``forks``."""
    manifest: RunManifest | None = None
    records: RecordsIndex | None = None
    trace: TraceIndex | None = None
    flow: str | None = None
    dataset: str | None = None
    status: str = "unknown"
    """``running``, ``finished``, ``interrupted`` or ``unknown`` (an older run that does not say)."""
    started: float | None = None
    finished: float | None = None
    total: int | None = None
    notes: list[str] = field(default_factory=list)
    """Problems met reading it (skipped lines), shown on its pages."""
    forks: ForkReport | None = None
    """A forking-token analysis's report (``kind == "forks"``)."""

    @property
    def rows(self) -> list[TaskRow]:
        return list(self._rows())

    def _rows(self) -> Iterator[TaskRow]:
        return iter(self.records.rows.values()) if self.records is not None else iter(())

    @property
    def done(self) -> int:
        if self.kind == "batch":
            return len(self.records.rows) if self.records is not None else 0
        return int(self.status == "finished")

    @property
    def pass_rate(self) -> float | None:
        if self.kind == "forks":
            return None
        if self.kind == "flow":
            end = self.trace.flow_end if self.trace else None
            return None if end is None or end.passed is None else float(end.passed)
        done = self.done
        return sum(1 for r in self._rows() if r.passed) / done if done else None

    @property
    def tokens(self) -> int:
        if self.trace is not None:
            return self.trace.tokens
        return sum(r.tokens for r in self._rows())

    @property
    def cost(self) -> float:
        if self.trace is not None:
            return self.trace.cost
        return sum(r.cost for r in self._rows())

    @property
    def wall_s(self) -> float | None:
        if self.started is None:
            return None
        end = (
            self.finished if self.finished is not None else time.time() if self.status == "running" else None
        )
        return None if end is None else max(0.0, end - self.started)

    def has_task(self, task_id: str) -> bool:
        if self.kind == "forks":
            return False
        if self.kind == "batch":
            return self.records is not None and task_id in self.records.rows
        return task_id == flow_task_key(self.trace)

    def trace_path(self, task_id: str) -> Path | None:
        """Where the trace of ``task_id`` is (None: it has none); never outside the run's folder."""
        if self.kind == "flow":
            return self.dir / "trace.jsonl" if task_id == flow_task_key(self.trace) else None
        record = self.records.record(task_id) if self.records else None
        if record is None or record.trace_path is None:
            return None
        # Written relative to where the batch ran: find it by its folder name under traces/.
        candidate = (self.dir / "traces" / Path(record.trace_path).parent.name / "trace.jsonl").resolve()
        if not candidate.is_relative_to(self.dir.resolve()) or not candidate.is_file():
            return None
        return candidate


def flow_task_key(trace: TraceIndex | None) -> str:
    """The task id a flow run is shown under (``run`` when its trace does not name one)."""
    start = trace.flow_start if trace is not None else None
    return start.task_id if start is not None and start.task_id else "run"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunCatalog:
    """The runs under ``root``: its sub-folders holding ``results.jsonl`` or ``trace.jsonl`` (and
    ``root`` itself when it is one run's folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._traces = _Cache(64)
        self._records = _Cache(1024)  # one per batch run: the runs page reads them all

    def trace(self, path: Path) -> TraceIndex:
        index: TraceIndex = self._traces.get(path, TraceIndex)
        return index

    def _folders(self) -> list[tuple[str, Path]]:
        if _is_run(self.root):
            return [(self.root.resolve().name, self.root)]
        try:
            children = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return []
        return [(p.name, p) for p in children if _is_run(p)]

    def list(self) -> list[Run]:
        """Every run, the most recently started first."""
        runs = [self._load(key, path) for key, path in self._folders()]
        return sorted(runs, key=lambda r: (r.started or 0.0, r.key), reverse=True)

    def get(self, key: str) -> Run | None:
        for name, path in self._folders():
            if name == key:
                return self._load(name, path)
        return None

    def _load(self, key: str, path: Path) -> Run:
        if (path / "results.jsonl").is_file() or (path / "run.json").is_file():
            return self._batch(key, path)
        if (path / "trace.jsonl").is_file():
            return self._flow(key, path)
        return self._forks(key, path)

    def _forks(self, key: str, path: Path) -> Run:
        file = path / "forks.json"
        run = Run(key=key, dir=path, kind="forks", total=1)
        changed = _stat(file)
        if changed is not None:
            run.started = run.finished = changed[2] / 1e9
        try:
            run.forks = ForkReport.model_validate_json(file.read_bytes())
        except (OSError, ValidationError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            run.notes.append(f"forks.json cannot be read: {first}")
            return run
        run.status = "finished"
        run.flow, run.dataset = run.forks.model, run.forks.task
        return run

    def _batch(self, key: str, path: Path) -> Run:
        records: RecordsIndex = self._records.get(path / "results.jsonl", RecordsIndex)
        manifest = RunManifest.read(path)
        run = Run(key=key, dir=path, kind="batch", manifest=manifest, records=records)
        if records.bad_lines:
            run.notes.append(f"results.jsonl: {records.bad_lines} unreadable line(s) skipped")
        if records.pending:
            run.notes.append(
                "results.jsonl: its last line is incomplete (being written, or torn) and is not shown"
            )
        if manifest is not None:
            run.flow, run.dataset, run.total = manifest.flow, manifest.dataset, manifest.tasks
            run.started, run.finished = manifest.started, manifest.finished
            if manifest.finished is not None:
                run.status = "finished"
            elif manifest.host == socket.gethostname() and manifest.pid is not None:
                run.status = "running" if _alive(manifest.pid) else "interrupted"
            else:
                changed = _stat(path / "results.jsonl")
                recent = changed is not None and time.time() - changed[2] / 1e9 < RECENT_S
                run.status = "running" if recent else "interrupted"
        else:
            report, results = _stat(path / "report.md"), _stat(path / "results.jsonl")
            if report is not None and results is not None and report[2] >= results[2]:
                run.status = "finished"
        if run.flow is None:
            first = next((r for r in records.rows.values() if r.has_trace), None)
            trace_path = run.trace_path(first.task_id) if first is not None else None
            start = first_flow_event(trace_path) if trace_path is not None else None
            run.flow = start.flow if start is not None else None
        return run

    def _flow(self, key: str, path: Path) -> Run:
        trace = self.trace(path / "trace.jsonl")
        run = Run(key=key, dir=path, kind="flow", trace=trace, total=1)
        run.notes += trace_notes(trace)
        start, end = trace.flow_start, trace.flow_end
        run.flow = start.flow if start is not None else None
        run.started = trace.first_time
        if end is not None:
            run.status, run.finished = "finished", end.time
        elif start is not None:
            changed = _stat(path / "trace.jsonl")
            recent = changed is not None and time.time() - changed[2] / 1e9 < RECENT_S
            run.status = "running" if recent else "interrupted"
            run.finished = None if recent else trace.last_time
        else:
            run.finished = trace.last_time
        return run


def trace_notes(trace: TraceIndex) -> list[str]:
    """What was skipped reading ``trace``, in words."""
    notes = []
    if trace.unknown:
        kinds = ", ".join(f"{n} {kind!r}" for kind, n in sorted(trace.unknown.items()))
        notes.append(f"{trace.path.name}: events of types this version does not know skipped: {kinds}")
    if trace.bad_lines:
        notes.append(
            f"{trace.path.name}: {trace.bad_lines} line(s) skipped (not JSON, or written by another "
            "version of forkpath with other fields)"
        )
    if trace.pending:
        notes.append(f"{trace.path.name}: its last line is incomplete (being written, or torn)")
    return notes


def first_flow_event(path: Path, lines: int = 5) -> FlowEvent | None:
    """The flow-start event among the first ``lines`` lines of a trace (it is the first it writes)."""
    try:
        with path.open("rb") as f:
            for _ in range(lines):
                line = f.readline()
                if not line:
                    break
                if b'"flow"' not in line:
                    continue
                try:
                    event = parse_event(line)
                except ValidationError:
                    continue
                if isinstance(event, FlowEvent) and event.phase == "start":
                    return event
    except OSError:
        return None
    return None


def _is_run(path: Path) -> bool:
    return any((path / name).is_file() for name in ("results.jsonl", "run.json", "trace.jsonl", "forks.json"))
