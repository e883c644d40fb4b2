"""The viewer's page of a forking-token analysis (``forks.json``), in process over HTTP: the
chart marks the planted fork, the table and the answer's tokens say where it is, hostile text
stays text, a damaged file is a message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from forkpath.server import create_view_app

from ._runs import FORKS_ANSWER, FORKS_AT, forks_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    forks_run(root)
    return root


def test_the_runs_page_lists_an_analysis(runs: Path) -> None:
    client = TestClient(create_view_app(runs))
    row = re.search(r'<tr data-run="forks".*?</tr>', client.get("/").text, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    assert [c.strip() for c in cells[2:5]] == ["forks", "fake/default", "demo/0"]
    listed = {r["run"]: r for r in client.get("/api/runs").json()}
    assert listed["forks"]["kind"] == "forks" and listed["forks"]["status"] == "finished"
    assert listed["forks"]["pass_rate"] is None


def test_the_page_marks_the_planted_fork_on_the_chart_the_table_and_the_tokens(runs: Path) -> None:
    page = TestClient(create_view_app(runs)).get("/runs/forks")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    text = page.text
    report = json.loads((runs / "forks" / "forks.json").read_text())
    assert report["forks"] == [FORKS_AT]
    # the chart: one line per outcome, the fork drawn at its index, a point per analysed index
    assert report["base_outcome"] == "say"  # the base answer ends "... and say"
    assert re.findall(r'data-outcome="([^"]+)"', text) == ["say", "yes", "no"]
    assert re.findall(r'<line class="fork" data-index="(\d+)"', text) == [str(FORKS_AT)]
    assert text.count("<circle") == 3 * (len(FORKS_ANSWER) + 1)
    assert f"index {FORKS_AT} &#x27;X&#x27;: yes 8 of 16" in text
    # the table: the token, the TV shift and its p-value, the outcomes before and after
    rows = re.findall(r'<tr data-index="(\d+)">(.*?)</tr>', text, re.S)
    assert [int(i) for i, _ in rows] == [FORKS_AT]
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1], re.S)]
    assert cells[1:3] == ["X", "0.50"] and float(cells[3]) < 0.01
    assert cells[4:6] == ["no 8, yes 8", "yes 16"]
    # the answer's tokens, the fork among them
    tokens = re.findall(r'<span class="tok([^"]*)" data-i="(\d+)" title="([^"]*)">([^<]*)</span>', text)
    assert "".join(t[3] for t in tokens) == FORKS_ANSWER
    assert [int(i) for css, i, _, _ in tokens if "fork" in css] == [FORKS_AT]
    assert "forking token" in tokens[FORKS_AT][2] and "say 0 of 16" in tokens[FORKS_AT][2]
    assert re.search(r'id="fork-count">1<', text) and re.search(r'id="base-outcome">say<', text)


def test_hostile_text_in_a_report_stays_text(tmp_path: Path) -> None:
    folder = forks_run(tmp_path, "hostile")
    data = json.loads((folder / "forks.json").read_text())
    evil = '<img src=x onerror="window.__x=1">'
    data["tokens"][FORKS_AT] = evil
    data["indexes"][FORKS_AT]["token"] = evil
    data["indexes"][0]["counts"] = {evil: 8}
    (folder / "forks.json").write_text(json.dumps(data))
    text = TestClient(create_view_app(tmp_path)).get("/runs/hostile").text
    assert "<img" not in text and "&lt;img src=x" in text


def test_a_damaged_report_is_a_message(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "forks.json").write_text('{"model": "m", "answer": ')
    client = TestClient(create_view_app(tmp_path))
    assert 'data-run="broken"' in client.get("/").text
    page = client.get("/runs/broken")
    assert page.status_code == 404 and "forks.json cannot be read" in page.text
    assert "Traceback" not in page.text
