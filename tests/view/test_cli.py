"""``forkpath view`` as a user starts it, and the answers its server gives to odd requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from forkpath.server import create_view_app

from ._runs import SCRIPT_A, fake_batch, free_port, write_dataset

FORKPATH = str(Path(sys.executable).with_name("forkpath"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    fake_batch(root, "fake", SCRIPT_A, write_dataset(tmp_path_factory.mktemp("data") / "tasks.jsonl"))
    return root


def test_forkpath_view_serves_a_folder_of_runs(runs: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [FORKPATH, "view", str(runs), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert page.status_code == 200 and 'data-run="fake"' in page.text
        runs_json = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5).json()
        assert [(r["run"], r["status"], r["done"], r["total"]) for r in runs_json] == [
            ("fake", "finished", 6, 6)
        ]
        css = httpx.get(f"http://127.0.0.1:{port}/assets/view.css", timeout=5)
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["view", "no/such/folder"], "no folder no/such/folder"),
        (["view", "RUNS", "--host", "0.0.0.0"], "not a loopback address"),
        (["view", "RUNS", "--port", "70000"], "not a port number"),
    ],
)
def test_bad_arguments_are_one_line(runs: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [FORKPATH, *[str(runs) if a == "RUNS" else a for a in args]],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line(runs: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [FORKPATH, "view", str(runs), "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2 and f"cannot serve on 127.0.0.1:{port}" in done.stderr


def test_odd_requests_get_clear_answers(runs: Path) -> None:
    client = TestClient(create_view_app(runs))
    assert client.get("/no/such/page").status_code == 404
    for path in (
        "/runs/fake/plots/..%2Fresults.jsonl",
        "/runs/fake/plots/results.jsonl",
        "/runs/..%2F..%2Fetc",
    ):
        response = client.get(path)
        assert response.status_code == 404 and '"run_id"' not in response.text  # no file's content
    api = client.get("/api/runs/fake/tree/t0")
    assert api.status_code == 404 and "no search tree" in api.json()["error"]
    assert client.get("/api/runs/nope/tree/t0").json() == {"error": f"no run 'nope' under {runs}"}
    bad = client.get("/runs/fake/tasks/t0?events=x")
    assert bad.status_code == 400 and "events is a number" in bad.text
    page = client.get("/runs/fake")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    plot = client.get("/runs/fake/plots/accuracy_vs_cost.png")
    assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
