"""Bad grid files: every class of mistake is one ConfigError line naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from forkpath._errors import ConfigError
from forkpath.sweep import load_grid

GOOD = """\
name: g
models:
  default: fake/m
configs:
  greedy:
    strategy: best_of_n
    params: {n: 1, temperature: 0, rerank: mean_logprob}
  vote:
    strategy: self_consistency
    sweep: {n: [1, 2, 4]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_grid_has_its_points_largest_budget_first(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, GOOD))
    assert [p.name for p in grid.points()] == ["greedy", "vote@n=4", "vote@n=2", "vote@n=1"]
    assert grid.points()[1].params == {"n": 4}


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        # YAML itself
        ("name: g\nmodels: {default: fake/m\n", "grid.yaml:", "YAML"),
        ("- a list\n", "grid.yaml:1", "a grid is a mapping"),
        # fields of the grid
        (GOOD + "colour: blue\n", "grid.yaml:11", "colour"),
        (GOOD.replace("name: g\n", ""), "grid.yaml", "name"),
        ("name: g\nmodels: {default: fake/m}\nconfigs: {}\n", "grid.yaml:3", "configs"),
        (GOOD.replace("  greedy:", "  bad name!:"), "grid.yaml:4", "identifier"),
        (GOOD + "prices: {fake/m: {prompt: -1}}\n", "grid.yaml:11", "prompt"),
        # a configuration's fields
        (
            GOOD.replace("    strategy: best_of_n\n", "    strategy: best_of_n\n    colour: 1\n"),
            "grid.yaml:7",
            "colour",
        ),
        (
            GOOD.replace("sweep: {n: [1, 2, 4]}", "sweep: {n: [1, 2], temperature: [0.1]}"),
            "grid.yaml:10",
            "one parameter",
        ),
        (GOOD.replace("sweep: {n: [1, 2, 4]}", "sweep: {n: []}"), "grid.yaml:10", "empty list"),
        (GOOD.replace("sweep: {n: [1, 2, 4]}", "sweep: {n: [2, 2]}"), "grid.yaml:10", "appears twice"),
        (GOOD.replace("sweep: {n: [1, 2, 4]}", "sweep: {n: 4}"), "grid.yaml:10", "list"),
        # what the points make: strategies, parameters, roles, verifiers
        (
            GOOD.replace("strategy: self_consistency", "strategy: self_consistensy"),
            "grid.yaml:8",
            "self_consistency",
        ),
        (GOOD.replace("sweep: {n: [1, 2, 4]}", "sweep: {n: [0, 2]}"), "grid.yaml:8", "n"),
        (GOOD.replace("rerank: mean_logprob", "rerank: loudest"), "grid.yaml:5", "rerank"),
        (
            GOOD.replace("params: {n: 1,", "models: {default: huge}\n    params: {n: 1,"),
            "grid.yaml:5",
            "huge",
        ),
        (GOOD + "judge: python_testz\n", "grid.yaml:5", "python_tests"),
        (GOOD.replace("default: fake/m", "default: {model: fake/m, colour: 1}"), "grid.yaml:3", "colour"),
    ],
)
def test_bad_grids_are_one_line_at_file_line(tmp_path: Path, text: str, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_grid(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / where)) or message.startswith(where), message
    assert says in message, message


def test_a_missing_grid_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"grid\.yaml"):
        load_grid(tmp_path / "grid.yaml")


def test_an_escalate_configuration_names_a_thresholds_file_that_must_exist_and_match(tmp_path: Path) -> None:
    ladder = """\
name: g
models: {default: fake/m}
verifier: math_answer
configs:
  ladder:
    strategy: escalate
    params:
      thresholds: t.json
      stages:
        - {strategy: self_consistency, params: {n: 3}, gate: agreement}
        - {strategy: self_consistency, params: {n: 1, temperature: 0}}
"""
    path = write(tmp_path, ladder)
    with pytest.raises(ConfigError, match=r"grid.yaml:5: .*t.json: cannot read escalate thresholds"):
        load_grid(path)
    load_grid(path, calibrating="ladder")  # calibration writes the file: not needed yet
    # a second ladder whose file does not exist yet does not stop the first's calibration
    two = ladder + ladder.split("configs:\n")[1].replace("ladder:", "other:").replace("t.json", "o.json")
    path = write(tmp_path, two)
    load_grid(path, calibrating="ladder")
    load_grid(path, calibrating="other")
    path = write(tmp_path, ladder)
    (tmp_path / "t.json").write_text('{"gates": ["mean_logprob"], "thresholds": [0.5]}')
    with pytest.raises(
        ConfigError, match=r"grid.yaml:5: .*gates \['mean_logprob'\]; this ladder's are \['agreement'\]"
    ):
        load_grid(path)
    (tmp_path / "t.json").write_text('{"gates": ["agreement"], "thresholds": "high"}')
    with pytest.raises(ConfigError, match="not an escalate thresholds file: thresholds"):
        load_grid(path)
    (tmp_path / "t.json").write_text('{"gates": ["agreement"], "thresholds": [0.6]}')
    assert load_grid(path).points()[0].params["thresholds"] == str(tmp_path / "t.json")
