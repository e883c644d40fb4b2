"""Run untrusted Python in a separate, limited process: the one place forkpath executes candidates.

Each run is a fresh process forked from a fork server (see :mod:`._forkserver`), in a new
session with a scrubbed environment, rlimits (CPU, address space, file size, open files,
processes), stdout and stderr capped by the file-size limit, and a wall-clock timeout; whatever
it leaves behind is killed when it ends. When we are root and Linux allows it, the run also
gets new pid and mount namespaces (every process it started dies with it; a private ``/tmp``),
runs in an empty network namespace (no network at all; one per fork server, shared by its runs),
and drops to a random unprivileged uid, which is what makes the process limit and file
permissions bite. The isolation in force is reported with every result; anything less than
full isolation is logged as a warning, and ``isolation="full"`` refuses to run without it.

:class:`Sandbox` bounds how many runs go at once; :func:`run_program` is the entry point for code
that just wants to run a program on some input (e.g. clustering candidates by their outputs).
"""

import asyncio
import atexit
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forkpath._errors import VerifierError
from forkpath.verifiers._forkserver import ForkServer

logger = logging.getLogger(__name__)

FULL_ISOLATION = "uid,netns,pidns,mountns,rlimits,session"
BASIC_ISOLATION = "rlimits,session"
_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# Per-run control directories live in RAM when we can: on a disk file system creating and
# removing them costs milliseconds per run, on tmpfs microseconds.
# What a fully isolated run sees: only a loopback interface, and itself as pid 1.
_PROBE = (
    "import os\n"
    "lines = open('/proc/self/net/dev').read().splitlines()[2:]\n"
    "print(sorted(line.split(':')[0].strip() for line in lines), os.getpid())\n"
)
_CONTROL_BASE = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_MAC_SIZE = 16  # must match _runner.MAC_SIZE
Isolation = Literal["auto", "basic", "full"]


class Limits(BaseModel):
    """Resource limits of one sandboxed run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=10.0, gt=0)
    """Wall-clock limit of the whole run; the process group is killed when it passes."""
    cpu_s: int | None = Field(default=None, gt=0)
    """CPU-time limit (RLIMIT_CPU); default: the timeout rounded up, plus one second."""
    memory_mb: int = Field(default=1024, ge=128)
    """Address-space limit (RLIMIT_AS) in MiB."""
    max_output_mb: int = Field(default=16, ge=1)
    """Largest file the run may write (RLIMIT_FSIZE), MiB; its stdout and stderr are files too."""
    max_open_files: int = Field(default=64, ge=16)
    """RLIMIT_NOFILE."""
    max_processes: int = Field(default=32, ge=1)
    """RLIMIT_NPROC for the run's uid: processes and threads, the run itself included."""
    tmpfs_mb: int = Field(default=64, ge=1)
    """Size of the private /tmp (and other world-writable directories) under full isolation."""
    site_packages: bool = False
    """Let candidates import installed third-party packages (off: standard library only)."""


class ProgramRun(BaseModel):
    """What running a program on one input gave."""

    model_config = ConfigDict(extra="forbid")

    stdout: str
    stderr: str
    exit_code: int | None
    """Exit status; None when the process was killed (timeout) or died by a signal."""
    timed_out: bool = False
    signal: int | None = None
    """Signal that ended the process, if any."""
    error: str | None = None
    """Failure reason as a :data:`~forkpath.verifiers.Reason` (``exception``, ``syntax_error``, ...)."""
    message: str = ""
    """Last traceback line or what killed the run."""
    duration_s: float = 0.0
    isolation: str = ""

    @property
    def ok(self) -> bool:
        """Exited 0 on its own, within its limits."""
        return self.exit_code == 0 and self.error is None


