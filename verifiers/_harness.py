"""The sandbox's own process: a fork server, and the set-up of one run in a fork.

Started by :mod:`forkpath.verifiers._sandbox` as ``python -I [-S] -B _harness.py serve FD
MODULE...`` and never imported. The server preloads the harness and common modules once, then
forks one child per run, so a run costs a fork instead of an interpreter start. As root, the
server lives in an empty network namespace of its own, which every run inherits. A run's child
(running as root) starts a new session and, under full isolation, new mount and pid namespaces,
then forks the process that becomes pid 1 there: that one sets up mounts and rlimits, drops to
an unprivileged uid, and only then runs candidate code. When pid 1 exits, the kernel kills
everything left in its namespace. Without namespaces the server is the subreaper of its runs:
what a run leaves behind (even after ``setsid``) is adopted by the server and killed when the
run ends.

What runs after the set-up (the authenticated report, the audit hook, the test thread) is in
``_runner.py``, loaded from its file here. The report is a file opened and unlinked before the
candidate runs; the parent counts a candidate as passing only when it sees an authenticated
``done`` line, written after the last test returned. So exiting early (``sys.exit``,
``os._exit``), crashing, or killing the process can only make a candidate fail.
"""

import _thread
import builtins
import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import resource
import select
import signal
import socket
import sys
import threading  # noqa: F401 - imported in the main thread, so threading knows which one is main
from collections import deque
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38

_libc = ctypes.CDLL(None, use_errno=True)
_EXTENSION_DIRS = tuple(entry for entry in sys.path if os.path.isabs(entry) and os.path.isdir(entry))
"""Where a run may load extension modules from: the interpreter's own path, read-only to runs."""

# The harness's own builtins: functions defined below look names up here, so a candidate that
# patches the ``builtins`` module (``builtins.isinstance = ...``) does not reach the harness.
__builtins__ = dict(builtins.__dict__)  # type: ignore[assignment]


def _load_runner() -> ModuleType:
    """``_runner.py`` from beside this file, not registered in ``sys.modules``."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runner.py")
    spec = importlib.util.spec_from_file_location("_forkpath_sandbox_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from forkpath.verifiers import _runner as runner
else:
    runner = _load_runner()


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    fs = fstype.encode() if fstype else None
    opts = data.encode() if data else None
    _check(_libc.mount(source.encode(), target.encode(), fs, flags, opts), f"mount {target}")


# -- the fork server ---------------------------------------------------------------------------
def serve(sock_fd: int) -> None:
    """Answer ``run ID NAMESPACES CONTROL_DIR`` with ``started ID PID``, later ``exited ID STATUS``.

    As root, the server first moves itself into a new, empty network namespace that every run
    inherits: no interface but a loopback that is down. Creating one per run would cost
    milliseconds each; its socket to the parent, made before, keeps working.
    """
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):  # the probe run reports whether it worked
            _check(_libc.unshare(CLONE_NEWNET), "unshare")
    # Orphans of a run (a daemonized child, a setsid() escape) are re-parented to us, not to
    # init, so they can be found and killed when the run ends.
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes the wakeup fd
    running: dict[int, str] = {}
    with contextlib.suppress(OSError):  # the parent went away mid-message
        _serve_loop(sock, wake_r, wake_w, running)
    for pid in running:
        _kill_group(pid)
    _kill_orphans({})


def _serve_loop(sock: socket.socket, wake_r: int, wake_w: int, running: dict[int, str]) -> None:
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        _reap(sock, running)
        if sock.fileno() in ready:
            message = sock.recv(65536)
            if not message:  # the parent is gone: so are its runs
                return
            _, run_id, namespaces, control = message.decode().split(" ", 3)
            try:
                pid = os.fork()
            except OSError as e:
                sock.send(f"failed {run_id} {e}".encode())
                continue
            if pid == 0:
                _child(control, namespaces == "1", (sock.fileno(), wake_r, wake_w))
            running[pid] = run_id
            sock.send(f"started {run_id} {pid}".encode())


def _reap(sock: socket.socket, running: dict[int, str]) -> None:
    """Report the runs that ended, after killing what they left: their group and our orphans."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == 0:
            return
        pid = info.si_pid
        if pid in running:
            _kill_group(pid)  # before the reap: until then neither its pid nor its group id is reused
        _, status = os.waitpid(pid, 0)
        run_id = running.pop(pid, None)
        if run_id is not None:
            _kill_orphans(running)
            sock.send(f"exited {run_id} {status}".encode())


