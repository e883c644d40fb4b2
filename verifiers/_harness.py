"""The sandbox's own process: a fork server, and the code that runs one candidate in a fork.

Started by :mod:`forkpath.verifiers._sandbox` as ``python -I [-S] -B _harness.py serve FD
MODULE...`` and never imported. The server preloads the harness and common modules once, then
forks one child per run, so a run costs a fork instead of an interpreter start. As root, the
server lives in an empty network namespace of its own, which every run inherits. A run's child
(running as root) starts a new session and, under full isolation, new mount and pid namespaces,
then forks the process that becomes pid 1 there: that one sets up mounts and rlimits, drops to
an unprivileged uid, and only then runs candidate code. When pid 1 exits, the kernel kills
everything left in its namespace.

The report is a file opened before the candidate runs. Every line starts with a nonce that only
the job carried (the job file is deleted before the candidate runs), and the parent counts a
candidate as passing only when it sees the ``done`` line, which is written after the last test
returned. So exiting early (``sys.exit``, ``os._exit``), crashing, or killing the process can
only make a candidate fail. After the candidate has run, this module calls nothing the
candidate could have replaced: functions it needs are bound before, and the tests see a copy of
the builtins taken before the candidate ran. It stays standard-library only.
"""

import builtins
import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MAX_MESSAGE = 600
EFBIG = 27

_libc = ctypes.CDLL(None, use_errno=True)

# The harness's own builtins: functions defined below look names up here, so a candidate that
# patches the ``builtins`` module (``builtins.isinstance = ...``) does not reach the harness.
__builtins__ = dict(builtins.__dict__)  # type: ignore[assignment]


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


def _serve_loop(sock: socket.socket, wake_r: int, wake_w: int, running: dict[int, str]) -> None:
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            sock.send(f"exited {running.pop(pid)} {status}".encode())
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
            _run_job(control, None)
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


def _setup_failed(control: str, error: BaseException, nonce: str = "", fd: int = -1) -> NoReturn:
    """Report a failed set-up (before any candidate code ran) and exit.

    ``fd`` is the report file when it is already open (after the mounts its path is hidden).
    """
    try:
        if fd < 0:
            fd = os.open(os.path.join(control, "result"), os.O_WRONLY | os.O_APPEND)
        prefix = f"{nonce} " if nonce else ""
        os.write(fd, f"{prefix}setup {type(error).__name__}: {error}\n".encode())
    finally:
        os._exit(125)


