"""Hostile candidates are contained and reported; the verifier keeps working; the host is unharmed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from forkpath import Task
from forkpath.verifiers import Limits, PythonTestsVerifier, Sandbox, Verdict

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="this containment needs root (namespaces, uid drop)")

TASK = Task(
    id="add",
    prompt="",
    kind="code",
    entry_point="add",
    test=(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert abs(candidate(0.1, 0.2) - 0.3) < 1e-9\n"
    ),
)
GOOD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return 999\n"


@pytest.fixture
def verifier(sandbox: Sandbox) -> PythonTestsVerifier:
    return PythonTestsVerifier(Limits(timeout_s=3), sandbox=sandbox)


def sandbox_processes() -> list[int]:
    """Host pids owned by a sandbox uid (random uids from 1,000,000 up): there should be none."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
            if uid_line and int(uid_line.split()[1]) >= 1_000_000:
                found.append(int(entry.name))
    return found


async def assert_still_works(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(TASK, GOOD)
    assert verdict.passed, verdict.summary()
    if ROOT:
        assert sandbox_processes() == []


def reasons(verdict: Verdict) -> list[str]:
    return [t.reason for t in verdict.tests]


async def test_infinite_loop_times_out(verifier: PythonTestsVerifier) -> None:
    verifier.limits = Limits(timeout_s=1)
    verdict = await verifier.verify(TASK, "def add(a, b):\n    while True:\n        pass\n")
    assert not verdict.passed
    assert reasons(verdict) == ["timeout", "not_run", "not_run"]
    assert "1 s wall-clock" in verdict.tests[0].message
    await assert_still_works(verifier)


@needs_root
async def test_fork_bomb_is_contained_and_leaves_no_process(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(TASK, "import os\nwhile True:\n    os.fork()\n")
    assert not verdict.passed
    assert set(reasons(verdict)) == {"exception"}
    assert "BlockingIOError" in verdict.tests[0].message  # RLIMIT_NPROC of the run's own uid
    # A bomb that swallows the error keeps forking until the timeout; everything dies with it.
    stubborn = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    verifier.limits = Limits(timeout_s=1)
    verdict = await verifier.verify(TASK, stubborn)
    assert reasons(verdict)[0] == "timeout"
    await assert_still_works(verifier)


async def test_memory_bomb_hits_the_memory_limit(verifier: PythonTestsVerifier) -> None:
    verifier.limits = Limits(timeout_s=3, memory_mb=256)
    verdict = await verifier.verify(
        TASK, "def add(a, b):\n    hog = []\n    while True:\n        hog.append(' ' * 10**7)\n"
    )
    assert not verdict.passed
    assert reasons(verdict)[0] == "memory"
    verdict = await verifier.verify(TASK, "block = bytearray(10**10)\n")
    assert set(reasons(verdict)) == {"memory"}
    await assert_still_works(verifier)


async def test_huge_output_hits_the_output_limit(verifier: PythonTestsVerifier) -> None:
    verifier.limits = Limits(timeout_s=3, max_output_mb=1)
    verdict = await verifier.verify(TASK, "def add(a, b):\n    while True:\n        print('x' * 100000)\n")
    assert not verdict.passed
    assert reasons(verdict)[0] == "output_limit"
    assert len(verdict.details.get("stdout", "")) <= 2000  # only a tail is kept in the verdict
    await assert_still_works(verifier)


async def test_deep_recursion_is_an_exception_or_contained(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(TASK, "def add(a, b):\n    return add(a, b) + 1\n")
    assert reasons(verdict) == ["exception"] * 3
    assert verdict.tests[0].message.startswith("RecursionError")
    # With the recursion limit lifted the interpreter runs out of memory or time instead.
    verifier.limits = Limits(timeout_s=2, memory_mb=256)
    unbounded = "import sys\nsys.setrecursionlimit(10**9)\ndef add(a, b):\n    return add(a, b) + 1\n"
    verdict = await verifier.verify(TASK, unbounded)
    assert not verdict.passed
    assert reasons(verdict)[0] in {"memory", "timeout", "crashed", "exception"}
    await assert_still_works(verifier)


@needs_root
async def test_killing_the_parent_fails_and_harms_nothing(verifier: PythonTestsVerifier) -> None:
    host_pid = os.getpid()
    server = verifier.sandbox._servers[False]
    candidate = (
        "import os, signal\n"
        f"for target in (os.getppid(), {host_pid}, {server._proc.pid}, -1):\n"
        "    try:\n"
        "        os.kill(target, signal.SIGKILL)\n"
        "        print('sent', target)\n"
        "    except OSError as e:\n"
        "        print('refused', target, type(e).__name__)\n" + GOOD
    )
    verdict = await verifier.verify(TASK, candidate)
    stdout = verdict.details["stdout"]
    assert f"refused {host_pid}" in stdout  # no such pid in its namespace, or not its uid
    assert f"refused {server._proc.pid}" in stdout
    assert verdict.passed  # the kills achieved nothing, so the correct function still passes
    assert server._proc.poll() is None
    await assert_still_works(verifier)


@needs_root
async def test_other_processes_environments_are_not_readable(verifier: PythonTestsVerifier) -> None:
    secret = f"sk-fake-{uuid.uuid4().hex}"
    # A process started with the secret in its environment, as a server holding an API key is.
    helper = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        env={**os.environ, "FORKPATH_FAKE_SECRET": secret},
        stdout=subprocess.PIPE,
    )
    try:
        assert helper.stdout is not None and helper.stdout.readline() == b"up\n"  # exec'd by now
        paths = [f"/proc/{helper.pid}/environ", f"/proc/{os.getpid()}/environ"]
        # The check can fail: from outside the sandbox the helper's environment holds the secret.
        assert secret in Path(paths[0]).read_bytes().decode(errors="replace")
        candidate = (
            "import os\n"
            "print(sorted(os.environ))\n"
            f"for path in {paths!r}:\n"
            "    try:\n"
            "        print('read', path, open(path, 'rb').read().decode(errors='replace'))\n"
            "    except OSError as e:\n"
            "        print('refused', path, type(e).__name__)\n" + GOOD
        )
        verdict = await verifier.verify(TASK, candidate)
    finally:
        helper.kill()
        helper.wait()
    stdout = verdict.details["stdout"]
    assert "'PATH'" in stdout  # it did read its own environment
    assert secret not in stdout
    assert "FORKPATH_FAKE_SECRET" not in stdout
    for path in paths:
        assert f"refused {path}" in stdout
    await assert_still_works(verifier)


@needs_root
async def test_writes_outside_the_work_directory_do_not_reach_the_host(verifier: PythonTestsVerifier) -> None:
    tag = f"forkpath-escape-{uuid.uuid4().hex}"
    targets = [
        f"/tmp/{tag}",
        f"/var/tmp/{tag}",
        f"/dev/shm/{tag}",
        f"/root/{tag}",
        f"{os.getcwd()}/{tag}",
        f"../{tag}",
    ]
    candidate = (
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('escaped')\n"
        "        print('wrote', path)\n"
        "    except OSError as e:\n"
        "        print('refused', path, type(e).__name__)\n" + GOOD
    )
    verdict = await verifier.verify(TASK, candidate)
    assert verdict.passed
    stdout = verdict.details["stdout"]
    # The project directory is read-only to the run (PermissionError), or hidden by the private
    # /tmp when the project itself lives under /tmp (then the write fails another way).
    assert f"refused {os.getcwd()}/{tag} " in stdout
    assert f"refused /root/{tag}" in stdout
    for target in targets:
        assert not Path(target).exists(), f"{target} reached the host"
    assert not (Path(os.getcwd()).parent / tag).exists()
    await assert_still_works(verifier)


@needs_root
async def test_no_network(verifier: PythonTestsVerifier) -> None:
    candidate = (
        "import socket\n"
        "for host, port in [('127.0.0.1', 6379), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=1).close()\n"
        "        print('connected', host)\n"
        "    except OSError as e:\n"
        "        print('refused', host, e.errno)\n" + GOOD
    )
    verdict = await verifier.verify(TASK, candidate)
    stdout = verdict.details["stdout"]
    assert "connected" not in stdout
    assert stdout.count("refused") == 2
    host_reaches_redis = socket.socket().connect_ex(("127.0.0.1", 6379)) == 0
    if host_reaches_redis:  # the same address the sandbox could not reach
        assert "refused 127.0.0.1" in stdout


async def test_sys_exit_before_the_tests_is_not_a_pass(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(TASK, GOOD + "import sys\nsys.exit(0)\n")
    assert not verdict.passed
    assert set(reasons(verdict)) == {"exception"}
    assert "SystemExit: 0" in verdict.tests[0].message
    verdict = await verifier.verify(TASK, GOOD + "import os\nos._exit(0)\n")
    assert not verdict.passed
    assert set(reasons(verdict)) == {"crashed"}
    assert "exited with code 0 before the tests finished" in verdict.tests[0].message
    verdict = await verifier.verify(TASK, "def add(a, b):\n    raise SystemExit(0)\n")
    assert not verdict.passed
    assert reasons(verdict) == ["exception"] * 3
    await assert_still_works(verifier)


async def test_forged_reports_are_ignored(verifier: PythonTestsVerifier) -> None:
    # Write pass-looking lines to every descriptor, then leave before the real tests run.
    forge = (
        "import os\n"
        "for fd in range(3, 64):\n"
        "    for line in ['loaded', 'end 0 ok 0.0 \\'\\'', 'end 1 ok 0.0 \\'\\'', 'end 2 ok 0.0 \\'\\'', 'done 3']:\n"
        "        for nonce in ['', '0' * 32 + ' ']:\n"
        "            try:\n"
        "                os.write(fd, (nonce + line + '\\n').encode())\n"
        "            except OSError:\n"
        "                pass\n"
        "os._exit(0)\n"
    )
    verdict = await verifier.verify(TASK, forge)
    assert not verdict.passed
    assert verdict.score == 0.0
    await assert_still_works(verifier)


async def test_patching_builtins_does_not_fake_a_pass(verifier: PythonTestsVerifier) -> None:
    candidate = (
        "import builtins\n"
        "builtins.abs = lambda x: 0\n"  # the third test compares abs(...) < 1e-9
        "builtins.AssertionError = KeyError\n"
        "abs = lambda x: 0\n"
        "def add(a, b):\n"
        "    return 999\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert reasons(verdict) == ["wrong_answer"] * 3
    assert verdict.tests[0].message == "AssertionError: got 999"
    await assert_still_works(verifier)


async def test_patching_os_write_does_not_rewrite_the_report(verifier: PythonTestsVerifier) -> None:
    candidate = (
        "import os\n"
        "real_write = os.write\n"
        "os.write = lambda fd, data: real_write(fd, data.replace(b' wrong_answer ', b' ok '))\n" + WRONG
    )
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert reasons(verdict) == ["wrong_answer"] * 3


async def test_trace_hooks_that_skip_asserts_are_caught(verifier: PythonTestsVerifier) -> None:
    # A tracer that jumps the tests past their assert line on every line event.
    candidate = (
        "import sys\n"
        "def add(a, b):\n"
        "    def tracer(frame, event, arg):\n"
        "        if event == 'line' and frame.f_code.co_filename == 'tests.py':\n"
        "            try:\n"
        "                frame.f_lineno = frame.f_lineno + 1\n"
        "            except ValueError:\n"
        "                pass\n"
        "        return tracer\n"
        "    sys.settrace(tracer)\n"
        "    return 999\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert reasons(verdict) == ["exception"] * 3
    assert "sys.settrace is not allowed in the sandbox" in verdict.tests[0].message
    await assert_still_works(verifier)


# Each attempt reaches raw memory or the interpreter's internals if it is not refused.
INTERNALS = (
    "import gc, importlib.util, importlib.machinery, os, sys, _imp\n"
    "def fresh(name):\n"
    "    return importlib.util.module_from_spec(importlib.util.find_spec(name))\n"
    "def memfd_extension():\n"
    "    fd = os.memfd_create('evil')\n"
    "    os.write(fd, b'not really an ELF file')\n"
    "    spec = importlib.machinery.ModuleSpec('evil', None, origin=f'/proc/self/fd/{fd}')\n"
    "    return _imp.create_dynamic(spec)\n"
    "def builtin_imp():\n"
    "    return _imp.create_builtin(importlib.machinery.ModuleSpec('_imp', None))\n"
    "ATTEMPTS = {\n"
    "    'import ctypes': lambda: __import__('ctypes'),\n"
    "    'fresh _ctypes': lambda: fresh('_ctypes').CFuncPtr,\n"
    "    'memfd extension': memfd_extension,\n"
    "    'second _imp': builtin_imp,\n"
    "    'makers defaults': lambda: _imp.create_dynamic.__defaults__,\n"
    "    'makers code': lambda: setattr(_imp.create_dynamic, '__code__', (lambda *a: 0).__code__),\n"
    "    'gc.get_objects': gc.get_objects,\n"
    "    'gc.get_referrers': lambda: gc.get_referrers(sys),\n"
    "    '_testcapi': lambda: __import__('_testcapi'),\n"
    "    '_testinternalcapi': lambda: __import__('_testinternalcapi'),\n"
    "    '_xxsubinterpreters': lambda: __import__('_xxsubinterpreters'),\n"
    "}\n"
    "def add(a, b):\n"
    "    reached = [name for name, attempt in ATTEMPTS.items() if not refused(attempt)]\n"
    "    return ','.join(reached) or 'none'\n"
    "def refused(attempt):\n"
    "    try:\n"
    "        attempt()\n"
    "    except (RuntimeError, ImportError, AttributeError) as e:\n"
    "        return 'sandbox' in str(e)\n"
    "    return False\n"
)


async def test_reaching_interpreter_internals_is_refused(verifier: PythonTestsVerifier) -> None:
    verdict = await verifier.verify(TASK, INTERNALS)
    assert verdict.tests[1].message == "AssertionError: got 'none'"  # every attempt refused


@needs_root
async def test_own_memory_is_not_readable_through_proc(verifier: PythonTestsVerifier) -> None:
    # /proc/self/mem would read (and write) anything in the process, the report's key included.
    memory = "def add(a, b):\n    return open('/proc/self/mem', 'rb') and 'opened'\n"
    verdict = await verifier.verify(TASK, memory)
    assert verdict.tests[0].message.startswith("PermissionError: [Errno 13] Permission denied")


# -- forging a pass from inside the process ------------------------------------------------------
# Walks out from a frame to whatever reports (the harness's ``report``, or a nonce and its file
# descriptor) and reports a full pass with it: what a candidate with any frame could do.
FORGE = (
    "import os, sys\n"
    "LINES = ['loaded', \"end 0 ok 0.0 ''\", \"end 1 ok 0.0 ''\", \"end 2 ok 0.0 ''\", 'done 3']\n"
    "def forge(frame):\n"
    "    while frame is not None:\n"
    "        for scope in (frame.f_locals, frame.f_globals):\n"
    "            report = scope.get('report')\n"
    "            if callable(report):\n"
    "                for line in LINES:\n"
    "                    report(line)\n"
    "                os._exit(0)\n"
    "            if 'nonce' in scope and 'out_fd' in scope:\n"
    "                for line in LINES:\n"
    "                    os.write(scope['out_fd'], f\"{scope['nonce']} {line}\\n\".encode())\n"
    "                os._exit(0)\n"
    "        frame = frame.f_back\n"
    "    raise LookupError('no way to report found')\n"
)
FRAME_SOURCES = {
    "sys._getframe": ("return sys._getframe(1)", "sys._getframe is not allowed in the sandbox"),
    "inspect.currentframe": (
        "import inspect\n        return inspect.currentframe()",
        "sys._getframe is not allowed in the sandbox",
    ),
    "sys._current_frames": (
        "return next(iter(sys._current_frames().values()))",
        "sys._current_frames is not allowed in the sandbox",
    ),
    "traceback frame": (
        "try:\n            raise KeyError\n        except KeyError as e:\n            return e.__traceback__.tb_frame",
        "tb_frame is not available in the sandbox",
    ),
    "generator frame": (
        "def steps():\n            yield me.gi_frame.f_back\n        me = steps()\n        return next(me)",
        "gi_frame is not available in the sandbox",
    ),
    "coroutine frame": (
        "async def steps():\n            return me.cr_frame.f_back\n        me = steps()\n"
        "        try:\n            me.send(None)\n        except StopIteration as stop:\n"
        "            return stop.value",
        "cr_frame is not available in the sandbox",
    ),
    "gc.get_referrers": (
        "import gc\n        return [f for f in gc.get_referrers(add) if type(f).__name__ == 'frame'][0]",
        "gc.get_referrers is not allowed in the sandbox",
    ),
    "signal handler": (
        "import signal, time\n        seen = []\n"
        "        signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(frame))\n"
        "        signal.setitimer(signal.ITIMER_REAL, 0.01)\n        time.sleep(0.5)\n        return seen[0]",
        "signal only works in main thread",
    ),
}


@pytest.mark.parametrize("source", FRAME_SOURCES, ids=list(FRAME_SOURCES))
async def test_frames_of_the_harness_are_out_of_reach(verifier: PythonTestsVerifier, source: str) -> None:
    get_frame, refusal = FRAME_SOURCES[source]
    candidate = FORGE + f"def caller():\n    def inner():\n        {get_frame}\n    return inner()\n"
    candidate += "def add(a, b):\n    forge(caller())\n    return 999\n"
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert verdict.score == 0.0
    assert refusal in verdict.tests[0].message, verdict.tests[0].message


async def test_the_reviewers_frame_exploit_fails(verifier: PythonTestsVerifier) -> None:
    # /tmp/review/exploit.py: the frame that execs the candidate held nonce, report and out_fd.
    candidate = (
        "import sys, os\n"
        "f = sys._getframe(1)\n"
        "loc = f.f_locals\n"
        "r = loc.get('report')\n"
        "r('loaded')\n"
        "for i in range(3): r(f\"end {i} ok 0.0 ''\")\n"
        "r('done 3')\n"
        "loc['exit_now'](0)\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert "sys._getframe is not allowed in the sandbox" in verdict.tests[0].message
    await assert_still_works(verifier)


async def test_the_audit_hook_cannot_be_switched_off(verifier: PythonTestsVerifier) -> None:
    # /tmp/review/exploit3.py: the hook's blocked set was a mutable default of a module function.
    candidate = (
        "import sys, gc\n"
        "sys.modules['__main__']._guard.__defaults__ = (frozenset(),)\n"
        "n = len(gc.get_objects())\n"
        "def add(a, b):\n"
        "    return n\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert "module '__main__' has no attribute '_guard'" in verdict.tests[0].message
    # Nor can a hook of the candidate's be added, to watch what the harness does.
    spy = (
        "import sys\n"
        "seen = []\n"
        "sys.addaudithook(lambda event, args: seen.append(event))\n"
        "open('/dev/null').close()\n"
        "def add(a, b):\n"
        "    return len(seen)\n"
    )
    verdict = await verifier.verify(TASK, spy)
    assert verdict.tests[0].message == "AssertionError: got 0"


async def test_what_the_candidate_can_reach_leads_nowhere(verifier: PythonTestsVerifier) -> None:
    # exit's globals, the __main__ module: both were ways back into the harness's globals.
    candidate = (
        "import sys\n"
        "def add(a, b):\n"
        "    main = sorted(k for k in vars(sys.modules['__main__']) if not k.startswith('__'))\n"
        "    return sorted(exit.__globals__) + main + sorted(exit.__globals__['__builtins__'])\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert verdict.tests[0].message == "AssertionError: got ['__builtins__', 'exit', 'SystemExit']"


@pytest.mark.parametrize("isolation", ["full", "basic"])
async def test_intercepting_the_report_gives_nothing_to_forge_with(isolation: str) -> None:
    if isolation == "full" and not ROOT:
        pytest.skip("full isolation needs root")
    # Put a pipe in place of every open descriptor, read what the harness reports into it,
    # then write pass lines with the same prefix to the real report. Against a nonce written on
    # every line this passes; against per-line MACs it cannot.
    candidate = (
        "import os\n"
        "def is_open(fd):\n"
        "    try:\n"
        "        return os.fstat(fd) is not None\n"
        "    except OSError:\n"
        "        return False\n"
        "intercepted = {}\n"
        "for fd in [fd for fd in range(3, 64) if is_open(fd)]:\n"
        "    saved = os.dup(fd)\n"
        "    r, w = os.pipe()\n"
        "    os.set_blocking(r, False)\n"
        "    os.dup2(w, fd)\n"
        "    intercepted[fd] = (saved, r)\n"
        "def add(a, b):\n"
        "    read = []\n"
        "    for saved, r in intercepted.values():\n"
        "        try:\n"
        "            data = os.read(r, 65536).decode(errors='replace')\n"
        "        except OSError:\n"
        "            continue\n"
        "        for line in data.splitlines():\n"
        "            read.append(line.split(' ', 1)[1])\n"
        "            prefix = line.split(' ')[0]\n"
        "            for forged in ['loaded', \"end 0 ok 0.0 ''\", \"end 1 ok 0.0 ''\", \"end 2 ok 0.0 ''\", 'done 3']:\n"
        "                os.write(saved, f'{prefix} {forged}\\n'.encode())\n"
        "    os.write(1, f'intercepted {read}\\n'.encode())\n"
        "    os._exit(0)\n"
    )
    box = Sandbox(Limits(timeout_s=5), isolation=isolation)  # type: ignore[arg-type]
    try:
        verdict = await PythonTestsVerifier(Limits(timeout_s=5), sandbox=box).verify(TASK, candidate)
        assert not verdict.passed
        assert verdict.score == 0.0
        # It did intercept the harness's report: the line written after the candidate loaded.
        assert "intercepted ['loaded']" in verdict.details["stdout"]
    finally:
        box.close()


async def test_the_report_key_is_nowhere_the_candidate_can_read(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = bytes(range(16))
    monkeypatch.setattr("forkpath.verifiers._sandbox.secrets.token_bytes", lambda n: key[:n])
    # Everything readable from inside: the descriptors, the working directory and its parent,
    # the environment and the command line.
    candidate = (
        "import os\n"
        "seen = [repr(dict(os.environ))]\n"
        "paths = [f'/proc/self/fd/{fd}' for fd in range(64)] + ['/proc/self/cmdline', '/proc/self/environ']\n"
        "for base in ('.', '..'):\n"
        "    try:\n"
        "        paths += [os.path.join(base, name) for name in os.listdir(base)]\n"
        "    except OSError:\n"
        "        pass\n"
        "for path in paths:\n"
        "    try:\n"
        "        with open(path, 'rb') as f:\n"
        "            seen.append(f.read(1 << 20).hex() + ' ' + f.name)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('\\n'.join(seen))\n" + GOOD
    )
    for isolation in ("auto", "basic"):
        box = sandbox if isolation == "auto" else Sandbox(Limits(timeout_s=5), isolation="basic")
        try:
            verdict = await PythonTestsVerifier(Limits(timeout_s=5), sandbox=box).verify(TASK, candidate)
        finally:
            if box is not sandbox:
                box.close()
        assert verdict.passed, verdict.summary()
        stdout = verdict.details["stdout"]
        assert "/proc/self/cmdline" in stdout  # it did read what it could
        assert key.hex() not in stdout  # as bytes, hex-encoded by the candidate
        assert key.hex().encode().hex() not in stdout  # as the hex text the job carried


async def test_a_fork_coming_back_into_the_tests_has_no_say(verifier: PythonTestsVerifier) -> None:
    candidate = (
        "import os\n"
        "def add(a, b):\n"
        "    if os.fork() == 0:\n"
        "        return a + b  # the child carries on with the tests, with the right answer\n"
        "    os.wait()\n"
        "    return 999\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert reasons(verdict) == ["wrong_answer"] * 3


# -- objects that lie about their value ----------------------------------------------------------
LIARS = {
    "__eq__ always True": (
        "class A:\n"
        "    def __eq__(self, other): return True\n"
        "    def __sub__(self, other): return 0\n"
        "    def __rsub__(self, other): return 0\n"
        "def add(a, b): return A()\n"
    ),
    "int subclass": "class I(int):\n    def __eq__(self, other): return True\ndef add(a, b): return I(7)\n",
    "float subclass": (
        "class F(float):\n"
        "    def __eq__(self, other): return True\n"
        "    def __sub__(self, other): return 0.0\n"
        "def add(a, b): return F(7)\n"
    ),
    "metaclass posing as int": (
        "class M(type):\n"
        "    def __eq__(cls, other): return True\n"
        "    def __hash__(cls): return hash(int)\n"
        "class A(metaclass=M):\n"
        "    def __eq__(self, other): return True\n"
        "def add(a, b): return A()\n"
    ),
    "liar inside a list": (
        "class A:\n    def __eq__(self, other): return True\ndef add(a, b): return [A()][0:1][0]\n"
    ),
}


@pytest.mark.parametrize("liar", LIARS, ids=list(LIARS))
async def test_objects_that_lie_about_equality_fail(verifier: PythonTestsVerifier, liar: str) -> None:
    verdict = await verifier.verify(TASK, LIARS[liar])
    assert not verdict.passed
    assert verdict.score == 0.0
    assert "only built-in values are accepted" in verdict.tests[0].message


async def test_liars_fail_asserts_that_name_the_entry_point(verifier: PythonTestsVerifier) -> None:
    task = Task(id="add", prompt="", kind="code", entry_point="add", asserts=["assert add(1, 2) == 3"])
    verdict = await verifier.verify(task, LIARS["__eq__ always True"])
    assert not verdict.passed
    assert "only built-in values are accepted" in verdict.tests[0].message
    assert (await verifier.verify(task, GOOD)).passed
