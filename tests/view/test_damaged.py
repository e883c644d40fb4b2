"""Runs as they are found in the wild: a batch still running (the page follows it live), torn and
unreadable lines, a trace from another forkpath version, a runs folder that goes away."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from forkpath.server._view_runs import RecordsIndex, RunCatalog, TraceIndex

from ._runs import BON, SCRIPT_A, LiveServer, fake_batch, write_dataset
from .test_browser import visit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one")
    return fake_batch(root, "fake", SCRIPT_A, write_dataset(root / "tasks.jsonl"))


OLD_TRACE = [
    # what a version without flow/candidate events, and with other fields, wrote
    {"time": 1.0, "span": "sample", "type": "node", "node": "sample", "kind": "strategy", "phase": "start"},
    {
        "time": 1.1,
        "span": "best_of_n",
        "type": "strategy",
        "name": "best_of_n",
        "phase": "start",
        "params": {"n": 2},
    },
    {"time": 1.2, "span": "best_of_n", "type": "thought", "text": "a newer event type"},
    {"time": 1.3, "span": "best_of_n", "type": "model_call", "model": "old/m", "tokens": 12},  # old fields
    {
        "time": 1.4,
        "span": "best_of_n",
        "type": "verdict",
        "verifier": "math",
        "passed": True,
        "score": 1.0,
        "candidate_index": 1,
    },
    {"time": 1.45, "span": "best_of_n", "type": "verdict", "verifier": "math", "ok": True},  # old fields
    {
        "time": 1.5,
        "span": "best_of_n",
        "type": "strategy",
        "name": "best_of_n",
        "phase": "end",
        "info": {"votes": {"4": 2}},
    },
]


def damaged_folder(root: Path, fake_run: Path) -> Path:
    """A copy of a finished batch with a bad middle line and a torn last line, and an old flow run."""
    runs = root / "runs"
    shutil.copytree(fake_run, runs / "torn")
    results = runs / "torn" / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text(
        "".join(lines[:2]) + "{not json\n" + "".join(lines[2:]) + '{"run_id": "fake", "task_id": "t9", "sta'
    )
    (runs / "old").mkdir()
    (runs / "old" / "trace.jsonl").write_text("".join(json.dumps(e) + "\n" for e in OLD_TRACE))
    return runs


def test_torn_lines_and_old_traces_are_shown_with_what_was_skipped(
    browser: Any, fake_run: Path, tmp_path: Path, screenshots: Path
) -> None:
    runs = damaged_folder(tmp_path, fake_run)
    with LiveServer(runs) as live:
        assert visit(browser, live.url + "/") == []
        assert {
            r.get_attribute("data-run") for r in browser.find_elements(By.CSS_SELECTOR, "#runs-body tr")
        } == {
            "torn",
            "old",
        }
        assert visit(browser, live.url + "/runs/torn") == []
        notes = browser.find_element(By.CSS_SELECTOR, ".notes").text
        assert "1 unreadable line(s) skipped" in notes and "last line is incomplete" in notes
        assert len(browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")) == 6
        assert visit(browser, live.url + "/runs/old") == []
        notes = browser.find_element(By.CSS_SELECTOR, ".notes").text
        assert "1 'thought'" in notes and "line(s) skipped" in notes
        assert "do not record the flow's graph" in browser.page_source
        assert visit(browser, live.url + "/runs/old/tasks/run") == []
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "2 line(s) skipped" in page  # the old model call, and the old verdict once read
        assert "does not record the prompt" in page and "no candidate events" in page
        assert "votes" in page and "math" in page
        browser.save_screenshot(str(screenshots / "old-trace.png"))


def test_a_runs_folder_that_goes_away_is_a_message(browser: Any, fake_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(fake_run, runs / "fake")
    with LiveServer(runs) as live:
        assert visit(browser, live.url + "/runs/fake") == []
        shutil.rmtree(runs)
        visit(browser, live.url + "/runs/fake")
        assert "is gone" in browser.find_element(By.ID, "error-message").text


def test_the_runs_page_follows_a_running_batch(browser: Any, tmp_path: Path) -> None:
    """A real ``forkpath batch`` in another process; the open page updates without a reload."""
    runs = tmp_path / "runs"
    runs.mkdir()
    data = write_dataset(tmp_path / "tasks.jsonl", n=5)
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        BON.replace("NAME", "slow").replace("SCRIPT", json.dumps(SCRIPT_A)).replace("LATENCY", "0.8")
        + f"dataset: {{name: jsonl, path: {data}, fields: {{answer: answer}}}}\n"
    )
    forkpath = Path(sys.executable).with_name("forkpath")
    with LiveServer(runs) as live:
        assert visit(browser, live.url + "/") == []
        browser.execute_script("window.__sameDocument = true")
        batch = subprocess.Popen(
            [str(forkpath), "batch", str(flow), "--out", str(runs / "slow"), "-j", "1", "--no-report"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "100"},
        )
        try:
            seen: set[str] = set()

            def cell() -> bool:
                # read in one script: the table body is replaced under us every two seconds
                state = browser.execute_script(
                    "const r = document.querySelector(\"#runs-body tr[data-run='slow']\");"
                    "return r ? r.dataset.status + ' ' + r.querySelector('.done').textContent.trim() : null"
                )
                if state:
                    seen.add(state)
                return bool(state and state.startswith("finished"))

            WebDriverWait(browser, 180, poll_frequency=0.2).until(lambda d: cell())
        finally:
            batch.wait(timeout=120)
        assert batch.returncode == 0
        assert browser.execute_script("return window.__sameDocument === true")  # no reload
        running = {s for s in seen if s.startswith("running ")}
        assert len(running) >= 2, seen  # it was seen running, and its count moved while it ran
        assert "finished 5 / 5" in seen


def test_the_index_reads_only_what_a_growing_file_gained(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    event = '{"time": 1.0, "type": "note", "message": "m%d"}\n'
    path.write_text("".join(event % i for i in range(3)))
    index = TraceIndex(path)
    index.refresh()
    assert len(index) == 3 and index.consumed == path.stat().st_size
    with path.open("a") as f:
        f.write(event % 3 + '{"time": 2.0, "type": "no')  # a write in progress
    index.refresh()
    assert len(index) == 4 and index.pending > 0 and index.bad_lines == 0
    with path.open("a") as f:
        f.write('te", "message": "m4"}\n')
    index.refresh()
    assert len(index) == 5 and index.pending == 0
    assert [e.message for _, e in index.events([4, 0])] == ["m4", "m0"]  # type: ignore[union-attr]
    path.write_text(event % 9)  # replaced by a shorter file: read again from the start
    index.refresh()
    assert len(index) == 1 and index.event(0).message == "m9"  # type: ignore[union-attr]


def test_the_last_record_of_a_task_wins(fake_run: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    lines = (fake_run / "results.jsonl").read_text().splitlines(keepends=True)
    retried = next(json.loads(line) for line in lines if json.loads(line)["task_id"] == "t5")
    assert retried["status"] == "error"  # t5 errored; say it ran again and passed
    retried.update(status="ok", passed=True, error=None)
    results.write_text("".join(lines) + json.dumps(retried) + "\n")
    index = RecordsIndex(results)
    index.refresh()
    assert len(index.rows) == 6 and index.rows["t5"].outcome == "passed"
    record = index.record("t5")
    assert record is not None and record.passed is True


def test_a_run_killed_midway_is_interrupted_not_running(fake_run: Path, tmp_path: Path) -> None:
    shutil.copytree(fake_run, tmp_path / "runs" / "killed")
    manifest = json.loads((tmp_path / "runs" / "killed" / "run.json").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    manifest.update(finished=None, stopped=None, pid=dead.pid)
    (tmp_path / "runs" / "killed" / "run.json").write_text(json.dumps(manifest))
    run = RunCatalog(tmp_path / "runs").get("killed")
    assert run is not None and run.status == "interrupted" and run.wall_s is None
    manifest.update(pid=os.getpid(), started=time.time() - 5)
    (tmp_path / "runs" / "killed" / "run.json").write_text(json.dumps(manifest))
    run = RunCatalog(tmp_path / "runs").get("killed")
    assert run is not None and run.status == "running" and run.wall_s is not None and run.wall_s >= 5
