"""Batch runs: results as they complete, resume after a kill, errors recorded, bad lines, metrics."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from forkpath import ConfigError, DatasetSpec, load_tasks
from forkpath.batch import BatchConfig, pass_at_k, read_records, run_batch, summarize, write_report
from forkpath.flows import Flow

FLOW = """\
name: batch-test
models:
  default: {model: fake/m, options: {latency_s: LATENCY, script: {"q0": ["The answer is 0."], "q1": ["The answer is 1."],
    "q2": ["The answer is 7."], "q3": ["The answer is 3."], "q4": ["The answer is 4."], "q5": ["The answer is 5."],
    "q6": ["The answer is 6."], "q7": ["The answer is 7."], "q8": ["The answer is 8."], "q9": ["The answer is 9."]},
    fail_on: {"q5": "simulated provider rejection"}}}
verifier: math_answer
nodes:
  sample:
    strategy: best_of_n
    params: {n: 2, temperature: 1.0, early_stop: false}
edges:
  - {from: sample, to: end}
"""


def write_dataset(path: Path, n: int = 10) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"t{i}", "question": f"q{i}: what is {i}?", "gold": i}) + "\n")
    return path


def dataset(path: Path, **kw: object) -> DatasetSpec:
    return DatasetSpec(
        name="jsonl", path=str(path), kind="math", fields={"prompt": "question", "answer": "gold"}, **kw
    )  # type: ignore[arg-type]


async def test_results_are_written_and_errors_recorded(tmp_path: Path) -> None:
    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl")))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    seen: list[str] = []
    summary = await run_batch(
        flow,
        tasks,
        BatchConfig(run_id="r", out_dir=tmp_path / "out", concurrency=3),
        on_record=lambda r: seen.append(r.task_id),
    )
    records = {r.task_id: r for r in read_records(tmp_path / "out")}
    assert summary.ran == 10 and sorted(seen) == sorted(records) == [f"t{i}" for i in range(10)]
    assert records["t5"].status == "error"
    assert records["t5"].error == "BadRequestError: fake/m: simulated provider rejection"
    assert records["t2"].passed is False and records["t3"].passed is True
    metrics = summarize(list(records.values()))
    assert metrics.errors == 1 and metrics.accuracy == pytest.approx(8 / 10)
    report = write_report([tmp_path / "out"])
    assert "| r | 10 | 0.800 |" in report.read_text()
    assert (tmp_path / "out" / "report.html").exists() and (
        tmp_path / "out" / "accuracy_vs_cost.png"
    ).exists()


async def test_rerun_skips_finished_tasks_and_repairs_a_torn_line(tmp_path: Path) -> None:
    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl")))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    config = BatchConfig(run_id="r", out_dir=tmp_path / "out")
    await run_batch(flow, tasks[:4], config)
    with (tmp_path / "out" / "results.jsonl").open("a") as f:
        f.write('{"run_id": "r", "task_id": "t4", "sta')  # killed mid-write
    summary = await run_batch(flow, tasks, config)
    assert (summary.skipped, summary.ran) == (4, 6)
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["task_id"] for line in lines) == [f"t{i}" for i in range(10)]


def test_a_killed_run_resumes_with_exactly_one_result_per_task(tmp_path: Path) -> None:
    write_dataset(tmp_path / "d.jsonl")
    (tmp_path / "flow.yaml").write_text(
        FLOW.replace("LATENCY", "0.4")
        + "dataset: {name: jsonl, path: d.jsonl, kind: math, fields: {prompt: question, answer: gold}}\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "forkpath._cli",
        "batch",
        "flow.yaml",
        "--out",
        "out",
        "--concurrency",
        "1",
        "--no-report",
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = tmp_path / "out" / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 3):
        assert proc.poll() is None, "the batch ended before it could be killed"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(line)["task_id"] for line in results.read_text().splitlines() if line.strip()]
    assert 3 <= len(before) < 10
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{10 - len(before)} run, {len(before)} already done (resumed), of 10" in " ".join(
        done.stdout.split()
    )
    after = [json.loads(line)["task_id"] for line in results.read_text().splitlines()]
    assert sorted(after) == [f"t{i}" for i in range(10)]  # each task exactly once
    assert after[: len(before)] == before


def test_malformed_dataset_lines_stop_or_skip(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "d.jsonl", 3)
    with path.open("a") as f:
        f.write('{"id": "t3", "question": "q3"\n')  # broken JSON on line 4
        f.write('{"id": "t4", "gold": 4}\n')  # no question on line 5
        f.write(json.dumps({"id": "t5", "question": "q5", "gold": 5}) + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: not JSON"):
        load_tasks(dataset(path))
    kept = load_tasks(dataset(path, on_bad_line="skip"))
    assert [t.id for t in kept] == ["t0", "t1", "t2", "t5"]
    assert kept[0].answer == "0" and kept[0].kind == "math"


def test_cli_reports_a_bad_line_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "fine"}\n{"prompt": \n')
    (tmp_path / "flow.yaml").write_text(FLOW.replace("LATENCY", "0"))
    proc = subprocess.run(
        [sys.executable, "-m", "forkpath._cli", "batch", "flow.yaml", "--dataset", "d.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "d.jsonl:2: not JSON" in proc.stderr


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    with pytest.raises(ValueError, match="pass@3 needs at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_builtin_datasets() -> None:
    humaneval = load_tasks(DatasetSpec(name="humaneval", offset=2, limit=2))
    assert [t.id for t in humaneval] == ["HumanEval/2", "HumanEval/3"] and humaneval[0].entry_point
    gsm8k = load_tasks(DatasetSpec(name="gsm8k", limit=1))
    assert gsm8k[0].id == "gsm8k/0" and gsm8k[0].answer == "18" and gsm8k[0].kind == "math"


async def test_failed_tasks_run_again_on_resume_and_the_last_record_wins(tmp_path: Path) -> None:
    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl", 6)))
    failing = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    config = BatchConfig(run_id="r", out_dir=tmp_path / "out")
    await run_batch(failing, tasks, config)
    assert {r.task_id: r.status for r in read_records(tmp_path / "out")}["t5"] == "error"
    fixed = Flow.from_yaml_text(
        FLOW.replace("LATENCY", "0").replace('"q5": "simulated provider rejection"', '"zz": "x"')
    )
    summary = await run_batch(fixed, tasks, config)
    assert (summary.skipped, summary.ran) == (5, 1)  # only the failed task ran again
    records = {r.task_id: r for r in read_records(tmp_path / "out")}
    assert records["t5"].status == "ok" and records["t5"].passed is True
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 7  # history kept, last wins


def test_readers_never_write_and_bad_lines_are_set_aside(tmp_path: Path) -> None:
    from forkpath.batch import ResultsFile

    out = tmp_path / "out"
    out.mkdir()
    good = '{"run_id": "r", "task_id": "a", "status": "ok", "passed": true}\n'
    foreign = '{"run_id": "r", "task_id": "b", "status": "ok", "from_the_future": 1}\n'
    torn = '{"run_id": "r", "task_id": "c", "sta'
    (out / "results.jsonl").write_text(good + foreign + torn)
    assert [r.task_id for r in read_records(out)] == ["a"]
    assert (out / "results.jsonl").read_text() == good + foreign + torn  # untouched by a reader
    ResultsFile(out / "results.jsonl").load(repair=True)
    assert (out / "results.jsonl").read_text() == good
    assert (out / "results.bad.jsonl").read_text() == foreign  # kept, not lost


async def test_results_reach_the_store_and_come_back_from_it(tmp_path: Path) -> None:
    from forkpath.store import open_store

    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl", 4)))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    store = open_store(str(tmp_path / "store.db"))
    try:
        await run_batch(flow, tasks, BatchConfig(run_id="shared", out_dir=tmp_path / "one"), store=store)
        assert await store.finished_ids("shared") == {"t0", "t1", "t2", "t3"}
        # Another machine, same run id, empty output folder: it finds the results in the store.
        summary = await run_batch(
            flow, tasks, BatchConfig(run_id="shared", out_dir=tmp_path / "two"), store=store
        )
        assert (summary.skipped, summary.ran) == (4, 0)
        assert sorted(r.task_id for r in read_records(tmp_path / "two")) == ["t0", "t1", "t2", "t3"]
    finally:
        await store.aclose()


async def test_a_changed_flow_does_not_resume_another_flows_results(tmp_path: Path) -> None:
    from forkpath.store import open_store

    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl", 3)))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    renamed = Flow.from_yaml_text(FLOW.replace("LATENCY", "0").replace("name: batch-test", "name: other"))
    changed = Flow.from_yaml_text(FLOW.replace("LATENCY", "0").replace("n: 2,", "n: 3,"))
    store = open_store(str(tmp_path / "store.db"))
    try:
        await run_batch(flow, tasks, BatchConfig(run_id="r", out_dir=tmp_path / "out"), store=store)
        # The name, dataset and store do not decide results: a renamed flow resumes.
        summary = await run_batch(renamed, tasks, BatchConfig(run_id="r", out_dir=tmp_path / "out"))
        assert (summary.skipped, summary.ran) == (3, 0)
        # A changed strategy parameter does: its results folder is refused, in one line ...
        with pytest.raises(ConfigError, match=r"results.jsonl: these results were made by a different flow"):
            await run_batch(changed, tasks, BatchConfig(run_id="r", out_dir=tmp_path / "out"), store=store)
        # ... and the store's results of the old flow under this run id are not taken for its own.
        summary = await run_batch(
            changed, tasks, BatchConfig(run_id="r", out_dir=tmp_path / "fresh"), store=store
        )
        assert (summary.skipped, summary.ran) == (0, 3)
        records = read_records(tmp_path / "fresh")
        fingerprints = {r.flow for r in records}
        assert len(fingerprints) == 1 and None not in fingerprints
        assert all(r.n_candidates == 3 for r in records if r.status == "ok")
    finally:
        await store.aclose()


def test_duplicate_task_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "x", "question": "a", "gold": 1}\n{"id": "x", "question": "b", "gold": 2}\n')
    with pytest.raises(ConfigError, match="task id 'x' appears twice"):
        load_tasks(dataset(path))


def test_report_of_an_empty_run_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "forkpath._cli", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no results yet" in proc.stderr


REDIS_URL = os.environ.get("FORKPATH_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def result_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    """A store on each backend and a run id of this test's own (results outlive a run in Redis)."""
    from forkpath import StoreError
    from forkpath.store import open_store

    run_id = f"fptest-{uuid.uuid4().hex[:12]}"
    try:
        store = open_store(str(tmp_path / "store.db") if request.param == "sqlite" else REDIS_URL)
    except StoreError as e:
        pytest.skip(f"no Redis at {REDIS_URL}: {e}")
    try:
        yield store, run_id
    finally:
        await store.clear(run_id, "results")
        await store.aclose()


