"""The sandbox runner: programs on stdin, limits, isolation, the bounded pool."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from forkpath import VerifierError
from forkpath.verifiers import Limits, Sandbox, run_program
from forkpath.verifiers._sandbox import BASIC_ISOLATION, FULL_ISOLATION, _exposures

ROOT = os.geteuid() == 0


async def test_runs_a_program_on_stdin(sandbox: Sandbox) -> None:
    run = await sandbox.run_program("a, b = map(int, input().split())\nprint(a + b)", "20 22\n")
    assert run.ok
    assert run.stdout == "42\n"
    assert run.exit_code == 0
    assert run.error is None


async def test_module_level_run_program_uses_the_default_sandbox() -> None:
    run = await run_program("import sys\nprint(sys.stdin.read()[::-1], end='')", "abc")
    assert run.stdout == "cba"


async def test_exit_codes_and_exit_builtins(sandbox: Sandbox) -> None:
    assert (await sandbox.run_program("import sys\nsys.exit(3)")).exit_code == 3
    assert (await sandbox.run_program("print('x')\nexit()")).exit_code == 0  # works without site
    quitting = await sandbox.run_program("quit('bye')")
    assert quitting.exit_code == 1
    assert "bye" in quitting.stderr


async def test_uncaught_exception_reports_its_last_traceback_line(sandbox: Sandbox) -> None:
    run = await sandbox.run_program("x = 1\nraise ValueError('bad value')\n")
    assert run.exit_code == 1
    assert run.error == "exception"
    assert run.message == "ValueError: bad value (solution.py, line 2)"
    assert "Traceback" in run.stderr


async def test_syntax_error_is_reported_as_such(sandbox: Sandbox) -> None:
    run = await sandbox.run_program("def f(:\n    pass\n")
    assert run.error == "syntax_error"
    assert "SyntaxError" in run.message


async def test_wall_clock_timeout_kills_the_run(sandbox: Sandbox) -> None:
    run = await sandbox.run_program("while True:\n    pass\n", limits=Limits(timeout_s=0.5))
    assert run.timed_out
    assert run.error == "timeout"
    assert run.exit_code is None


async def test_cpu_limit_stops_a_busy_child_the_timeout_would_miss(sandbox: Sandbox) -> None:
    # CPU limit 1 s, wall limit 20 s: only RLIMIT_CPU can end this in time.
    run = await sandbox.run_program("while True:\n    pass\n", limits=Limits(timeout_s=20, cpu_s=1))
    assert not run.timed_out
    assert run.error == "timeout"
    assert "CPU" in run.message


async def test_memory_limit_raises_memory_error(sandbox: Sandbox) -> None:
    run = await sandbox.run_program("block = bytearray(600 * 2**20)\n", limits=Limits(memory_mb=256))
    assert run.error == "memory"
    assert run.message.startswith("MemoryError")


async def test_output_is_capped_by_the_file_size_limit(sandbox: Sandbox) -> None:
    run = await sandbox.run_program(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", limits=Limits(max_output_mb=1)
    )
    assert run.error == "output_limit"
    assert len(run.stdout) <= 2**20


async def test_environment_is_scrubbed(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORKPATH_FAKE_SECRET", "sk-do-not-leak")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-also-secret")
    run = await sandbox.run_program("import os\nprint(sorted(os.environ))")
    assert run.ok
    assert "FORKPATH_FAKE_SECRET" not in run.stdout
    assert "OPENAI_API_KEY" not in run.stdout
    assert "sk-" not in run.stdout


async def test_each_run_gets_a_fresh_empty_working_directory(sandbox: Sandbox) -> None:
    code = "import os\nprint(os.listdir('.'))\nopen('left_behind.txt', 'w').write('x')\n"
    first = await sandbox.run_program(code)
    second = await sandbox.run_program(code)
    assert first.stdout == second.stdout == "[]\n"


@pytest.mark.skipif(not ROOT, reason="namespaces and the uid drop need root")
async def test_full_isolation_when_root(sandbox: Sandbox) -> None:
    run = await sandbox.run_program("import os\nprint(os.getuid(), os.getpid(), os.getppid())")
    uid, pid, ppid = map(int, run.stdout.split())
    assert run.isolation == FULL_ISOLATION == sandbox.isolation
    assert uid >= 1_000_000  # a random unprivileged uid
    assert (pid, ppid) == (1, 0)  # pid 1 of its own pid namespace


@pytest.mark.parametrize("max_parallel", [1, 2])
async def test_runs_go_in_parallel_up_to_max_parallel(max_parallel: int) -> None:
    box = Sandbox(Limits(timeout_s=10), max_parallel=max_parallel)
    in_flight = 0
    peak = 0
    original = box._execute

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(*args, **kwargs)
        finally:
            in_flight -= 1

    box._execute = counting
    try:
        runs = await asyncio.gather(
            *(box.run_program("import time\ntime.sleep(0.2)\nprint('done')") for _ in range(5))
        )
    finally:
        box.close()
    assert [r.stdout for r in runs] == ["done\n"] * 5
    assert peak == max_parallel


async def test_basic_isolation_still_runs_and_says_so() -> None:
    box = Sandbox(Limits(timeout_s=5), isolation="basic")
    try:
        run = await box.run_program("print('plain')")
    finally:
        box.close()
    assert run.stdout == "plain\n"
    assert run.isolation == "rlimits,session"


def test_unknown_isolation_is_a_clear_error() -> None:
    with pytest.raises(VerifierError, match="unknown sandbox isolation 'strict'"):
        Sandbox(isolation="strict")


def test_exposures_find_directories_others_cannot_enter() -> None:
    base = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(base, 0o755)
        hidden = os.path.join(base, "private")
        needed = os.path.join(hidden, "python", "lib")
        os.makedirs(needed)
        os.chmod(hidden, 0o700)
        assert _exposures([needed]) == [(hidden, [needed])]
        os.chmod(hidden, 0o755)
        assert _exposures([needed]) == []
    finally:
        shutil.rmtree(base)


async def test_the_server_restarts_after_it_dies(sandbox: Sandbox) -> None:
    box = Sandbox(Limits(timeout_s=5))
    try:
        assert (await box.run_program("print(1)")).stdout == "1\n"
        server = box._servers[False]
        server._proc.kill()
        server._proc.wait()
        for _ in range(50):  # the reader thread notices the closed socket
            if not server.alive:
                break
            await asyncio.sleep(0.02)
        assert (await box.run_program("print(2)")).stdout == "2\n"
    finally:
        box.close()


async def test_third_party_packages_are_opt_in(sandbox: Sandbox) -> None:
    plain = await sandbox.run_program("import numpy")
    assert plain.error == "exception"
    assert "No module named 'numpy'" in plain.message
    with_site = await sandbox.run_program(
        "import numpy\nprint(numpy.ones(2).sum())", limits=Limits(timeout_s=30, site_packages=True)
    )
    assert with_site.stdout == "2.0\n", with_site.stderr


async def test_a_run_that_cannot_be_set_up_is_a_verifier_error() -> None:
    box = Sandbox(Limits(timeout_s=5))
    prepare = box._job

    def broken(*args: object) -> dict:
        job = prepare(*args)
        (job.get("isolate") or job)["limits"]["RLIMIT_BOGUS"] = 1
        return job

    try:
        await box.run_program("pass")  # probe first, with the real set-up
        box._job = broken
        with pytest.raises(VerifierError, match=r"could not set up a run: AttributeError: .*RLIMIT_BOGUS"):
            await box.run_program("print('never runs')")
    finally:
        box.close()


def test_a_forked_copy_of_the_caller_gets_its_own_server() -> None:
    box = Sandbox(Limits(timeout_s=10))
    try:
        assert asyncio.run(box.run_program("print('parent')")).stdout == "parent\n"
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                out = asyncio.run(box.run_program("print('child')")).stdout.encode()
            except BaseException as e:
                out = repr(e).encode()
            os.write(write, out)
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as f:
            assert f.read() == b"child\n"
        assert asyncio.run(box.run_program("print('parent again')")).stdout == "parent again\n"
    finally:
        box.close()


async def test_isolation_below_full_is_logged_once_per_sandbox(caplog: pytest.LogCaptureFixture) -> None:
    box = Sandbox(Limits(timeout_s=5), isolation="basic")
    try:
        with caplog.at_level(logging.WARNING, logger="forkpath.verifiers._sandbox"):
            assert (await box.run_program("print(1)")).stdout == "1\n"
            assert (await box.run_program("print(2)")).stdout == "2\n"
    finally:
        box.close()
    warnings = [r.getMessage() for r in caplog.records if "not full" in r.getMessage()]
    assert len(warnings) == 1
    assert "isolation is rlimits,session, not full (isolation='basic' was asked for)" in warnings[0]


async def test_full_isolation_refuses_to_run_without_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        "forkpath.verifiers._sandbox._namespaces_possible",
        lambda: (False, "namespaces and the uid drop need root"),
    )
    strict = Sandbox(Limits(timeout_s=5), isolation="full")
    with pytest.raises(
        VerifierError, match=r"full isolation was required .*: namespaces and the uid drop need root"
    ):
        await strict.run_program("print('never runs')")
    assert strict._servers == {}  # no fork server was even started
    auto = Sandbox(Limits(timeout_s=5))  # the default runs anyway, and says so
    try:
        with caplog.at_level(logging.WARNING, logger="forkpath.verifiers._sandbox"):
            run = await auto.run_program("print('ran')")
    finally:
        auto.close()
    assert (run.stdout, run.isolation) == ("ran\n", BASIC_ISOLATION)
    assert any("namespaces and the uid drop need root" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not ROOT, reason="namespaces and the uid drop need root")
async def test_full_isolation_runs_where_it_is_available() -> None:
    box = Sandbox(Limits(timeout_s=5), isolation="full")
    try:
        run = await box.run_program("print('isolated')")
    finally:
        box.close()
    assert (run.stdout, run.isolation) == ("isolated\n", FULL_ISOLATION)


LEAVES_PROCESSES = """
import os, time

def spawn(detach):
    r, w = os.pipe()
    if os.fork() == 0:
        if detach:
            os.setsid()  # out of the run's process group
            if os.fork() != 0:
                os._exit(0)  # the middle process leaves: its child is an orphan
        os.write(w, str(os.getpid()).encode())
        time.sleep(60)
        os._exit(0)
    os.close(w)
    return int(os.read(r, 20))

print(spawn(False), spawn(True))
"""


async def test_what_a_basic_run_leaves_behind_is_killed_when_it_ends() -> None:
    box = Sandbox(Limits(timeout_s=10), isolation="basic")
    try:
        run = await box.run_program(LEAVES_PROCESSES)
        assert run.ok, run.stderr
        pids = [int(pid) for pid in run.stdout.split()]
        assert len(pids) == 2
        # Gone before the run's result came back: the run's group, and the orphan the server
        # adopted as the subreaper of its runs.
        assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
        assert (await box.run_program("print('next')")).stdout == "next\n"
    finally:
        box.close()
