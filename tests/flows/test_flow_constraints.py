"""A node's ``constraint:`` in YAML and the SDK: bad constraints are one line at their
``file:line``; a constrained model node and strategy node give valid answers on SmolLM2."""

from __future__ import annotations

import json

import pytest

from forkpath import ConfigError, Task
from forkpath.flows import Flow
from forkpath.flows._schema import FlowSpec, NodeSpec
from forkpath.models import Constraint

FLOW = """\
name: constrained
models:
  default: {model}
nodes:
  answer:
    model: default
    prompt: "{{{{ prompt }}}}"
    params: {{max_tokens: 48}}
    constraint:
{constraint}
edges:
  - {{from: answer, to: end}}
"""


def flow(constraint: str, model: str = "fake/m") -> str:
    return FLOW.format(model=model, constraint="\n".join(f"      {line}" for line in constraint.splitlines()))


@pytest.mark.parametrize(
    ("constraint", "line", "fragment"),
    [
        ('regex: "(ab"', 10, "nodes.answer.constraint.regex: invalid regex '(ab': missing )"),
        ('regex: "(?<=a)b"', 10, "nodes.answer.constraint.regex: invalid regex"),
        (
            "json_schema: {type: nonsense}",
            10,
            "nodes.answer.constraint.json_schema: invalid JSON schema at type",
        ),
        ("json_schema: {type: object, properties: 3}", 10, "invalid JSON schema at properties"),
        ("grammar: 'start: missing_rule'", 10, 'unknown name: "missing_rule"'),
        (
            'regex: "a"\ngrammar: \'start: "a"\'',
            9,
            "exactly one of json_schema, regex, grammar (given: regex and grammar)",
        ),
        ('regex: "a"\nmethod: sometimes', 11, "nodes.answer.constraint.method"),
        ('regex: "a"\nshape: round', 11, "nodes.answer.constraint.shape"),
        ('regex: "a"\nmax_tries: 0', 11, "nodes.answer.constraint.max_tries"),
    ],
)
def test_bad_constraints_are_one_line_at_their_line(constraint: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml_text(flow(constraint), source="bad.yaml")
    message = str(info.value)
    assert "\n" not in message and "Value error" not in message, message
    assert message.startswith(f"bad.yaml:{line}: ") and fragment in message, message


def test_a_constraint_only_goes_on_strategy_and_model_nodes() -> None:
    text = flow('regex: "a"').replace(
        'model: default\n    prompt: "{{ prompt }}"\n    params: {max_tokens: 48}', "verifier: math_answer"
    )
    with pytest.raises(ConfigError, match="a verifier node takes no constraint"):
        Flow.from_yaml_text(text, source="bad.yaml")


async def test_a_constrained_model_node_on_smollm2() -> None:
    schema = "{type: object, properties: {answer: {type: integer, maximum: 1000}}, required: [answer], additionalProperties: false}"
    result = await Flow.from_yaml_text(flow(f"json_schema: {schema}", "local/smollm2-135m")).run(
        Task(id="q", prompt="What is 6 times 7? Reply in JSON.", kind="text"), trace=False
    )
    assert result.answer is not None and set(json.loads(result.answer)) == {"answer"}


async def test_sdk_flow_with_a_constrained_strategy_node() -> None:
    spec = FlowSpec(
        name="sdk",
        models={"default": {"model": "local/smollm2-135m"}},  # type: ignore[dict-item]
        nodes={
            "vote": NodeSpec(
                strategy="self_consistency",
                params={"n": 3, "max_tokens": 8, "temperature": 1.0},
                constraint=Constraint(regex="[0-9]{1,3}"),
            )
        },
    )
    result = await Flow.from_spec(spec).run(
        Task(id="q", prompt="What is 6 times 7?", kind="math"), trace=False
    )
    assert all(Constraint(regex="[0-9]{1,3}").accepts(c["text"]) for c in result.candidates), (
        result.candidates
    )