async def test_a_reused_run_id_resumes_only_the_tasks_asked_for(
    tmp_path: Path, result_store: tuple[Any, str]
) -> None:
    store, run_id = result_store
    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl", 5)))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    await run_batch(flow, tasks[:3], BatchConfig(run_id=run_id, out_dir=tmp_path / "a" / run_id), store=store)
    assert await store.finished_ids(run_id) == {"t0", "t1", "t2"}

    # Another folder of the same name (the run id), other tasks: t2 comes from the store, t3 and
    # t4 run; t0 and t1 are the earlier invocation's and appear nowhere in this one.
    two = tmp_path / "b" / run_id
    seen: list[str] = []
    summary = await run_batch(
        flow,
        tasks[2:],
        BatchConfig(run_id=run_id, out_dir=two),
        store=store,
        on_record=lambda r: seen.append(r.task_id),
    )
    assert (summary.total, summary.skipped, summary.ran) == (3, 1, 2)
    assert sorted(seen) == ["t3", "t4"]
    lines = [json.loads(line) for line in (two / "results.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in lines) == ["t2", "t3", "t4"]  # one line each, nothing else
    assert {r["run_id"] for r in lines} == {run_id}
    report = write_report([two], tasks=[t.id for t in tasks[2:]]).read_text()
    assert f"| {run_id} | 3 |" in report

    # The first folder again, asked for one task of its own: nothing runs, nothing is appended,
    # and the report of this invocation is that task alone.
    one = tmp_path / "a" / run_id
    before = (one / "results.jsonl").read_text()
    summary = await run_batch(flow, tasks[1:2], BatchConfig(run_id=run_id, out_dir=one), store=store)
    assert (summary.total, summary.skipped, summary.ran) == (1, 1, 0)
    assert (one / "results.jsonl").read_text() == before
    assert f"| {run_id} | 1 |" in write_report([one], tasks=["t1"]).read_text()
    assert f"| {run_id} | 3 |" in write_report([one]).read_text()  # the folder holds three


async def test_stored_results_that_are_not_this_tasks_records_run_again(
    tmp_path: Path, result_store: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    store, run_id = result_store
    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl", 3)))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    await store.put_result(run_id, "t0", {"answer": "42", "correct": True})  # another writer's shape
    wrong = {"run_id": run_id, "task_id": "t2", "status": "ok", "answer": "2", "passed": True}
    await store.put_result(run_id, "t1", wrong)  # task t2's record filed under t1
    await store.put_result(run_id, "t2", {**wrong, "run_id": "elsewhere"})  # another run's record
    summary = await run_batch(flow, tasks, BatchConfig(run_id=run_id, out_dir=tmp_path / "out"), store=store)
    assert (summary.skipped, summary.ran) == (0, 3)  # none of them is taken as finished
    records = {r.task_id: r for r in read_records(tmp_path / "out")}
    assert sorted(records) == ["t0", "t1", "t2"] and all(r.run_id == run_id for r in records.values())
    assert records["t1"].answer == "The answer is 1." and records["t1"].passed is True
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"the result of task 't0' in run {run_id!r} is not a batch record" in w for w in warnings)
    assert any(f"the result stored for task 't1' in run {run_id!r} is task 't2'" in w for w in warnings)
    assert any(f"for task 't2' in run {run_id!r} is task 't2' of run 'elsewhere'" in w for w in warnings)
    assert await store.get_result(run_id, "t1") == records["t1"].model_dump(mode="json")  # replaced


async def test_an_unreadable_results_line_is_named_and_its_task_runs_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl", 3)))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    config = BatchConfig(run_id="r", out_dir=tmp_path / "out")
    await run_batch(flow, tasks, config)
    path = tmp_path / "out" / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    broken = lines[1].replace('"status":"ok"', '"status":"done"')
    path.write_text(lines[0] + broken + "{not json\n" + lines[2])
    summary = await run_batch(flow, tasks, config)
    lost = json.loads(broken)["task_id"]
    assert (summary.skipped, summary.ran) == (2, 1)
    assert sorted(r.task_id for r in read_records(tmp_path / "out")) == ["t0", "t1", "t2"]
    assert (tmp_path / "out" / "results.bad.jsonl").read_text() == broken + "{not json\n"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{path}:2: unreadable record (status: Input should be 'ok', 'error' or 'timeout')" in warnings[0]
    assert f"{path}:3: unreadable record (not JSON: " in warnings[1]
    assert all(w.endswith("moved to " + str(path.with_name("results.bad.jsonl"))) for w in warnings[:2])
    assert lost in {r.task_id for r in read_records(tmp_path / "out")}


async def test_a_store_dying_before_the_resume_stops_before_any_task(tmp_path: Path) -> None:
    from forkpath import StoreError
    from forkpath.store import open_store

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    tasks = load_tasks(dataset(write_dataset(tmp_path / "d.jsonl", 3)))
    flow = Flow.from_yaml_text(FLOW.replace("LATENCY", "0"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.025)
        store = open_store(url)
        config = BatchConfig(run_id="r", out_dir=tmp_path / "out")
        await run_batch(flow, tasks[:1], config, store=store)
        before = (tmp_path / "out" / "results.jsonl").read_text()
        server.kill()
        server.wait()
        with pytest.raises(StoreError, match=f"^{url}"):
            await run_batch(flow, tasks, config, store=store)
        assert (tmp_path / "out" / "results.jsonl").read_text() == before  # no task started
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        await store.aclose()
