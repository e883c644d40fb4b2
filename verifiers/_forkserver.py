"""The parent's side of the sandbox fork server (see :mod:`._harness`).

Starting an interpreter per run costs more than most tests take, so one server process per
sandbox preloads the harness and common modules and forks a child per run. We talk to it over a
``SOCK_SEQPACKET`` socket pair: ``run ID NS DIR`` out; ``started ID PID`` and ``exited ID
STATUS`` back. A reader thread owns the receiving side and hands each answer to the event loop
that asked, so one server serves any number of loops (pytest makes one per test).
"""

import asyncio
import contextlib
import itertools
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from forkpath._errors import VerifierError

logger = logging.getLogger(__name__)

HARNESS = str(Path(__file__).with_name("_harness.py"))
PRELOAD = (
    "typing",
    "re",
    "collections",
    "functools",
    "itertools",
    "math",
    "heapq",
    "bisect",
    "string",
    "operator",
)
"""Modules imported once in the server, so runs do not pay for them (deterministic ones only:
``random`` is left out so every run seeds its own)."""
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "TMPDIR": "/tmp",
}
"""The whole environment of the server and so of every run: nothing from ours (no API keys)."""


def _no_core_files() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass
class _Pending:
    loop: asyncio.AbstractEventLoop
    started: asyncio.Future[int]
    exited: asyncio.Future[int]
    pid: int | None = field(default=None)


class ForkServer:
    """One fork-server process; :meth:`run` runs one prepared control directory in a fork."""

    def __init__(self, *, site_packages: bool = False) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-I", "-B", *([] if site_packages else ["-S"]), HARNESS, "serve"]
        try:
            self._proc = subprocess.Popen(
                [*argv, str(theirs.fileno()), *PRELOAD],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=dict(ENV),
                preexec_fn=_no_core_files,  # no core files from any run, ever
            )
        except OSError as e:
            raise VerifierError(f"cannot start the sandbox server: {e}") from e
        finally:
            theirs.close()
        self._sock = ours
        self.owner_pid = os.getpid()
        """The process that started the server: a forked copy of it must start its own."""
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count()
        self.alive = True
        self._reader = threading.Thread(target=self._read, name="forkpath-sandbox-reader", daemon=True)
        self._reader.start()

    async def run(self, control: str, *, namespaces: bool, timeout_s: float) -> tuple[int, bool]:
        """Run the job in ``control``; return (exit code as ``Popen.returncode``, timed out)."""
        loop = asyncio.get_running_loop()
        run_id = str(next(self._ids))
        pending = _Pending(loop, loop.create_future(), loop.create_future())
        with self._state_lock:
            if not self.alive:
                raise VerifierError("the sandbox server has stopped")
            self._pending[run_id] = pending
        try:
            self._send(f"run {run_id} {int(namespaces)} {control}".encode())
            pending.pid = await asyncio.wait_for(pending.started, timeout=30)
            timed_out = False
            try:
                status = await asyncio.wait_for(asyncio.shield(pending.exited), timeout=timeout_s)
            except TimeoutError:
                timed_out = True
                status = await self._stop(pending, namespaces)
            return os.waitstatus_to_exitcode(status), timed_out
        except TimeoutError:
            raise VerifierError("the sandbox server did not start a run within 30 s") from None
        finally:
            if pending.pid is not None and not pending.exited.done():
                _kill_group(pending.pid)  # cancelled mid-run: the run dies with us
            with self._state_lock:
                if not pending.exited.done():
                    # Keep the entry until the server reports the exit, so the reader has a home for it.
                    pending.exited.add_done_callback(lambda _: self._forget(run_id))
                else:
                    self._pending.pop(run_id, None)

    async def _stop(self, pending: "_Pending", namespaces: bool) -> int:
        """Stop a run; with namespaces, wait until every process in them is gone."""
        assert pending.pid is not None
        if namespaces:
            try:
                os.kill(pending.pid, signal.SIGUSR1)  # its pid 1 dies, then the whole namespace
                return await asyncio.wait_for(asyncio.shield(pending.exited), timeout=5)
            except (TimeoutError, ProcessLookupError):
                pass
        _kill_group(pending.pid)
        return await pending.exited

    def _forget(self, run_id: str) -> None:
        with self._state_lock:
            self._pending.pop(run_id, None)

    def _send(self, message: bytes) -> None:
        try:
            with self._send_lock:
                self._sock.send(message)
        except OSError as e:
            self._fail_all(f"lost the sandbox server: {e}")
            raise VerifierError(f"lost the sandbox server: {e}") from e

    def _read(self) -> None:
        while True:
            try:
                message = self._sock.recv(4096)
            except OSError:
                message = b""
            if not message:
                code = self._proc.poll()
                self._fail_all(f"the sandbox server exited (code {code})")
                return
            kind, run_id, value = message.decode().split(" ", 2)
            with self._state_lock:
                pending = self._pending.get(run_id)
            if pending is None:
                continue
            if kind == "started":
                _resolve(pending.loop, pending.started, int(value))
            elif kind == "exited":
                _resolve(pending.loop, pending.exited, int(value))
            else:
                error = VerifierError(f"the sandbox could not fork a run: {value}")
                _resolve(pending.loop, pending.started, error)
                _resolve(pending.loop, pending.exited, error)

    def _fail_all(self, reason: str) -> None:
        with self._state_lock:
            self.alive = False
            pending = list(self._pending.values())
        for p in pending:
            _resolve(p.loop, p.started, VerifierError(reason))
            _resolve(p.loop, p.exited, VerifierError(reason))

    def close(self) -> None:
        """Stop the server; runs in flight are killed with it."""
        with self._state_lock:
            self.alive = False
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future, value: object) -> None:
    def settle() -> None:
        if future.done():
            return
        if isinstance(value, BaseException):
            future.set_exception(value)
            future.exception()  # retrieved: a run that stopped waiting must not log it as lost
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
