"""Parameters out of range are refused at validation, at the parameter's own line, for every
strategy, verifier and router factory; what validation cannot see is safe at run time."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, get_args

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from forkpath import ConfigError, FlowError, Task
from forkpath.flows import Flow
from forkpath.routers import routers
from forkpath.strategies import strategies
from forkpath.verifiers import verifiers

HEAD = """\
name: params
models:
  default: fake/m
  small: fake/s
  large: fake/l
verifier: math_answer
nodes:
  step:
"""
FIRST_PARAM_LINE = 11


def flow_with(kind: str, name: str, params: dict[str, Any]) -> str:
    """A one-node flow whose node's parameters start at line 11, one per line."""
    block = yaml.safe_dump(params, default_flow_style=False, sort_keys=False)
    indented = "".join("      " + line + "\n" for line in block.splitlines())
    return HEAD + f"    {kind}: {name}\n    params:\n" + indented


# (strategy or verifier, kind, params, line offset of the bad one (None: the params line), fragment)
CASES: list[tuple[str, str, dict[str, Any], int | None, str]] = [
    (
        "public_tests",
        "verifier",
        {"max_examples": 0},
        0,
        "max_examples: Input should be greater than or equal to 1",
    ),
    (
        "escalate",
        "strategy",
        {"stages": [{"strategy": "best_of_n", "gate": "loud"}]},
        2,
        "stages[0].gate: Input should be",
    ),
    ("best_of_n", "strategy", {"n": 0}, 0, "n: Input should be greater than or equal to 1"),
    (
        "best_of_n",
        "strategy",
        {"n": 2, "temperature": -0.5},
        1,
        "temperature: Input should be greater than or equal to 0",
    ),
    ("best_of_n", "strategy", {"max_tokens": 0}, 0, "max_tokens: Input should be greater than or equal to 1"),
    ("best_of_n", "strategy", {"seed": -1}, 0, "seed: Input should be greater than or equal to 0"),
    ("best_of_n", "strategy", {"n": True}, 0, "n: expected a number, got the boolean true"),
    ("best_of_n", "strategy", {"n": 1.5}, 0, "n: Input should be a valid integer"),
    ("best_of_n", "strategy", {"n": 10**12}, 0, "n: Input should be less than or equal to 10000"),
    ("best_of_n", "strategy", {"temperature": math.nan}, 0, "temperature:"),
    ("best_of_n", "strategy", {"rerank": "best"}, 0, "rerank: Input should be 'verifier' or 'mean_logprob'"),
    ("best_of_n", "strategy", {"prompt": "Solve {question}"}, 0, "{question} is not a task field"),
    ("best_of_n", "strategy", {"prompt": "Solve {"}, 0, "Single '{' encountered"),
    ("best_of_n", "strategy", {"prompt": "{prompt.__class__}"}, 0, "{prompt.__class__} is not a task field"),
    ("best_of_n", "strategy", {"prompt": "{prompt:>999999999}"}, 0, "format specs are not supported"),
    (
        "best_of_n",
        "strategy",
        {"prompt": "Q: {{ prompt }}"},
        0,
        "is Jinja; a strategy's prompt is a format string",
    ),
    ("self_consistency", "strategy", {"n": 0}, 0, "n: Input should be greater than or equal to 1"),
    ("program_of_thought", "strategy", {"n": 0}, 0, "n: Input should be greater than or equal to 1"),
    ("program_of_thought", "strategy", {"timeout_s": 0}, 0, "timeout_s: Input should be greater than 0"),
    ("self_consistency", "strategy", {"temperature": math.inf}, 0, "temperature:"),
    (
        "adadec",
        "strategy",
        {"threshold": 1.0, "candidates": 1},
        1,
        "candidates: Input should be greater than or equal to 2",
    ),
    (
        "adadec",
        "strategy",
        {"threshold": 1.0, "lookahead": -1},
        1,
        "lookahead: Input should be greater than or equal to 0",
    ),
    ("adadec", "strategy", {"threshold": math.nan}, 0, "threshold: expected a number, got .nan"),
    ("adadec", "strategy", {"max_pauses": 2}, None, "adadec needs an entropy threshold"),
    ("alphacodium", "strategy", {"solutions": 0}, 0, "solutions: Input should be greater than or equal to 1"),
    ("alphacodium", "strategy", {"ai_tests": -1}, 0, "ai_tests: Input should be greater than or equal to 0"),
    ("alphacodium", "strategy", {"code_temperature": -1}, 0, "code_temperature:"),
    ("cascade", "strategy", {"max_tokens": 0}, 0, "max_tokens: Input should be greater than or equal to 1"),
    (
        "cascade",
        "strategy",
        {"router": {"name": "chow_quantile", "alpha": 2}},
        None,
        "alpha: Input should be less than or equal to 1",
    ),
    (
        "cascade",
        "strategy",
        {"router": {"name": "chow_mena"}},
        None,
        "unknown routers 'chow_mena'; did you mean chow_mean",
    ),
    (
        "cascade",
        "strategy",
        {"router": "top1"},
        None,
        "router 'top1' reads 'top1', which is not an answer feature",
    ),
    (
        "cothink",
        "strategy",
        {"outline_retries": -1},
        0,
        "outline_retries: Input should be greater than or equal to 0",
    ),
    (
        "filter_and_cluster",
        "strategy",
        {"inputs": 0},
        0,
        "inputs: Input should be greater than or equal to 1",
    ),
    ("filter_and_cluster", "strategy", {"submissions": 0}, 0, "submissions:"),
    ("sed", "strategy", {"k": 1}, 0, "k: Input should be greater than or equal to 2"),
    ("sed", "strategy", {"weight": 1.5}, 0, "weight: Input should be less than or equal to 1"),
    ("sed", "strategy", {"horizon": -1}, 0, "horizon:"),
    (
        "segment_offload",
        "strategy",
        {"segment_stop": []},
        0,
        "segment_stop: Tuple should have at least 1 item",
    ),
    (
        "segment_offload",
        "strategy",
        {"segment_stop": [""]},
        1,
        "segment_stop[0]: String should have at least 1 character",
    ),
    ("segment_offload", "strategy", {"top_logprobs": 0}, 0, "top_logprobs:"),
    ("segment_offload", "strategy", {"cooldown": 0}, 0, "cooldown:"),
    (
        "segment_offload",
        "strategy",
        {"router": {"name": "window_entropy", "threshold": "high"}},
        None,
        "threshold: Input should be a valid number",
    ),
    (
        "self_refine",
        "strategy",
        {"max_rounds": -1},
        0,
        "max_rounds: Input should be greater than or equal to 0",
    ),
    ("self_refine", "strategy", {"critique_tokens": 0}, 0, "critique_tokens:"),
    ("speculative_decoding", "strategy", {"draft_tokens": 0}, 0, "draft_tokens:"),
    ("speculative_decoding", "strategy", {"top_p": 0}, 0, "top_p: Input should be greater than 0"),
    ("speculative_decoding", "strategy", {"top_p": 1.5}, 0, "top_p: Input should be less than or equal to 1"),
    (
        "speculative_decoding",
        "strategy",
        {"draft_tokens": 9, "max_draft_tokens": 4},
        None,
        "need 1 <= draft_tokens <= max_draft_tokens",
    ),
    ("thought_budget", "strategy", {"budget": 0}, 0, "budget: Input should be greater than or equal to 1"),
    # The searches: nested groups (an error points at the nested key's own line) and old keys.
    (
        "mcts",
        "strategy",
        {"max_simulations": 0},
        0,
        "max_simulations: Input should be greater than or equal to 1",
    ),
    ("mcts", "strategy", {"c": -1}, 0, "c: Input should be greater than or equal to 0"),
    ("mcts", "strategy", {"c_base": 0}, 0, "c_base: Input should be greater than 0"),
    ("mcts", "strategy", {"selection": "best"}, 0, "selection: Input should be 'uct', 'puct' or 'var_p_uct'"),
    (
        "mcts",
        "strategy",
        {"step": {"max_depth": 0}},
        1,
        "step.max_depth: Input should be greater than or equal to 1",
    ),
    (
        "mcts",
        "strategy",
        {"step": {"max_tokens": True}},
        1,
        "step.max_tokens: expected a number, got the boolean true",
    ),
    ("mcts", "strategy", {"step": {"temperature": math.nan}}, 1, "step.temperature:"),
    (
        "mcts",
        "strategy",
        {"step": {"kind": "word"}},
        1,
        "step.kind: Input should be 'line', 'paragraph', 'statement' or 'regex'",
    ),
    (
        "mcts",
        "strategy",
        {"step": {"kind": "regex"}},
        0,
        "step: give step.pattern exactly when step.kind is 'regex'",
    ),
    ("mcts", "strategy", {"step": {"kind": "regex", "pattern": "("}}, 0, "is not a valid regular expression"),
    ("mcts", "strategy", {"step": {"temperature": 0}}, 0, "sampled expansion needs step.temperature > 0"),
    ("mcts", "strategy", {"step": {"depth": 3}}, 1, "step.depth: unknown parameter"),
    (
        "mcts",
        "strategy",
        {"step": "statement"},
        0,
        "`step` is a group of settings now: write `step: {kind: statement}`",
    ),
    ("mcts", "strategy", {"step": [1, 2]}, 0, "step: Input should be a mapping"),
    (
        "mcts",
        "strategy",
        {"sharing": {"reuse": "maybe"}},
        1,
        "sharing.reuse: Input should be a valid boolean",
    ),
    (
        "mcts",
        "strategy",
        {"value": "prm"},
        0,
        "`value` is a group of settings now: write `value: {kind: prm}`",
    ),
    (
        "mcts",
        "strategy",
        {"value": {"kind": "prm", "prompt": "{answer}?"}},
        2,
        "value.prompt: the judge's prompt may use only {problem} and {partial}, not {answer}",
    ),
    (
        "mcts",
        "strategy",
        {"value": {"prompt": "Is it right?"}},
        0,
        "value.prompt is for a judge (kind: self_eval or prm)",
    ),
    (
        "mcts",
        "strategy",
        {"sharing": {"claim_ttl_s": 0}},
        1,
        "sharing.claim_ttl_s: Input should be greater than 0",
    ),
    ("mcts", "strategy", {"max_depth": 4}, 0, "max_depth: `max_depth` moved to `step.max_depth`"),
    ("mcts", "strategy", {"namespace": "n"}, 0, "namespace: `namespace` moved to `sharing.namespace`"),
    ("mcts", "strategy", {"answer_prefix": "{question}"}, 0, "{question} is not a task field"),
    (
        "beam_search",
        "strategy",
        {"beam_width": 0},
        0,
        "beam_width: Input should be greater than or equal to 1",
    ),
    (
        "beam_search",
        "strategy",
        {"max_tokens": 64},
        0,
        "max_tokens: `max_tokens` moved to `value.max_tokens`",
    ),
    (
        "beam_search",
        "strategy",
        {"value": {"max_tokens": 0}},
        1,
        "value.max_tokens: Input should be greater than or equal to 1",
    ),
    (
        "token_tree_search",
        "strategy",
        {"max_rollouts": 0},
        0,
        "max_rollouts: Input should be greater than or equal to 1",
    ),
    (
        "token_tree_search",
        "strategy",
        {"step": {"top_k": 0}},
        1,
        "step.top_k: Input should be greater than or equal to 1",
    ),
    (
        "token_tree_search",
        "strategy",
        {"step": {"uncertainty": 0}},
        1,
        "step.uncertainty: uncertainty must be in (0, 1]",
    ),
    (
        "token_tree_search",
        "strategy",
        {"step": {"branch_at": "word"}},
        1,
        "step.branch_at: Input should be 'auto', 'token', 'line' or 'uncertain'",
    ),
    (
        "token_tree_search",
        "strategy",
        {"value": {"kind": "prm"}},
        1,
        "value.kind: Input should be 'verifier'",
    ),
    ("token_tree_search", "strategy", {"top_k": 3}, 0, "top_k: `top_k` moved to `step.top_k`"),
    ("token_tree_search", "strategy", {"reuse": False}, 0, "reuse: `reuse` moved to `sharing.reuse`"),
    (
        "thought_budget",
        "strategy",
        {"min_budget": 2000, "max_budget": 100},
        None,
        "need 1 <= min_budget <= max_budget",
    ),
    ("token_routing", "strategy", {"hold": -1}, 0, "hold:"),
    ("token_routing", "strategy", {"window": 0}, 0, "window:"),
    (
        "token_routing",
        "strategy",
        {"router": {"name": "entropy", "threshold": math.nan}},
        None,
        "threshold: expected a number, got .nan",
    ),
    ("math_answer", "verifier", {"timeout_s": 0}, 0, "timeout_s: Input should be greater than or equal to 1"),
    (
        "math_answer",
        "verifier",
        {"float_rounding": 99},
        0,
        "float_rounding: Input should be less than or equal to 15",
    ),
    (
        "python_tests",
        "verifier",
        {"float_tol": -1},
        0,
        "float_tol: Input should be greater than or equal to 0",
    ),
    ("python_tests", "verifier", {"max_parallel": 0}, 0, "max_parallel:"),
    (
        "python_tests",
        "verifier",
        {"limits": {"memory_mb": 1}},
        1,
        "limits.memory_mb: Input should be greater than or equal to 128",
    ),
    (
        "python_tests",
        "verifier",
        {"isolation": "none"},
        0,
        "isolation: Input should be 'auto', 'basic' or 'full'",
    ),
    ("model_judge", "verifier", {"model": "local/nosuch"}, 0, "unknown local model 'local/nosuch'"),
    (
        "model_judge",
        "verifier",
        {"model": "fake/j", "threshold": 2},
        1,
        "threshold: Input should be less than or equal to 1",
    ),
    ("model_judge", "verifier", {"model": "fake/j", "top_logprobs": 0}, 1, "top_logprobs:"),
    ("model_judge", "verifier", {}, None, "model: required parameter is missing"),
    ("ai_tests", "verifier", {"model": "fake/j", "n": 0}, 1, "n: Input should be greater than or equal to 1"),
    ("all_of", "verifier", {"verifiers": []}, 0, "verifiers: List should have at least 1 item"),
    (
        "all_of",
        "verifier",
        {"verifiers": ["math_anwser"]},
        1,
        "unknown verifiers 'math_anwser'; did you mean math_answer",
    ),
    (
        "all_of",
        "verifier",
        {"verifiers": ["math_answer", {"name": "python_tests", "float_tol": -1}]},
        2,
        "float_tol: Input should be greater than or equal to 0",
    ),
    ("first_failure", "verifier", {"verifiers": [{"timeout_s": 1}]}, 1, "a verifier spec needs a 'name'"),
    (
        "weighted",
        "verifier",
        {"verifiers": ["math_answer", "python_tests"], "weights": [1]},
        3,
        "1 weights for 2 verifiers",
    ),
    (
        "weighted",
        "verifier",
        {"verifiers": ["math_answer"], "weights": [-1]},
        3,
        "weights[0]: Input should be greater than or equal to 0",
    ),
    (
        "weighted",
        "verifier",
        {"verifiers": ["math_answer"], "weights": [0]},
        2,
        "the weights need a positive sum",
    ),
    (
        "weighted",
        "verifier",
        {"verifiers": ["math_answer"], "threshold": 2},
        2,
        "threshold: Input should be less than or equal to 1",
    ),
]


