"""Malformed flows: each gives one clear ConfigError naming its line, never a traceback.

``CASES`` are the first twenty; ``SCHEMA_CASES`` cover empty sections, wrong types, node names,
unknown keys at every level and model options (the hostile YAML, parameter ranges and sub-flows
have their own modules).
"""

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
        "beams: unknown parameter (parameters of best_of_n: n, model, temperature",
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


def _replace(old: str, new: str, text: str = GOOD) -> str:
    assert old in text, old
    return text.replace(old, new)


NODE_CHECK = "  check:\n    verifier: math_answer\n"
SCHEMA_CASES = [
    # empty sections
    (
        "nodes: {}",
        "name: x\nmodels: {default: fake/m}\nnodes: {}\n",
        3,
        "nodes: is empty; a flow needs at least one entry",
    ),
    ("nodes: null", "name: x\nmodels: {default: fake/m}\nnodes:\n", 3, "nodes: is empty (null)"),
    (
        "models: {}",
        "name: x\nmodels: {}\nnodes: {a: {join: best}}\n",
        2,
        "models: is empty; a flow needs at least one entry",
    ),
    (
        "models: null",
        "name: x\nmodels:\nnodes: {a: {join: best}}\n",
        2,
        "models: is empty (null); input should be a mapping",
    ),
    (
        "edges: null",
        _replace("  - {from: draft, to: check}\n  - {from: check, to: end}\n", ""),
        11,
        "edges: is empty (null); input should be a valid list",
    ),
    (
        "empty node",
        _replace(NODE_CHECK, "  check: {}\n"),
        9,
        "nodes.check: a node needs one of strategy, verifier, model, prompt, join, flow",
    ),
    ("null node", _replace(NODE_CHECK, "  check:\n"), 9, "nodes.check: is empty (null)"),
    ("empty params", _replace("    params: {n: 2}", "    params:"), 8, "nodes.draft.params: is empty (null)"),
    (
        "empty strategy name",
        _replace("strategy: best_of_n", "strategy: ''"),
        7,
        "nodes.draft.strategy: String should have at least 1 character",
    ),
    (
        "empty model string",
        _replace("default: fake/m", "default: ''"),
        3,
        "models.default.model: String should have at least 1 character",
    ),
    ("empty name", _replace("name: ok", "name: ''"), 1, "name: String should have at least 1 character"),
    ("empty fan-out", _replace("to: check}", "to: []}"), 12, "edges[0].to: an empty list"),
    # wrong types
    ("name is a number", _replace("name: ok", "name: 5"), 1, "name: Input should be a valid string"),
    (
        "nodes is a list",
        "name: x\nmodels: {default: fake/m}\nnodes: [a, b]\n",
        3,
        "nodes: Input should be a mapping",
    ),
    (
        "edges is a mapping",
        _replace(
            "edges:\n  - {from: draft, to: check}\n  - {from: check, to: end}\n", "edges: {from: draft}\n"
        ),
        11,
        "edges: Input should be a valid list",
    ),
    (
        "an edge is a string",
        _replace("  - {from: check, to: end}", "  - check -> end"),
        13,
        "edges[1]: Input should be a mapping",
    ),
    ("target is a number", _replace("to: end}", "to: 5}"), 13, "edges[1].to: give the next node's name"),
    (
        "condition is a boolean",
        _replace("to: end}", "to: end, when: true}"),
        13,
        "edges[1].when: Input should be a valid string",
    ),
    ("description is a list", GOOD + "description: [a]\n", 14, "description: Input should be a valid string"),
    (
        "params is a list",
        _replace("{n: 2}", "[n, 2]"),
        8,
        "nodes.draft.params: Input should be a mapping",
    ),
    (
        "models mapping is a list",
        _replace("    params: {n: 2}", "    params: {n: 2}\n    models: [default]"),
        9,
        "nodes.draft.models: Input should be a mapping",
    ),
    (
        "max_visits is text",
        _replace("    params: {n: 2}", "    params: {n: 2}\n    max_visits: many"),
        9,
        "nodes.draft.max_visits: Input should be a valid integer",
    ),
    (
        "join is unknown",
        _replace(NODE_CHECK, "  check: {join: average}\n"),
        9,
        "nodes.check.join: Input should be 'best', 'vote' or 'first_passed'",
    ),
    ("trace is a number", GOOD + "trace: 5\n", 14, "trace: Input should be a mapping"),
    ("store is a list", GOOD + "store: [a]\n", 14, "store: Input should be a mapping"),
    (
        "options is a list",
        _replace("default: fake/m", "default: {model: fake/m, options: [a]}"),
        3,
        "models.default.options: Input should be a mapping",
    ),
    (
        "a model is a number",
        _replace("default: fake/m", "default: 7"),
        3,
        "models.default: Input should be a mapping",
    ),
    (
        "verifier is a list",
        _replace("verifier: math_answer\nnodes", "verifier: [math_answer]\nnodes"),
        4,
        "verifier: Input should be a mapping",
    ),
    (
        "a prompt on a strategy node",
        _replace("    params: {n: 2}", "    params: {n: 2}\n    prompt: hi"),
        6,
        "a strategy node takes no prompt (a strategy's own template goes in params",
    ),
    (
        "params on a join node",
        _replace(NODE_CHECK, "  check: {join: best, params: {x: 1}}\n"),
        9,
        "a join node takes no params",
    ),
    (
        "models on a verifier node",
        _replace(NODE_CHECK, "  check: {verifier: math_answer, models: {default: default}}\n"),
        9,
        "a verifier node takes no models mapping",
    ),
    # node names
    (
        "node named end",
        _replace(NODE_CHECK, "  end:\n    verifier: math_answer\n"),
        9,
        "nodes.end: 'end' is reserved for the end of the flow",
    ),
    (
        "node name with a space",
        _replace(NODE_CHECK, "  'che ck':\n    verifier: math_answer\n"),
        9,
        "node name 'che ck' is not an identifier",
    ),
    (
        "node name starting with a digit",
        _replace(NODE_CHECK, "  1st:\n    verifier: math_answer\n"),
        9,
        "node name '1st' is not an identifier",
    ),
    (
        "node name with a colon",
        _replace(NODE_CHECK, "  'a:b':\n    verifier: math_answer\n"),
        9,
        "node name 'a:b' is not an identifier",
    ),
    (
        "node name reserved by the graph",
        _replace(NODE_CHECK, "  __start__:\n    verifier: math_answer\n"),
        9,
        "node name '__start__' is not an identifier",
    ),
    (
        "node name too long",
        _replace(NODE_CHECK, "  " + "n" * 65 + ":\n    verifier: math_answer\n"),
        9,
        "at most 64 characters",
    ),
    (
        "model name with a space",
        _replace("default: fake/m", "default: fake/m\n  'my model': fake/m"),
        4,
        "model name 'my model': use letters, digits",
    ),
    ("start names no node", GOOD + "start: chek\n", 14, "start: no node named 'chek'"),
    (
        "fan-out to the same node twice",
        _replace("to: check}", "to: [check, check]}"),
        12,
        "runs check twice in one fan-out",
    ),
    ("end in a fan-out", _replace("to: check}", "to: [check, end]}"), 12, "'end' cannot run in parallel"),
    # unknown keys at every level, at their own line
    ("unknown top-level key", GOOD + "nodez: {}\n", 14, "nodez: unknown field; did you mean nodes?"),
    (
        "unknown node key",
        _replace("    params: {n: 2}", "    params: {n: 2}\n    max_visit: 2"),
        9,
        "nodes.draft.max_visit: unknown field; did you mean max_visits?",
    ),
    (
        "unknown edge key",
        _replace("{from: check, to: end}", "{from: check, too: end}"),
        13,
        "edges[1].too: unknown field; did you mean to?",
    ),
    (
        "unknown model key",
        _replace("default: fake/m", "default:\n    model: fake/m\n    option: {}"),
        5,
        "models.default.option: unknown field; did you mean options?",
    ),
    (
        "unknown verifier key",
        _replace("verifier: math_answer\nnodes", "verifier:\n  name: math_answer\n  param: {}\nnodes"),
        6,
        "verifier.param: unknown field; did you mean params?",
    ),
    (
        "unknown budget key",
        GOOD + "budget:\n  max_calls: 3\n  max_cals: 1\n",
        16,
        "budget.max_cals: unknown field; did you mean max_calls?",
    ),
    ("unknown trace key", GOOD + "trace:\n  dri: runs\n", 15, "trace.dri: unknown field; did you mean dir?"),
    (
        "unknown store key",
        GOOD + "store:\n  url: x.db\n  urll: y\n",
        16,
        "store.urll: unknown field; did you mean url?",
    ),
    (
        "unknown store cache key",
        GOOD + "store:\n  cache:\n    ttl: 3\n",
        16,
        "store.cache.ttl: unknown field",
    ),
    (
        "unknown dataset key",
        GOOD + "dataset:\n  name: gsm8k\n  limt: 3\n",
        16,
        "dataset.limt: unknown field; did you mean limit?",
    ),
    (
        "unknown key quoting markup",
        GOOD + "'[/]': 1\n",
        14,
        "[/]: unknown field (fields here: name, description",
    ),
    ("unknown key with a newline", GOOD + '"a\\nb": 1\n', 14, "a\\nb: unknown field"),
    # model options, at the option's line
    (
        "unknown option",
        _replace("default: fake/m", "default:\n    model: fake/m\n    options:\n      confidense: 0.5"),
        6,
        "models.default: model fake/m: options.confidense: unknown option",
    ),
    (
        "option out of range",
        _replace(
            "default: fake/m",
            "default:\n    model: fake/m\n    options:\n      script: {}\n      confidence: 2.0",
        ),
        7,
        "options.confidence: Input should be less than or equal to 1",
    ),
    (
        "nested option",
        _replace(
            "default: fake/m", "default:\n    model: fake/m\n    options:\n      retry:\n        attempts: 0"
        ),
        7,
        "options.retry.attempts",
    ),
    (
        "unknown sampling setting",
        _replace(
            "default: fake/m",
            "default:\n    model: fake/m\n    options:\n      sampling:\n        top_kk: 40",
        ),
        7,
        "options.sampling.top_kk: unknown option",
    ),
    (
        "sampling setting out of range",
        _replace(
            "default: fake/m",
            "default:\n    model: fake/m\n    options:\n      sampling: {top_k: 40, min_p: 1.5}",
        ),
        6,
        "options.sampling.min_p: Input should be less than or equal to 1",
    ),
    (
        "sampling setting the provider does not take",
        _replace(
            "default: fake/m",
            "default:\n    model: openai/gpt-4o-mini\n    options:\n      sampling: {top_k: 40}",
        ),
        4,
        "options.sampling: provider 'openai' does not take top_k",
    ),
    (
        "llama.cpp option",
        _replace("default: fake/m", "default:\n    model: local/smollm2-135m\n    options: {n_ctx: 5}"),
        5,
        "model local/smollm2-135m: options.n_ctx: Input should be greater than or equal to 16",
    ),
    (
        "llama.cpp unknown option",
        _replace(
            "default: fake/m", "default:\n    model: local/smollm2-135m\n    options:\n      n_gpu_layers: 5"
        ),
        6,
        "options.n_gpu_layers: unknown option (check its spelling) (options of local:",
    ),
    (
        "api option of the wrong type",
        _replace(
            "default: fake/m", "default:\n    model: openai/gpt-4o-mini\n    options:\n      timeout_s: soon"
        ),
        6,
        "options.timeout_s: Input should be a valid number",
    ),
    (
        "agent's first tool choice names no tool it has",
        "name: x\nmodels: {default: fake/m}\nnodes:\n  solve:\n    agent:\n      model: default\n"
        "      tools: [python]\n      first_tool_choice: shell\nedges:\n  - {from: solve, to: end}\n",
        8,
        "first_tool_choice: must be auto, required or the name of one of the agent's tools (python), not 'shell'",
    ),
    (
        "unknown bundled model",
        _replace("default: fake/m", "default: local/nosuch"),
        3,
        "models.default: unknown local model 'local/nosuch'",
    ),
]


@pytest.mark.parametrize(
    ("label", "text", "line", "fragment"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES]
)
def test_malformed_schema(label: str, text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml_text(text, source="bad.yaml")
    message = str(info.value)
    assert "\n" not in message and "Value error" not in message, message
    assert message.startswith(f"bad.yaml:{line}: ") and fragment in message, message


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
