"""The flow commands as a user runs them: run, validate, graph, trace show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FLOW = """\
name: cli-demo
models:
  default: {model: fake/m, options: {script: {"6*7": ["The answer is 42."]}}}
nodes:
  ask:
    model: default
    prompt: "{{ prompt }}"
  check:
    verifier: math_answer
edges:
  - {from: ask, to: check}
  - {from: check, to: end}
"""


def forkpath(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forkpath._cli", *args], capture_output=True, text=True, timeout=180, cwd=cwd
    )


def test_run_validate_graph_and_trace(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    task = json.dumps({"prompt": "What is 6*7?", "kind": "math", "answer": "42"})

    ran = forkpath("run", str(flow), "--input", task, "--run-id", "demo", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["answer"] == "The answer is 42." and result["passed"] is True
    assert [s["node"] for s in result["steps"]] == ["ask", "check"]
    assert result["usage"]["fake/m"]["calls"] == 1

    human = forkpath("run", str(flow), "--input", task, cwd=tmp_path)
    assert human.returncode == 0 and "answer passed" in human.stdout

    assert forkpath("validate", str(flow), cwd=tmp_path).stdout.strip() == f"{flow}: ok"

    drawn = forkpath("graph", str(flow), "--out", str(tmp_path / "flow.svg"), cwd=tmp_path)
    assert drawn.returncode == 0
    assert drawn.stdout.startswith("flowchart TD\n") and "ask --> check" in drawn.stdout
    assert (tmp_path / "flow.svg").read_text().lstrip().startswith("<?xml")

    shown = forkpath("trace", "show", "demo", "--json", cwd=tmp_path)
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert sum(e["type"] == "model_call" for e in events) == 1
    assert [(e["node"], e["phase"]) for e in events if e["type"] == "node"] == [
        ("ask", "start"),
        ("ask", "end"),
        ("check", "start"),
        ("check", "end"),
    ]


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    for args, fragment in (
        (["run", str(flow), "--input", "{not json"], "--input is not JSON"),
        (["run", str(flow)], "give exactly one of --input JSON and --task DATASET/N"),
        (["run", str(flow), "--task", "humaneval/999"], "no HumanEval task"),
        (["run", str(tmp_path / "missing.yaml"), "--input", "{}"], "cannot read flow file"),
        (["trace", "show", "nope"], "no trace at"),
    ):
        proc = forkpath(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_trace_show_tree_needs_a_search_and_says_so(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    task = json.dumps({"prompt": "What is 6*7?", "kind": "math", "answer": "42"})
    assert forkpath("run", str(flow), "--input", task, "--run-id", "plain", cwd=tmp_path).returncode == 0
    proc = forkpath("trace", "show", "plain", "--tree", str(tmp_path / "tree.html"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # no search ran in this flow
    assert not (tmp_path / "tree.html").exists()