@pytest.mark.parametrize(
    ("name", "kind", "params", "offset", "fragment"),
    CASES,
    ids=[f"{c[0]}-{'-'.join(map(str, c[2]))}-{i}" for i, c in enumerate(CASES)],
)
def test_out_of_range_parameters_are_refused_at_their_line(
    name: str, kind: str, params: dict[str, Any], offset: int | None, fragment: str
) -> None:
    text = flow_with(kind, name, params)
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml_text(text, source="p.yaml")
    message = str(info.value)
    line = FIRST_PARAM_LINE - 1 if offset is None else FIRST_PARAM_LINE + offset
    assert message.startswith(f"p.yaml:{line}: "), message
    assert fragment in message and "\n" not in message and "Value error" not in message, message


def test_every_case_table_factory_is_covered() -> None:
    covered = {c[0] for c in CASES}
    assert set(_ours(strategies)) <= covered
    assert set(_ours(verifiers)) <= covered


def _ours(registry: Any) -> list[str]:
    """Registered names whose factory is forkpath's own (tests register helpers of their own)."""
    return [
        name
        for name in registry.names()
        if getattr(inspect.unwrap(registry.get(name)), "__module__", "").startswith("forkpath.")
    ]


def _numeric(annotation: Any) -> bool:
    args = [a for a in get_args(annotation) if a is not type(None)]
    return annotation in (int, float) or (bool(args) and all(a in (int, float) for a in args))