def _kill_orphans(running: dict[int, str]) -> None:
    """Kill and reap our children that are not runs, generation by generation."""
    for _ in range(1000):  # each round kills one generation; the next is re-parented to us as it dies
        orphans = [pid for pid in _children() if pid not in running]
        if not orphans:
            return
        for pid in orphans:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in orphans:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _children() -> list[int]:
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: look at every process's parent
        found = []
        for entry in os.listdir("/proc"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if entry.isdigit():
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rpartition(")")[2].split()[1]) == me:
                            found.append(int(entry))
        return found


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def _child(control: str, namespaces: bool, server_fds: tuple[int, ...]) -> NoReturn:
    """First fork: new session, namespaces, then wait for pid 1 and exit the way it did."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in server_fds:
            os.close(fd)
        os.setsid()
        if not namespaces:
            _run_job(control, False)
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
        _mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks to the host
        # The parent stops a run with SIGUSR1 to us, and we kill pid 1: the kernel then kills the
        # rest of the namespace and our wait returns only when all of it is gone.
        grandchild: list[int] = []

        def stop(*_: object) -> None:
            for target in grandchild:
                os.kill(target, signal.SIGKILL)

        signal.signal(signal.SIGUSR1, stop)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            _run_job(control, True)
        grandchild.append(pid)
        _, status = os.waitpid(pid, 0)
    except BaseException as e:
        _setup_failed(control, e)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _setup_failed(control: str, error: BaseException, fd: int = -1, report: Any = None) -> NoReturn:
    """Report a failed set-up (before any candidate code ran) and exit.

    Authenticated when the report is open; before that (no key yet) as a plain line, which the
    parent reads only when no authenticated ``ready`` line exists.
    """
    try:
        line = f"setup {type(error).__name__}: {error}".replace("\n", " ")
        if report is not None:
            report(line)
        else:
            if fd < 0:
                fd = os.open(os.path.join(control, "result"), os.O_WRONLY | os.O_APPEND)
            os.write(fd, f"{line}\n".encode())
    finally:
        os._exit(125)


# -- one run -----------------------------------------------------------------------------------
def _run_job(control: str, namespaces: bool) -> NoReturn:
    """Pid 1 of the run (or the session leader without namespaces): set up, drop, run. Never returns."""
    _run(*_set_up(control, namespaces))  # no frame of ours keeps the report in a variable


def _set_up(control: str, namespaces: bool) -> tuple[dict, Any, Any, Any]:
    fd, report = -1, None
    try:
        # Before any thread starts (threads inherit it): no exec can ever gain privileges.
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
        result = os.path.join(control, "result")
        fd = os.open(result, os.O_WRONLY | os.O_APPEND)
        os.unlink(result)  # the parent reads it through its own descriptor; nobody can open it again
        job_path = os.path.join(control, "job.json")
        with open(job_path, "rb") as f:
            job = json.loads(f.read())
        os.unlink(job_path)
        report = runner.reporter(bytes.fromhex(job.pop("key")), fd)
        stdin = os.path.join(control, "stdin")
        _redirect(0, stdin if os.path.exists(stdin) else os.devnull, os.O_RDONLY)
        _redirect(1, os.path.join(control, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        _redirect(2, os.path.join(control, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        # Past the file-size limit writes fail with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limits = job["isolate"]["limits"] if namespaces else job["limits"]
        nproc = limits.pop("RLIMIT_NPROC", None)
        if namespaces:
            _isolate(job["isolate"])
        else:
            os.chdir(job["workdir"])
            _set_limits(limits)
        # Not dumpable: /proc/self/{mem,fd,environ} are root's, and no process of the same uid
        # may ptrace or read this one.
        _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl")
        os.environ["HOME"] = os.getcwd()
        builtins.exit = builtins.quit = _exit_builtin()
        go = finished = None
        if job["mode"] == "tests":
            go, finished = _thread.allocate_lock(), _thread.allocate_lock()
            go.acquire()
            finished.acquire()
            # The test thread runs C deque.extend over a C map: no Python frame below the
            # tests holds ``report``, and the candidate runs outside the main thread.
            lines = map(report, runner.test_lines(job, go, finished, _EXTENSION_DIRS))
            drain: deque[None] = deque(maxlen=0)
            _thread.start_new_thread(drain.extend, (lines,))
            del lines
        if nproc is not None:  # after the test thread exists: it counts as a process too
            _set_nproc(nproc)
        report("ready")
    except BaseException as e:
        _setup_failed(control, e, fd, report)
    return job, report, go, finished


def _run(job: dict, report: Any, go: Any, finished: Any) -> NoReturn:
    if go is None:
        runner.run_program(job, report)
    del job, report
    streams, exit_now, base_error = (sys.stdout, sys.stderr), os._exit, BaseException
    go.release()
    try:
        finished.acquire()
    except base_error:  # KeyboardInterrupt through _thread.interrupt_main(): not finished
        exit_now(1)
    for stream in streams:  # what the candidate printed, for the verdict's details
        try:  # noqa: SIM105 - no contextlib after the candidate ran: it may have patched it
            stream.flush()
        except base_error:
            pass
    exit_now(0)  # not a normal exit: no atexit hooks or lingering threads of the candidate


def _redirect(target: int, path: str, flags: int) -> None:
    fd = os.open(path, flags, 0o600)
    os.dup2(fd, target)
    os.close(fd)


def _exit_builtin() -> Any:
    """``exit``/``quit`` as the site module would define them (the server may run with ``-S``).

    Defined in a namespace of its own: its ``__globals__`` lead nowhere.
    """
    namespace: dict[str, Any] = {"__builtins__": {"SystemExit": SystemExit}}
    exec("def exit(code=None):\n    raise SystemExit(code)\n", namespace)
    return namespace["exit"]


def _isolate(iso: dict) -> None:
    """Mounts, limits, then the uid drop. Runs as root, pid 1 of fresh namespaces."""
    # A directory the unprivileged uid cannot enter (e.g. /root holding a pyenv Python) is
    # covered with an empty tmpfs, and only the paths the interpreter needs are bound back,
    # read-only: the stdlib stays importable and the rest of that directory stays hidden.
    for hidden, keeps in iso["expose"]:
        fds = [(keep, os.open(keep, os.O_PATH)) for keep in keeps]
        _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for keep, fd in fds:
            os.makedirs(keep, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", keep, None, MS_BIND | MS_REC)
            _mount("none", keep, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            os.close(fd)
    # World-writable directories get a private tmpfs each: writes there vanish with the namespace.
    # Interpreter paths inside one (a virtualenv under /tmp) are bound back, read-only.
    options = f"size={iso['tmpfs_mb']}m,nr_inodes=4096,mode=1777"
    for path in iso["tmpfs"]:
        inside = [k for k in iso.get("keep", []) if k.startswith(path.rstrip("/") + "/")]
        fds = [(keep, os.open(keep, os.O_PATH)) for keep in inside]
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)
        for keep, fd in fds:
            os.makedirs(keep, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", keep, None, MS_BIND | MS_REC)
            _mount("none", keep, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            os.close(fd)
    uid, gid, work = iso["uid"], iso["gid"], iso["workdir"]
    os.makedirs(work, mode=0o700)
    os.chown(work, uid, gid)
    os.chdir(work)
    _set_limits(iso["limits"])
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _set_limits(limits: dict) -> None:
    for name, value in limits.items():
        soft, hard = value if isinstance(value, list) else (value, value)
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _set_nproc(value: int) -> None:
    """RLIMIT_NPROC, possibly after the uid drop: never above the hard limit we already have."""
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (value, value))


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "serve":
        sys.exit("usage: _harness.py serve FD [MODULE ...]  (started by forkpath's sandbox)")
    for module in sys.argv[3:]:
        __import__(module)  # preloaded once here instead of once per run
    # Nothing loaded so far is ever collected: runs do not walk (and so copy) its pages.
    gc.freeze()
    serve(int(sys.argv[2]))