@dataclass
class RawRun:
    """Low-level outcome of one harness run; turned into verdicts by the verifiers."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration_s: float
    isolation: str
    records: list[tuple[str, str]] = field(default_factory=list)
    """Harness report lines whose MAC verified under the run's key, in order: (kind, rest)."""

    def fatal(self, limits: Limits) -> tuple[str, str]:
        """Why the process stopped before reporting ``done``: (reason, message)."""
        if self.timed_out:
            return "timeout", f"exceeded the {limits.timeout_s:g} s wall-clock limit"
        code = self.returncode
        if code < 0:
            sig = -code
            if sig in (signal.SIGKILL, signal.SIGXCPU):
                return "timeout", "killed at the CPU-time limit"
            if sig == signal.SIGSEGV:
                return "crashed", "segmentation fault (stack overflow from deep recursion?)"
            return "crashed", f"killed by signal {signal.Signals(sig).name}"
        tail = self.stderr.decode("utf-8", "replace").strip().splitlines()
        if any("MemoryError" in line for line in tail[-5:]):
            return "memory", f"out of memory (limit {limits.memory_mb} MiB)"
        if (
            len(self.stdout) >= limits.max_output_mb * 2**20
            or len(self.stderr) >= limits.max_output_mb * 2**20
        ):
            return "output_limit", f"output reached the {limits.max_output_mb} MiB limit"
        last = f": {tail[-1][:300]}" if tail else ""
        return "crashed", f"the process exited with code {code} before the tests finished{last}"


