"""``forkpath batch`` as a user runs it: the store (its fallback, Redis dying mid-run), the output
folder, the batch-wide limits. Every failure is one line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = ", ".join(f'"q{i}": ["The answer is {i}."]' for i in range(10))
FLOW = f"""\
name: cli-batch
models:
  default: {{model: fake/m, options: {{latency_s: LATENCY, script: {{{SCRIPT}}}}}}}
verifier: math_answer
nodes:
  sample:
    strategy: best_of_n
    params: {{n: 4, temperature: 1.0, early_stop: false}}
edges:
  - {{from: sample, to: end}}
dataset: {{name: jsonl, path: d.jsonl, kind: math, fields: {{prompt: question, answer: gold}}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "redis-server exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on port {port}")


def setup(folder: Path, *, latency: float = 0.0, store: str = "") -> Path:
    with (folder / "d.jsonl").open("w") as f:
        for i in range(10):
            f.write(json.dumps({"id": f"t{i}", "question": f"q{i}: what is {i}?", "gold": i}) + "\n")
    flow = folder / "flow.yaml"
    flow.write_text(FLOW.replace("LATENCY", str(latency)) + (f"store: {store}\n" if store else ""))
    return flow


def forkpath(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forkpath._cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "never retrieved" not in stderr
    return lines[0]


def results(folder: Path) -> list[dict[str, object]]:
    path = folder / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own (never the shared one), without persistence."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_redis_dying_mid_run_is_one_line_and_keeps_the_results(
    tmp_path: Path, private_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, redis = private_redis
    setup(tmp_path, latency=0.2, store=f'{{url: "{url}"}}')
    cmd = [
        sys.executable,
        "-m",
        "forkpath._cli",
        "batch",
        "flow.yaml",
        "--out",
        "out",
        "-j",
        "2",
        "--no-report",
    ]
    batch = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(results(tmp_path / "out")) < 2:
        assert batch.poll() is None, "the batch ended before Redis could be killed"
        time.sleep(0.05)
    redis.send_signal(signal.SIGKILL)  # mid-run: tasks in flight are using the store
    redis.wait()
    before = results(tmp_path / "out")
    _, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 2
    line = one_line(stderr)  # not ~130 lines of asyncio and redis tracebacks
    assert line.startswith("error: ") and f"{url} unreachable" in line, line
    after = results(tmp_path / "out")
    assert after[: len(before)] == before and 2 <= len(after) < 10  # what was written stays
    assert all(r["status"] == "ok" for r in after)  # a dead store is not recorded as the tasks' error

    # Redis back (empty): the rerun resumes from results.jsonl and runs each task once.
    port = url.rsplit(":", 1)[1].split("/")[0]
    revived = subprocess.Popen(
        ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(int(port), revived)
        done = forkpath(*cmd[3:], cwd=tmp_path)
    finally:
        revived.kill()
        revived.wait()
    assert done.returncode == 0, done.stderr
    assert f"{10 - len(after)} run, {len(after)} already done (resumed), of 10" in done.stdout
    assert sorted(r["task_id"] for r in results(tmp_path / "out")) == [f"t{i}" for i in range(10)]


def test_batch_honours_the_stores_fallback_as_run_does(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    fallback = tmp_path / "fallback.db"
    setup(tmp_path, store=f'{{url: "{dead}", fallback: "sqlite://{fallback}"}}')
    ran = forkpath("batch", "flow.yaml", "--out", "out", "--limit", "3", "--no-report", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    warning = one_line(ran.stderr)
    assert f"{dead} unreachable" in warning and f"falling back to sqlite://{fallback}" in warning
    assert "3 run, 0 already done (resumed), of 3" in ran.stdout

    stats = forkpath("store", "stats", "--store", str(fallback), "--namespace", "out", "--json", cwd=tmp_path)
    assert json.loads(stats.stdout)["namespaces"][0]["results"] == 3  # the results went to the fallback

    single = forkpath("run", "flow.yaml", "--task", "gsm8k/0", "--json", cwd=tmp_path)
    assert single.returncode == 0 and one_line(single.stderr) == warning  # the same helper, the same line

    (tmp_path / "flow.yaml").write_text(
        (tmp_path / "flow.yaml").read_text().replace(f', fallback: "sqlite://{fallback}"', "")
    )
    refused = forkpath("batch", "flow.yaml", "--out", "other", "--no-report", cwd=tmp_path)
    assert refused.returncode == 2 and f"{dead} unreachable" in one_line(refused.stderr)


def test_an_unusable_out_is_one_line_before_any_task_starts(tmp_path: Path) -> None:
    setup(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    cases = [
        ("a-file", "--out a-file is a file, not a folder"),
        ("a-file/out", "--out a-file/out is inside a-file, which is a file"),
    ]
    if not os.access("/sys", os.W_OK):  # sysfs refuses new entries, even to root
        cases += [
            ("/sys", "--out /sys is not writable"),
            ("/sys/forkpath-out", "--out /sys/forkpath-out cannot be created"),
        ]
    for out, message in cases:
        proc = forkpath("batch", "flow.yaml", "--out", out, cwd=tmp_path)
        assert proc.returncode == 2 and message in one_line(proc.stderr), (out, proc.stderr)
        assert "run, " not in proc.stdout  # no task ran
    assert not (tmp_path / "runs").exists() and not (tmp_path / "traces").exists()

    assert forkpath("batch", "flow.yaml", "--out", "out", "--limit", "1", cwd=tmp_path).returncode == 0
    report = forkpath("report", "out", "--out", "a-file", cwd=tmp_path)
    assert report.returncode == 2 and "--out a-file is a file, not a folder" in one_line(report.stderr)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_a_read_only_out_folder_is_one_line(tmp_path: Path) -> None:
    setup(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = forkpath("batch", "flow.yaml", "--out", "locked", cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    assert proc.returncode == 2 and "--out locked is not writable" in one_line(proc.stderr)


def test_batch_wide_limits_and_rerunning_budget_stopped_tasks_from_the_cli(tmp_path: Path) -> None:
    flow = setup(tmp_path)
    limited = forkpath("batch", "flow.yaml", "--out", "out", "-j", "1", "--max-calls", "6", cwd=tmp_path)
    assert limited.returncode == 0, limited.stderr
    line = " ".join(limited.stdout.split())
    assert "2 run, 0 already done (resumed), of 10" in line  # 4 calls a task: spent during the second
    assert "stopped: batch_budget (calls limit reached; 8 not started: a rerun runs them)" in line
    assert (tmp_path / "out" / "report.md").exists()

    flow.write_text(flow.read_text() + "budget: {max_calls: 3}\n")  # now each task gets three calls
    per_task = forkpath(
        "batch", "flow.yaml", "--out", "per-task", "--limit", "4", "--no-report", cwd=tmp_path
    )
    line = " ".join(per_task.stdout.split())
    assert "4 run, 0 already done (resumed), of 4" in line and "4 stopped by their own budget" in line
    assert "stopped: done" in line
    assert {(r["stopped"], r["n_candidates"]) for r in results(tmp_path / "per-task")} == {("budget", 3)}
    again = forkpath("batch", "flow.yaml", "--out", "per-task", "--limit", "4", "--no-report", cwd=tmp_path)
    assert "0 run, 4 already done (resumed), of 4" in " ".join(again.stdout.split())
    rerun = forkpath(
        "batch",
        "flow.yaml",
        "--out",
        "per-task",
        "--limit",
        "4",
        "--rerun-budget-stopped",
        "--no-report",
        cwd=tmp_path,
    )
    assert "4 run, 0 already done (resumed), of 4" in " ".join(rerun.stdout.split())


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_folder_named_like_an_earlier_run_holds_and_reports_only_its_own_tasks(
    tmp_path: Path, backend: str
) -> None:
    import uuid

    url = str(tmp_path / "store.db")
    if backend == "redis":
        import redis

        url = os.environ.get("FORKPATH_TEST_REDIS", "redis://127.0.0.1:6379/15")
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        except redis.RedisError as e:
            pytest.skip(f"no Redis at {url}: {e}")
    run_id = f"fptest-{uuid.uuid4().hex[:12]}"  # the folders' name
    setup(tmp_path, store=f'{{url: "{url}", cache: {{namespace: {run_id}}}}}')
    try:
        first = forkpath(
            "batch", "flow.yaml", "--out", f"a/{run_id}", "--limit", "3", "--no-report", cwd=tmp_path
        )
        assert first.returncode == 0, first.stderr
        again = forkpath(
            "batch", "flow.yaml", "--out", f"b/{run_id}", "--offset", "2", "--limit", "3", cwd=tmp_path
        )
        assert again.returncode == 0, again.stderr
        assert "2 run, 1 already done (resumed), of 3" in " ".join(again.stdout.split())
        assert sorted(r["task_id"] for r in results(tmp_path / "b" / run_id)) == ["t2", "t3", "t4"]
        assert f"| {run_id} | 3 |" in (tmp_path / "b" / run_id / "report.md").read_text()

        subset = forkpath("batch", "flow.yaml", "--out", f"a/{run_id}", "--limit", "1", cwd=tmp_path)
        assert "0 run, 1 already done (resumed), of 1" in " ".join(subset.stdout.split())
        assert f"| {run_id} | 1 |" in (tmp_path / "a" / run_id / "report.md").read_text()
        assert len(results(tmp_path / "a" / run_id)) == 3  # the folder's history stays
    finally:
        forkpath("store", "clear", "--store", url, "-n", run_id, "--what", "all", "--yes", cwd=tmp_path)