# -- one run -----------------------------------------------------------------------------------
def _run_job(control: str, namespaces: bool | None) -> NoReturn:
    """Pid 1 of the run (or the session leader without namespaces): set up, drop, run. Never returns."""
    nonce, out_fd = "", -1
    try:
        out_fd = os.open(os.path.join(control, "result"), os.O_WRONLY | os.O_APPEND)
        job_path = os.path.join(control, "job.json")
        with open(job_path, "rb") as f:
            job = json.loads(f.read())
        os.unlink(job_path)
        nonce = job["nonce"]
        stdin = os.path.join(control, "stdin")
        _redirect(0, stdin if os.path.exists(stdin) else os.devnull, os.O_RDONLY)
        _redirect(1, os.path.join(control, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        _redirect(2, os.path.join(control, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        # Past the file-size limit writes fail with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if namespaces:
            _isolate(job["isolate"])
        else:
            os.chdir(job["workdir"])
            _set_limits(job["limits"])
        os.environ["HOME"] = os.getcwd()
        builtins.exit = builtins.quit = _exit_builtin  # type: ignore[assignment]
        # From here on candidate code may run: a set-up line without the nonce is not ours.
        os.write(out_fd, f"{nonce} ready\n".encode())
    except BaseException as e:
        _setup_failed(control, e, nonce, out_fd)
    if job["mode"] == "program":
        _run_program(job, out_fd)
    _run_tests(job, out_fd)


def _redirect(target: int, path: str, flags: int) -> None:
    fd = os.open(path, flags, 0o600)
    os.dup2(fd, target)
    os.close(fd)


def _exit_builtin(code: object = None) -> None:
    """``exit``/``quit`` as the site module would define them (the server may run with ``-S``)."""
    raise SystemExit(code)


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
    options = f"size={iso['tmpfs_mb']}m,nr_inodes=4096,mode=1777"
    for path in iso["tmpfs"]:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)
    uid, gid, work = iso["uid"], iso["gid"], iso["workdir"]
    os.makedirs(work, mode=0o700)
    os.chown(work, uid, gid)
    os.chdir(work)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
    _set_limits(iso["limits"])
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _set_limits(limits: dict) -> None:
    for name, value in limits.items():
        soft, hard = value if isinstance(value, list) else (value, value)
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _describe(exc: BaseException, filename: str) -> str:
    """The last traceback line, plus where in the candidate it was raised."""
    try:
        text = str(exc)
    except BaseException:
        text = "<unprintable>"
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    tb = exc.__traceback__
    where = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            where = tb.tb_lineno
        tb = tb.tb_next
    if where is not None:
        line += f" ({filename}, line {where})"
    return line[:MAX_MESSAGE]


def _classify(exc: BaseException) -> str:
    if isinstance(exc, AssertionError):
        return "wrong_answer"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError) and exc.errno == EFBIG:
        return "output_limit"
    return "exception"


_BLOCKED_EVENTS = frozenset(
    {
        "sys.settrace",  # a trace function can jump a test past its assert
        "sys.setprofile",
        "ctypes.dlopen",  # ctypes.pythonapi reaches the interpreter's internals
        "ctypes.dlsym",
        "ctypes.cdata",  # from_address: raw memory writes
        "gc.get_objects",  # finding the harness's state
        "gc.get_referrers",
        "gc.get_referents",
    }
)


def _guard(event: str, args: tuple, blocked: frozenset = _BLOCKED_EVENTS) -> None:
    """Audit hook (cannot be removed once added): refuse what could tamper with the tests."""
    if event in blocked:
        raise RuntimeError(f"{event} is not allowed in the sandbox")


def _run_tests(job: dict, out_fd: int) -> NoReturn:
    # Everything used after the candidate has run is bound here, before it runs.
    write, getpid, exit_now = os.write, os.getpid, os._exit
    clock, gettrace, getprofile = time.perf_counter, sys.gettrace, sys.getprofile
    run, build, describe, classify = exec, compile, _describe, _classify
    nonce = job["nonce"]
    harness_pid = getpid()
    pristine = dict(builtins.__dict__)
    streams = (sys.stdout, sys.stderr)

    def report(line: str) -> None:
        if getpid() != harness_pid:
            exit_now(0)  # a fork of the candidate came back into the harness: it has no say
        write(out_fd, f"{nonce} {line}\n".encode("utf-8", "replace"))

    def finish(code: int) -> NoReturn:
        for stream in streams:  # what the candidate printed, for the verdict's details
            try:  # noqa: SIM105 - no contextlib after the candidate ran: it may have patched it
                stream.flush()
            except BaseException:
                pass
        exit_now(code)

    filename = "candidate.py"
    try:
        code = build(job["code"], filename, "exec")
    except (SyntaxError, ValueError) as e:
        report(f"syntax {describe(e, filename)!r}")
        finish(1)
    sys.addaudithook(_guard)
    namespace: dict = {"__name__": "candidate", "__builtins__": builtins}
    try:
        run(code, namespace)
    except BaseException as e:
        report(f"load {classify(e)} {describe(e, filename)!r}")
        finish(1)
    report("loaded")
    # The tests get the candidate's globals minus anything that shadows a builtin, and a
    # builtins copy taken before the candidate ran, so patching builtins cannot fake a pass.
    test_ns = {
        k: v for k, v in namespace.items() if k not in pristine or (k.startswith("__") and k.endswith("__"))
    }
    test_ns["__builtins__"] = dict(pristine)
    test_ns["__name__"] = "tests"
    try:
        run(build(job["tests"], "tests.py", "exec"), test_ns)
        function = test_ns[job["test_function"]]
    except BaseException as e:
        report(f"testerror {describe(e, 'tests.py')!r}")
        finish(1)
    entry_point = job["entry_point"]
    if entry_point is not None:
        if entry_point not in namespace:
            report(f"load exception {f'NameError: the candidate does not define {entry_point!r}'!r}")
            finish(1)
        steps = function(namespace[entry_point])
    else:
        steps = function()
    count = 0
    while True:
        started = clock()
        try:
            index, error = next(steps)
        except StopIteration:
            break
        except BaseException as e:
            report(f"abort {classify(e)} {describe(e, filename)!r}")
            finish(1)
        elapsed = clock() - started
        if gettrace() is not None or getprofile() is not None:
            report(f"abort exception {'tampering: the candidate installed a trace or profile hook'!r}")
            finish(1)
        if error is None:
            report(f"end {index} ok {elapsed:.6f} ''")
        else:
            report(f"end {index} {classify(error)} {elapsed:.6f} {describe(error, filename)!r}")
        count += 1
    report(f"done {count}")
    finish(0)  # not a normal exit: no atexit hooks or lingering threads of the candidate


def _run_program(job: dict, out_fd: int) -> NoReturn:
    write, exit_now = os.write, os._exit
    nonce = job["nonce"]

    def report(line: str) -> None:
        write(out_fd, f"{nonce} {line}\n".encode("utf-8", "replace"))

    filename = "solution.py"
    try:
        code = compile(job["code"], filename, "exec")
    except (SyntaxError, ValueError) as e:
        report(f"syntax {_describe(e, filename)!r}")
        exit_now(1)
    sys.argv = [filename]
    namespace = {"__name__": "__main__", "__file__": filename, "__builtins__": builtins}
    status = 0
    try:
        exec(code, namespace)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException as e:
        report(f"error {_classify(e)} {_describe(e, filename)!r}")
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
        status = 1
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:  # no contextlib after the candidate ran: it may have patched it
            if stream is not None:
                stream.flush()
        except BaseException:
            pass
    report(f"exit {status}")
    exit_now(status & 0xFF)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "serve":
        sys.exit("usage: _harness.py serve FD [MODULE ...]  (started by forkpath's sandbox)")
    for module in sys.argv[3:]:
        __import__(module)  # preloaded once here instead of once per run
    serve(int(sys.argv[2]))
