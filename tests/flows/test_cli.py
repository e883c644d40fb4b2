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


LAUGHS = (
    "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9))
).encode()
"""The billion laughs: nine levels of ten aliases each."""

# (label, file name, bytes of the flow file, fragment of the one error line)
MALFORMED = [
    (
        "not UTF-8",
        "latin.yaml",
        FLOW.replace("cli-demo", "caf\xe9").encode("latin-1"),
        "latin.yaml:1: not UTF-8",
    ),
    ("NUL byte", "nul.yaml", FLOW.encode().replace(b"  check:", b"  ch\0eck:"), "nul.yaml:8: NUL byte"),
    ("billion laughs", "bomb.yaml", LAUGHS, "YAML aliases expand this flow beyond"),
    (
        "deep nesting",
        "deep.yaml",
        b"name: x\nmodels: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "deep.yaml:2: invalid YAML: nesting deeper than",
    ),
    (
        "duplicate key",
        "dup.yaml",
        (FLOW + "name: again\n").encode(),
        "dup.yaml:13: duplicate key 'name' (first at line 1)",
    ),
    (
        "two documents",
        "docs.yaml",
        (FLOW + "---\nname: x\n").encode(),
        "docs.yaml:13: a second YAML document",
    ),
    ("empty file", "empty.yaml", b"", "empty.yaml: the flow file is empty"),
    (
        "empty nodes",
        "nodes.yaml",
        b"name: x\nmodels: {default: fake/m}\nnodes: {}\n",
        "nodes.yaml:3: nodes: is empty",
    ),
    (
        "out of range",
        "range.yaml",
        FLOW.replace("verifier: math_answer", "verifier: math_answer\n    params: {timeout_s: 0}").encode(),
        "range.yaml:10: verifiers 'math_answer': timeout_s: Input should be greater than or equal to 1",
    ),
    (
        "model option",
        "option.yaml",
        FLOW.replace("options: {script:", "options: {n_ctx: 5, script:").encode(),
        "option.yaml:3: models.default: model fake/m: options.n_ctx: unknown option",
    ),
    ("markup in a key", "markup.yaml", (FLOW + "'[/]': 1\n").encode(), "markup.yaml:13: [/]: unknown field"),
    (
        "self-including sub-flow",
        "self.yaml",
        FLOW.replace("verifier: math_answer", "flow: self.yaml").encode(),
        "self.yaml:9: nodes.check.flow: sub-flows include each other in a cycle",
    ),
]


def test_each_class_of_malformed_flow_is_one_line_exit_2_in_every_command(tmp_path: Path) -> None:
    task = json.dumps({"prompt": "What is 6*7?", "kind": "math", "answer": "42"})
    for i, (label, name, data, fragment) in enumerate(MALFORMED):
        flow = tmp_path / name
        flow.write_bytes(data)
        command = (["validate", name], ["run", name, "--input", task], ["graph", name])[i % 3]
        proc = forkpath(*command, cwd=tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (label, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(lines) == 1, (label, proc.stderr)
        assert lines[0].startswith("error: ") and fragment in lines[0], (label, lines[0])
        assert not (tmp_path / "runs").exists()  # nothing ran


def test_malformed_input_json_is_one_line(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    for value, fragment in (
        (
            "{not json",
            "--input is not JSON: Expecting property name enclosed in double quotes at character 1",
        ),
        ("[" * 20000 + "]" * 20000, "--input is not a task: JSON nested too deeply"),
        ("1" * 5000, "--input is not JSON that can be read: Exceeds the limit"),
        ("[1, 2]", "--input must be a JSON object (a task) or a string (its prompt)"),
        ('{"promt": "hi"}', "--input: promt: unknown task field"),
        ('{"prompt": 5}', "--input: prompt: Input should be a valid string"),
        ('{"prompt": "x", "kind": "poem"}', "--input: kind: Input should be 'code', 'math' or 'text'"),
    ):
        proc = forkpath("run", str(flow), "--input", value, cwd=tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(lines) == 1 and fragment in lines[0], (value[:20], lines)
