"""Hostile candidates are contained and reported; the verifier keeps working; the host is unharmed."""

from __future__ import annotations

import os
import socket
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


async def test_parent_environment_is_not_readable(
    verifier: PythonTestsVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-fake-{uuid.uuid4().hex}"
    monkeypatch.setenv("FORKPATH_FAKE_SECRET", secret)
    candidate = (
        "import os\n"
        "seen = [repr(dict(os.environ))]\n"
        f"for path in ['/proc/{os.getpid()}/environ', '/proc/1/environ', '/proc/self/environ']:\n"
        "    try:\n"
        "        seen.append(open(path, 'rb').read().decode(errors='replace'))\n"
        "    except OSError as e:\n"
        "        seen.append(type(e).__name__)\n"
        "print('\\n'.join(seen))\n" + GOOD
    )
    verdict = await verifier.verify(TASK, candidate)
    stdout = verdict.details["stdout"]
    assert "PATH" in stdout  # it did read its own environment
    assert secret not in stdout
    assert "FORKPATH_FAKE_SECRET" not in stdout
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
    assert f"refused {os.getcwd()}/{tag} PermissionError" in stdout
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
    # A tracer that jumps the caller (the test) past its assert line on every line event.
    candidate = (
        "import sys\n"
        "def add(a, b):\n"
        "    caller = sys._getframe(1)\n"
        "    def tracer(frame, event, arg):\n"
        "        if event == 'line' and frame is caller:\n"
        "            try:\n"
        "                frame.f_lineno = frame.f_lineno + 1\n"
        "            except ValueError:\n"
        "                pass\n"
        "        return tracer\n"
        "    caller.f_trace = tracer\n"
        "    sys.settrace(tracer)\n"
        "    return 999\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert not verdict.passed
    assert reasons(verdict) == ["exception"] * 3
    assert "sys.settrace is not allowed in the sandbox" in verdict.tests[0].message
    await assert_still_works(verifier)


async def test_reaching_interpreter_internals_is_refused(verifier: PythonTestsVerifier) -> None:
    candidate = (
        "import ctypes, gc\n"
        "def add(a, b):\n"
        "    found = []\n"
        "    for attempt in (lambda: ctypes.pythonapi.PyEval_SetTrace, gc.get_objects,\n"
        "                    lambda: ctypes.c_long.from_address(id(a))):\n"
        "        try:\n"
        "            attempt()\n"
        "        except RuntimeError as e:\n"
        "            found.append(str(e))\n"
        "    return len(found)\n"
    )
    verdict = await verifier.verify(TASK, candidate)
    assert verdict.tests[1].message == "AssertionError: got 3"  # all three attempts refused