def _exposures(paths: list[str]) -> list[tuple[str, list[str]]]:
    """Directories the run's uid cannot enter, and the paths under them it needs (read-only)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        real = Path(os.path.realpath(path))
        for ancestor in list(reversed(real.parents))[1:]:
            if not os.stat(ancestor).st_mode & 0o001:
                found.setdefault(str(ancestor), []).append(str(real))
                break
    return [(hidden, sorted(set(keeps))) for hidden, keeps in found.items()]


class Sandbox:
    """Runs harness jobs in isolated processes, at most ``max_parallel`` at a time.

    Args:
        limits: default limits of each run.
        max_parallel: concurrent runs (default: the number of CPUs).
        isolation: ``"auto"`` uses namespaces and a uid drop when they work here (probed once),
            ``"basic"`` never does, ``"full"`` refuses to run (:class:`VerifierError`) without them.
            Anything less than full isolation is logged as a warning once per sandbox.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        max_parallel: int | None = None,
        isolation: Isolation = "auto",
    ) -> None:
        if isolation not in ("auto", "basic", "full"):
            raise VerifierError(f"unknown sandbox isolation {isolation!r}; use 'auto', 'basic' or 'full'")
        self.limits = limits or Limits()
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self.required = isolation
        self._full: bool | None = False if isolation == "basic" else None
        self._problem = "isolation='basic' was asked for"
        self._warned = False
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._probe_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._servers: dict[bool, ForkServer] = {}
        self._lock = threading.Lock()
        _live.add(self)

    @property
    def isolation(self) -> str:
        """The isolation runs get (known after the first run under ``"auto"``)."""
        if self._full is None:
            return "unprobed"
        return FULL_ISOLATION if self._full else BASIC_ISOLATION

    def close(self) -> None:
        """Stop the fork servers (a later run starts them again)."""
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()

    async def run_program(self, code: str, stdin: str = "", *, limits: Limits | None = None) -> ProgramRun:
        """Run ``code`` as ``__main__`` with ``stdin`` as its standard input.

        Example:
            >>> run = await Sandbox().run_program("print(int(input()) * 2)", "21\\n")
            >>> run.stdout
            '42\\n'
        """
        limits = limits or self.limits
        raw = await self.execute({"mode": "program", "code": code}, stdin=stdin.encode(), limits=limits)
        exit_code: int | None = raw.returncode if raw.returncode >= 0 else None
        error: str | None = None
        message = ""
        for kind, rest in raw.records:
            if kind == "syntax":
                error, message = "syntax_error", _literal(rest)
            elif kind == "error":
                reason, _, text = rest.partition(" ")
                error, message = reason, _literal(text)
        if raw.timed_out or raw.returncode < 0:
            error, message = raw.fatal(limits)
            exit_code = None
        elif error is None and exit_code != 0 and not any(kind == "exit" for kind, _ in raw.records):
            error, message = raw.fatal(limits)
        return ProgramRun(
            stdout=raw.stdout.decode("utf-8", "replace"),
            stderr=raw.stderr.decode("utf-8", "replace"),
            exit_code=exit_code,
            timed_out=raw.timed_out,
            signal=-raw.returncode if raw.returncode < 0 and not raw.timed_out else None,
            error=error,
            message=message,
            duration_s=raw.duration_s,
            isolation=raw.isolation,
        )

    async def execute(self, job: dict[str, Any], *, stdin: bytes | None = None, limits: Limits) -> RawRun:
        """Run one harness job (``mode`` ``program`` or ``tests``); the verifiers' building block."""
        if self._full is None:
            await self._probe()
        if not self._full:
            if self.required == "full":
                raise VerifierError(
                    f"full isolation was required (isolation='full') but is not available here: {self._problem}"
                )
            if not self._warned:
                self._warn()
        async with self._semaphore():
            return await self._execute(job, stdin, limits, bool(self._full))

    def _semaphore(self) -> asyncio.Semaphore:
        # One semaphore per event loop: asyncio primitives cannot be shared across loops.
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.max_parallel)
        return sem

    def _server(self, site_packages: bool) -> ForkServer:
        with self._lock:
            server = self._servers.get(site_packages)
            if server is None or not server.alive or server.owner_pid != os.getpid():
                server = self._servers[site_packages] = ForkServer(site_packages=site_packages)
            return server

    async def _probe(self) -> None:
        """Find out once whether namespaces and the uid drop work here."""
        lock = self._probe_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if self._full is None:
                await self._probe_once()

    async def _probe_once(self) -> None:
        full, problem = _namespaces_possible()
        if full:
            try:
                raw = await self._execute(
                    {"mode": "program", "code": _PROBE}, b"", Limits(timeout_s=30), True
                )
                full = raw.returncode == 0 and raw.stdout == b"['lo'] 1\n"
                problem = "namespaces do not work here: " + (
                    raw.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit {raw.returncode}"
                )
            except VerifierError as e:
                full, problem = False, f"namespaces do not work here: {e}"
        if self._full is None:
            self._full, self._problem = full, problem

    def _warn(self) -> None:
        self._warned = True
        nproc = "is not enforced for root" if os.geteuid() == 0 else "counts all of this user's processes"
        logger.warning(
            "sandbox: isolation is %s, not full (%s). Runs share this process's uid: a candidate can "
            "read what this user can (other processes' /proc/<pid>/environ included) and RLIMIT_NPROC "
            "%s. Use it for trusted code only; Sandbox(isolation='full') refuses to run like this.",
            BASIC_ISOLATION,
            self._problem,
            nproc,
        )

    def _job(self, job: dict[str, Any], control: str, limits: Limits, full: bool) -> dict[str, Any]:
        cpu = limits.cpu_s or int(limits.timeout_s + 0.999) + 1
        rlimits = {
            "RLIMIT_CPU": [cpu, cpu + 1],
            "RLIMIT_AS": limits.memory_mb * 2**20,
            "RLIMIT_FSIZE": limits.max_output_mb * 2**20,
            "RLIMIT_NOFILE": limits.max_open_files,
            "RLIMIT_NPROC": limits.max_processes,
            "RLIMIT_CORE": 0,
        }
        prepared = {
            "entry_point": None,
            "tests": "",
            "test_function": "",
            **job,
            "key": secrets.token_bytes(_MAC_SIZE).hex(),  # authenticates the report; see _runner.py
        }
        if full:
            # A random uid per run: its process count (RLIMIT_NPROC) and kill(-1) reach only this run.
            uid = 1_000_000 + secrets.randbelow(1_000_000_000)
            needed = [sys.base_prefix] + ([sys.prefix] if limits.site_packages else [])
            prepared["isolate"] = {
                "uid": uid,
                "gid": uid,
                "expose": _exposures(needed),
                "keep": sorted({os.path.realpath(path) for path in needed}),
                "tmpfs": [d for d in _WRITABLE_DIRS if d == "/tmp" or _world_writable(d)],
                "tmpfs_mb": limits.tmpfs_mb,
                "workdir": "/tmp/work",
                "limits": rlimits,
            }
        else:
            prepared["workdir"] = os.path.join(control, "work")
            prepared["limits"] = rlimits
        return prepared

    async def _execute(self, job: dict[str, Any], stdin: bytes | None, limits: Limits, full: bool) -> RawRun:
        server = self._server(limits.site_packages)
        control = tempfile.mkdtemp(prefix="forkpath-sbx-", dir=_CONTROL_BASE)
        loop = asyncio.get_running_loop()
        started = loop.time()
        report = -1
        try:
            prepared = self._job(job, control, limits, full)
            if not full:
                os.mkdir(os.path.join(control, "work"))
            _write_private(os.path.join(control, "job.json"), json.dumps(prepared).encode())
            _write_private(os.path.join(control, "result"), b"")
            # The run unlinks the report before any candidate code runs; we read it through this.
            report = os.open(os.path.join(control, "result"), os.O_RDONLY)
            if stdin is not None:
                _write_private(os.path.join(control, "stdin"), stdin)
            returncode, timed_out = await server.run(control, namespaces=full, timeout_s=limits.timeout_s)
            text = _read_fd(report, 2**24)
            records = _verified_records(text, bytes.fromhex(prepared["key"]))
            if not any(kind == "ready" for kind, _ in records):
                # No set-up line at all: killed before it finished (a timeout), not an error.
                setup = next((rest for kind, rest in records if kind == "setup"), None) or _setup_error(text)
                if setup is not None:
                    raise VerifierError(f"the sandbox could not set up a run: {setup}")
            cap = limits.max_output_mb * 2**20
            return RawRun(
                returncode=returncode,
                stdout=_read_head(os.path.join(control, "stdout"), cap),
                stderr=_read_head(os.path.join(control, "stderr"), cap),
                timed_out=timed_out,
                duration_s=loop.time() - started,
                isolation=FULL_ISOLATION if full else BASIC_ISOLATION,
                records=records,
            )
        finally:
            if report >= 0:
                os.close(report)
            shutil.rmtree(control, ignore_errors=True)