def _fields(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every field of a parameter model, those of nested groups (``step.max_depth``) included."""
    out = []
    for pname, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _fields(annotation, f"{prefix}{pname}.")
        else:
            out.append((f"{prefix}{pname}", field))
    return out


@pytest.mark.parametrize("registry", [strategies, verifiers, routers], ids=lambda r: r.kind)
def test_every_numeric_parameter_has_its_range(registry: Any) -> None:
    """Pins the rule: a number a factory takes says its range (or, for thresholds, that any
    number but NaN is meaningful) and refuses booleans."""
    unbounded = []
    for name in _ours(registry):
        for pname, field in _fields(registry.params_model(name)):
            if not _numeric(field.annotation):
                continue
            bounds = [
                m
                for m in field.metadata
                if isinstance(
                    m, annotated_types.Ge | annotated_types.Gt | annotated_types.Le | annotated_types.Lt
                )
            ]
            threshold = any(
                getattr(getattr(m, "func", None), "__name__", "") == "_not_nan" for m in field.metadata
            )
            refuses_bool = any(
                getattr(getattr(m, "func", None), "__name__", "") == "_not_bool" for m in field.metadata
            )
            if not (bounds or threshold) or not refuses_bool:
                unbounded.append(f"{name}.{pname}")
    assert unbounded == []


def test_the_registry_refuses_out_of_range_values_outside_flows_too() -> None:
    with pytest.raises(ConfigError, match="n: Input should be greater than or equal to 1"):
        strategies.create("best_of_n", n=0)
    with pytest.raises(ConfigError, match=r"threshold: expected a number, got \.nan"):
        routers.create("top1", threshold=float("nan"))


# -- the flow's own fields -------------------------------------------------------------------------
FLOW = """\
name: own
models:
  default: fake/m
verifier: math_answer
nodes:
  ask:
    model: default
    prompt: "{{ prompt }}"
    params: {max_tokens: 8}
  check:
    verifier: math_answer
edges:
  - {from: ask, to: check}
"""
OWN_CASES = [
    ("max_steps zero", FLOW + "max_steps: 0\n", 14, "max_steps: Input should be greater than or equal to 1"),
    (
        "max_steps boolean",
        FLOW + "max_steps: yes\n",
        14,
        "max_steps: expected a number, got the boolean true",
    ),
    (
        "max_steps huge",
        FLOW + "max_steps: 100000000\n",
        14,
        "max_steps: Input should be less than or equal to 100000",
    ),
    (
        "max_visits zero",
        FLOW.replace("  check:\n", "  check:\n    max_visits: 0\n"),
        11,
        "nodes.check.max_visits:",
    ),
    (
        "max_visits text",
        FLOW.replace("  check:\n", "  check:\n    max_visits: two\n"),
        11,
        "Input should be a valid integer",
    ),
    (
        "budget negative",
        FLOW + "budget: {max_calls: -1}\n",
        14,
        "budget.max_calls: Input should be greater than or equal to 0",
    ),
    ("budget null", FLOW + "budget:\n", 14, "budget: is empty (null)"),
    (
        "model call max_tokens",
        FLOW.replace("{max_tokens: 8}", "{max_tokens: 0}"),
        9,
        "nodes.ask.params.max_tokens: Input should be greater than or equal to 1",
    ),
    (
        "model call temperature",
        FLOW.replace("{max_tokens: 8}", "{temperature: -1}"),
        9,
        "nodes.ask.params.temperature:",
    ),
    (
        "model call unknown param",
        FLOW.replace("{max_tokens: 8}", "{max_token: 8}"),
        9,
        "unknown parameter of a model call (parameters: max_tokens, temperature, system)",
    ),
    (
        "template unknown field",
        FLOW.replace("{{ prompt }}", "{{ question }}"),
        8,
        "unknown field question in template",
    ),
    ("template syntax", FLOW.replace("{{ prompt }}", "{% if %}"), 8, "template error"),
    (
        "template nested too deeply",
        FLOW.replace("{{ prompt }}", "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"),
        8,
        "nested too deeply",
    ),
    (
        "condition syntax",
        FLOW.replace("to: check}", "to: check, when: 'score >'}"),
        13,
        "cannot parse condition 'score >'",
    ),
    (
        "condition nested too deeply",
        FLOW.replace("to: check}", "to: check, when: '" + "(" * 2000 + "1" + ")" * 2000 + "'}"),
        13,
        "cannot parse condition",
    ),
    (
        "condition unknown name",
        FLOW.replace("to: check}", "to: check, when: 'scor > 1'}"),
        13,
        "unknown name scor in condition",
    ),
]


@pytest.mark.parametrize(("label", "text", "line", "fragment"), OWN_CASES, ids=[c[0] for c in OWN_CASES])
def test_the_flows_own_fields(label: str, text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml_text(text, source="own.yaml")
    assert str(info.value).startswith(f"own.yaml:{line}: ") and fragment in str(info.value), str(info.value)


# -- what validation cannot see is safe at run time ------------------------------------------------
TASK = Task(id="m/0", prompt="What is 6*7?", kind="math", answer="42")
SCRIPTED = "{model: fake/m, options: {script: {'6*7': ['The answer is 42.']}}}"


async def test_a_condition_on_a_value_that_is_still_none_is_false(tmp_path: Path) -> None:
    text = f"""\
name: none-safe
models:
  default: {SCRIPTED}
nodes:
  ask:
    model: default
    prompt: "{{{{ prompt }}}}"
  check:
    verifier: math_answer
edges:
  - {{from: ask, to: end, when: "score >= 0.5"}}
  - {{from: ask, to: check}}
  - {{from: check, to: end, when: "score >= 0.5 and answer | length > 3"}}
"""
    result = await Flow.from_yaml_text(text).run(TASK, runs_dir=tmp_path)
    # score is None after the model call: the first edge's condition cannot hold, so the
    # flow goes on to the verifier instead of failing with a TypeError
    assert [s["node"] for s in result.steps] == ["ask", "check"]
    assert result.passed is True and result.score == 1.0


async def test_a_template_that_fails_on_this_runs_values_is_one_flow_error(tmp_path: Path) -> None:
    text = f"""\
name: template-fails
models:
  default: {SCRIPTED}
nodes:
  ask:
    model: default
    prompt: "{{{{ prompt }}}} (last score plus one: {{{{ score + 1 }}}})"
"""
    flow = Flow.from_yaml_text(text)  # valid: score is a known name
    with pytest.raises(FlowError) as info:
        await flow.run(TASK, runs_dir=tmp_path)
    assert "failed: TypeError" in str(info.value) and "\n" not in str(info.value)


def test_the_sdk_reports_bad_nodes_as_config_errors() -> None:
    flow = Flow("sdk", models={"default": "fake/m"})
    with pytest.raises(ConfigError, match=r"^<sdk>: nodes\.a\.max_visits: Input should be greater"):
        flow.node("a", model="default", prompt="{{ prompt }}", max_visits=0)
    with pytest.raises(ConfigError, match=r"^<sdk>: edges\[0\]\.to: an empty list"):
        flow.edge("a", [])
    flow.node("bad name", model="default", prompt="{{ prompt }}")
    with pytest.raises(
        ConfigError, match=r"^<sdk>: nodes\.bad name: node name 'bad name' is not an identifier"
    ):
        flow.validate()
    with pytest.raises(ConfigError, match=r"^<sdk>: models\.x\.model: String should have at least 1"):
        Flow("sdk", models={"x": ""})
    bad_param = Flow("sdk", models={"default": "fake/m"}, verifier="math_answer").node(
        "a", strategy="best_of_n", n=0
    )
    with pytest.raises(ConfigError, match=r"^<sdk>: strategies 'best_of_n': n: Input should be greater"):
        bad_param.validate()
