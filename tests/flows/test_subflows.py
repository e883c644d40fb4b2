"""Sub-flows are loaded and validated with their parent: an error names the sub-flow's file and
line and the parent's line; a flow that includes itself, directly or through others, is refused
naming the cycle; nesting is bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from forkpath import ConfigError, Task
from forkpath.flows import Flow
from forkpath.flows._validate import MAX_SUBFLOW_DEPTH

INNER = """\
name: inner
models:
  default: {model: fake/m, options: {script: {"6*7": ["The answer is 42."]}}}
nodes:
  ask:
    model: default
    prompt: "{{ prompt }}"
"""
PARENT = """\
name: parent
models:
  default: fake/m
nodes:
  sub:
    flow: {path}
  check:
    verifier: math_answer
edges:
  - {{from: sub, to: check}}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


async def test_a_valid_sub_flow_validates_and_runs(tmp_path: Path) -> None:
    write(tmp_path / "subs" / "inner.yaml", INNER)
    parent = write(tmp_path / "parent.yaml", PARENT.format(path="subs/inner.yaml"))
    result = await Flow.from_yaml(parent).run(
        Task(id="m", prompt="What is 6*7?", kind="math", answer="42"), runs_dir=tmp_path / "runs"
    )
    assert [s["node"] for s in result.steps] == ["sub", "check"] and result.passed is True


@pytest.mark.parametrize(
    ("inner", "line", "fragment"),
    [
        (INNER.replace("{{ prompt }}", "{{ question }}"), 7, "nodes.ask.prompt: unknown field question"),
        (
            INNER.replace("model: default\n", "model: defualt\n"),
            6,
            "nodes.ask.model: no model named 'defualt'",
        ),
        (INNER + "  ask:\n    join: best\n", 8, "duplicate key 'ask' (first at line 5)"),
        (INNER.replace('"{{ prompt }}"', '"{{ prompt }}'), 8, "invalid YAML"),
        (INNER.replace("script:", "scirpt:"), 3, "options.scirpt: unknown option"),
        ("", None, "the flow file is empty"),
        ("- a list\n", 1, "a flow file is a mapping"),
        (INNER.encode("utf-16").decode("latin-1"), 1, "the file is UTF-16"),
    ],
    ids=["template", "model name", "duplicate key", "yaml syntax", "model option", "empty", "list", "utf-16"],
)
def test_an_error_in_a_sub_flow_names_both_files_and_lines(
    tmp_path: Path, inner: str, line: int | None, fragment: str
) -> None:
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "inner.yaml").write_bytes(
        inner.encode("latin-1") if "\x00" in inner else inner.encode()
    )
    parent = write(tmp_path / "parent.yaml", PARENT.format(path="subs/inner.yaml"))
    message = error_of(parent)
    inner_where = f"subs/inner.yaml:{line}: " if line else "subs/inner.yaml: "
    assert message.startswith(f"{parent}:6: nodes.sub.flow: in sub-flow "), message
    assert inner_where in message and fragment in message, message


def test_a_missing_or_unreadable_sub_flow(tmp_path: Path) -> None:
    parent = write(tmp_path / "parent.yaml", PARENT.format(path="nope.yaml"))
    assert "nodes.sub.flow: in sub-flow" in error_of(parent) and "no such file" in error_of(parent)
    (tmp_path / "adir").mkdir()
    parent = write(tmp_path / "parent.yaml", PARENT.format(path="adir"))
    assert error_of(parent).endswith("is a directory, not a flow file")


def test_a_flow_that_includes_itself(tmp_path: Path) -> None:
    flow = write(tmp_path / "self.yaml", PARENT.format(path="self.yaml"))
    message = error_of(flow)
    assert message.startswith(f"{flow}:6: nodes.sub.flow: sub-flows include each other in a cycle: ")
    assert message.endswith("self.yaml -> " + str(tmp_path / "self.yaml")) or message.endswith(
        "self.yaml -> self.yaml"
    ), message


def test_flows_that_include_each_other(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", PARENT.format(path="sub/b.yaml"))
    write(tmp_path / "sub" / "b.yaml", PARENT.format(path="c.yaml"))
    write(tmp_path / "sub" / "c.yaml", PARENT.format(path="../a.yaml"))
    message = error_of(a)
    assert message.startswith(f"{a}:6: nodes.sub.flow: in sub-flow "), message
    assert "sub-flows include each other in a cycle:" in message
    cycle = message.rsplit("cycle: ", 1)[1].split(" -> ")
    assert [Path(p).name for p in cycle] == ["a.yaml", "b.yaml", "c.yaml", "a.yaml"]


def test_sub_flows_nest_to_a_bound(tmp_path: Path) -> None:
    depth = MAX_SUBFLOW_DEPTH + 3
    for i in range(depth):
        write(tmp_path / f"d{i}.yaml", PARENT.format(path=f"d{i + 1}.yaml"))
    write(tmp_path / f"d{depth}.yaml", INNER)
    assert f"sub-flows nest deeper than {MAX_SUBFLOW_DEPTH} levels" in error_of(tmp_path / "d0.yaml")
    Flow.from_yaml(tmp_path / f"d{depth - MAX_SUBFLOW_DEPTH + 1}.yaml")  # within the bound: fine


def test_a_text_flow_resolves_sub_flows_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "inner.yaml", INNER.replace("{{ prompt }}", "{{ nope }}"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^p\.yaml:6: nodes\.sub\.flow: in sub-flow inner\.yaml:7: "):
        Flow.from_yaml_text(PARENT.format(path="inner.yaml"), source="p.yaml")