def _world_writable(path: str) -> bool:
    try:
        return os.path.isdir(path) and not os.path.islink(path) and bool(os.stat(path).st_mode & 0o002)
    except OSError:
        return False


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data) if len(data) < 65536 else _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_head(path: str, cap: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(cap)
    except OSError:
        return b""


def _read_fd(fd: int, cap: int) -> bytes:
    chunks, size = [], 0
    while size < cap:
        chunk = os.read(fd, min(1 << 20, cap - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _verified_records(data: bytes, key: bytes) -> list[tuple[str, str]]:
    """The report lines whose MAC verifies at the next sequence number: ``(kind, rest)``.

    Each line is ``hex(MAC(key, b"SEQ " + line)) line`` (see ``_runner.reporter``). Anything
    else (lines a candidate wrote, replayed or cut) is skipped, and a line is only kept after
    all the harness's lines before it, so a pass needs the harness's own ``done``.
    """
    base = hashlib.blake2b(key=key, digest_size=_MAC_SIZE)
    records: list[tuple[str, str]] = []
    for line in data.split(b"\n"):
        mac, _, content = line.partition(b" ")
        expected = base.copy()
        expected.update(b"%d " % len(records))
        expected.update(content)
        if hmac.compare_digest(expected.hexdigest().encode("ascii"), mac):
            kind, _, rest = content.decode("utf-8", "replace").partition(" ")
            records.append((kind, rest))
    return records


def _setup_error(data: bytes) -> str | None:
    """A set-up failure written before the run had its key (a plain ``setup ...`` line)."""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("setup "):
            return line[len("setup ") :]
    return None


def _namespaces_possible() -> tuple[bool, str]:
    """Whether full isolation can be tried here, and why not."""
    if not sys.platform.startswith("linux"):
        return False, "namespaces need Linux"
    if os.geteuid() != 0:
        return False, "namespaces and the uid drop need root"
    return True, ""


def _literal(text: str) -> str:
    """Decode a ``repr``-quoted message from the harness (never evaluates code)."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


_live: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sandbox in list(_live):
        sandbox.close()


_shared: dict[tuple[int | None, str], Sandbox] = {}
_shared_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox (default limits, one run per CPU)."""
    return shared_sandbox()


def shared_sandbox(max_parallel: int | None = None, isolation: Isolation = "auto") -> Sandbox:
    """The process-wide sandbox of this pool size and isolation, made on first use.

    Verifiers pass their own limits with every run, so sandboxes differ only in how many runs
    they allow at once and in the isolation they require; sharing them keeps one fork server
    per kind instead of one per verifier object.
    """
    key = (max_parallel, isolation)
    with _shared_lock:
        sandbox = _shared.get(key)
        if sandbox is None:
            sandbox = _shared[key] = Sandbox(max_parallel=max_parallel, isolation=isolation)
        return sandbox


async def run_program(code: str, stdin: str = "", *, limits: Limits | None = None) -> ProgramRun:
    """Run a Python program on ``stdin`` in the default sandbox; see :meth:`Sandbox.run_program`."""
    return await default_sandbox().run_program(code, stdin, limits=limits)
