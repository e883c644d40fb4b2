"""Twenty malformed flows: each gives one clear ConfigError naming its line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forkpath import ConfigError
from forkpath.flows import Flow

GOOD = """\
name: ok
models:
  default: fake/m
verifier: math_answer
nodes:
  draft:
    strategy: best_of_n
    params: {n: 2}
  check:
    verifier: math_answer
edges:
  - {from: draft, to: check}
  - {from: check, to: end}
"""

# (label, flow text, expected line, expected fragment of the message)
CASES = [
    ("bad YAML syntax", "name: x\nmodels: {default: fake/m\nnodes: {}\n", 3, "invalid YAML"),
    ("not a mapping", "- just\n- a list\n", None, "a flow file is a mapping"),
    (
        "missing models",
        "name: x\nnodes:\n  a: {strategy: best_of_n}\n",
        None,
        "models: required field is missing",
    ),
    (
        "typo in a field",
        GOOD.replace("    params: {n: 2}", "    parmas: {n: 2}"),
        8,
        "nodes.draft.parmas: unknown field",
    ),
    (
        "typo in strategy name",
        GOOD.replace("best_of_n", "best_of_m"),
        7,
        "unknown strategies 'best_of_m'; did you mean best_of_n",
    ),
    (
        "typo in verifier name",
        GOOD.replace("    verifier: math_answer", "    verifier: math_anwser"),
        10,
        "unknown verifiers 'math_anwser'",
    ),
    (
        "wrong parameter type",
        GOOD.replace("{n: 2}", "{n: two}"),
        8,
        "best_of_n': n: Input should be a valid integer",
    ),
    (
        "unknown parameter",
        GOOD.replace("{n: 2}", "{n: 2, beams: 3}"),
        8,
        "beams: Extra inputs are not permitted",
    ),
    (
        "dangling edge target",
        GOOD.replace("{from: check, to: end}", "{from: check, to: refine}"),
        13,
        "edges[1].to: no node named 'refine'",
    ),
    (
        "dangling edge source",
        GOOD.replace("{from: draft, to: check}", "{from: drfat, to: check}"),
        12,
        "edges[0].from: no node named 'drfat'",
    ),
    (
        "unbounded loop",
        GOOD.replace(
            "{from: check, to: end}", "{from: check, to: draft, when: not passed}\n  - {from: check, to: end}"
        ),
        9,
        "loop check -> draft has no bound; set max_visits",
    ),
    (
        "node that never ends",
        GOOD.replace("  - {from: check, to: end}\n", "  - {from: check, to: draft}\n").replace(
            "    params: {n: 2}", "    params: {n: 2}\n    max_visits: 2"
        ),
        6,
        "can never reach the end",
    ),
    (
        "unreachable node",
        GOOD.replace("edges:", "  lonely:\n    verifier: math_answer\nedges:"),
        11,
        "nodes.lonely: unreachable from the start node 'draft'",
    ),
    (
        "missing model",
        GOOD.replace("    params: {n: 2}", "    params: {n: 2}\n    models: {default: large}"),
        9,
        "nodes.draft.models.default: no model named 'large'",
    ),
    (
        "unknown model provider",
        GOOD.replace("default: fake/m", "default: nosuchprovider-model"),
        3,
        "models.default: unknown model 'nosuchprovider-model'",
    ),
    (
        "template with unknown field",
        GOOD.replace(
            "    verifier: math_answer\nedges",
            "    verifier: math_answer\n  ask:\n    model: default\n    prompt: 'Solve {{ question }}'\nedges",
        ).replace("{from: check, to: end}", "{from: check, to: ask}\n  - {from: ask, to: end}"),
        13,
        "unknown field question in template",
    ),
    (
        "template syntax error",
        GOOD.replace(
            "    verifier: math_answer\nedges",
            "    verifier: math_answer\n  ask:\n    model: default\n    prompt: 'Solve {{ prompt '\nedges",
        ).replace("{from: check, to: end}", "{from: check, to: ask}\n  - {from: ask, to: end}"),
        13,
        "template error",
    ),
    (
        "bad condition",
        GOOD.replace("{from: draft, to: check}", "{from: draft, to: check, when: 'score >'}"),
        12,
        "cannot parse condition 'score >'",
    ),
    (
        "condition with unknown name",
        GOOD.replace("{from: draft, to: check}", "{from: draft, to: check, when: 'sccore > 0.5'}"),
        12,
        "unknown name sccore in condition",
    ),
    (
        "node with two kinds",
        GOOD.replace("    strategy: best_of_n", "    strategy: best_of_n\n    verifier: math_answer"),
        6,
        "a node is one kind; this one sets strategy and verifier",
    ),
    (
        "capability the model lacks",
        GOOD.replace("default: fake/m", "default: {model: fake/m, options: {capabilities: {}}}").replace(
            "{n: 2}", "{n: 2, rerank: mean_logprob}"
        ),
        6,
        "best_of_n (node draft) needs token logprobs, which model fake/m",
    ),
    (
        "strategy needing a verifier without one",
        GOOD.replace("verifier: math_answer\nnodes", "nodes")
        .replace("  check:\n    verifier: math_answer\n", "")
        .replace(
            "  - {from: draft, to: check}\n  - {from: check, to: end}\n", "  - {from: draft, to: end}\n"
        ),
        5,
        "strategy best_of_n needs a verifier",
    ),
]


def test_the_good_flow_is_valid() -> None:
    Flow.from_yaml_text(GOOD, source="good.yaml")


def test_there_are_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(("label", "text", "line", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_malformed_flow(label: str, text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml_text(text, source="bad.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message, message
    if line is not None:
        assert message.startswith(f"bad.yaml:{line}: "), message
    else:
        assert message.startswith("bad.yaml"), message


def test_cli_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("best_of_n", "best_of_m"))
    proc = subprocess.run(
        [sys.executable, "-m", "forkpath._cli", "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{bad}:7: unknown strategies 'best_of_m'" in lines[0]
