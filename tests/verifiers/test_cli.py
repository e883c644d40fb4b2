"""``forkpath verify``: tests files, dataset tasks, answers; JSON output; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forkpath._cli._verify import app

runner = CliRunner()
ADD = "def add(a, b):\n    return a + b\n"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "add.py").write_text(ADD)
    (tmp_path / "asserts.py").write_text("assert add(1, 2) == 3\nassert add(2, 2) == 5\n")
    (tmp_path / "check.py").write_text("def check(candidate):\n    assert candidate(1, 2) == 3\n")
    (tmp_path / "io.yaml").write_text('- input: "1 2\\n"\n  output: "3\\n"\n- input: "5 5"\n  output: "10"\n')
    (tmp_path / "sum.py").write_text("a, b = map(int, input().split())\nprint(a + b)\n")
    (tmp_path / "task.json").write_text(json.dumps({"asserts": ["assert add(2, 3) == 5"]}))
    return tmp_path


def test_passing_candidate_prints_json_and_exits_0(files: Path) -> None:
    code, out = run(str(files / "add.py"), "--tests", str(files / "check.py"), "--json")
    assert code == 0
    verdict = json.loads(out)
    assert verdict["passed"] is True and verdict["verifier"] == "python_tests"
    assert verdict["tests"][0]["name"] == "assert candidate(1, 2) == 3"


def test_failing_candidate_exits_1_with_a_table(files: Path) -> None:
    code, out = run(str(files / "add.py"), "--tests", str(files / "asserts.py"))
    assert code == 1
    assert "FAILED score 0.50" in out
    assert "wrong_answer" in out


def test_io_cases_and_task_files(files: Path) -> None:
    assert run(str(files / "sum.py"), "--tests", str(files / "io.yaml"))[0] == 0
    assert run(str(files / "add.py"), "--tests", str(files / "task.json"))[0] == 0


def test_dataset_task(tmp_path: Path) -> None:
    from forkpath import humaneval_task

    (tmp_path / "body.py").write_text(humaneval_task(0).metadata["canonical_solution"])
    code, out = run(str(tmp_path / "body.py"), "--task", "humaneval/0", "--json")
    assert code == 0
    assert json.loads(out)["score"] == 1.0
    (tmp_path / "wrong.py").write_text("    return True\n")
    assert run(str(tmp_path / "wrong.py"), "--task", "HumanEval/0")[0] == 1


def test_math_answer(tmp_path: Path) -> None:
    (tmp_path / "answer.txt").write_text("So the result is \\boxed{\\frac{1}{2}}.")
    assert run(str(tmp_path / "answer.txt"), "--answer", "0.5")[0] == 0
    assert run(str(tmp_path / "answer.txt"), "--answer", "0.6")[0] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.py", "--task", "humaneval/0"], "candidate file missing.py does not exist"),
        (["{add}"], "give exactly one of --tests FILE, --task DATASET/N, --answer VALUE"),
        (["{add}", "--task", "humaneval/999"], "no HumanEval task '999'"),
        (["{add}", "--task", "mbpp/1"], "unknown dataset in 'mbpp/1'"),
        (["{add}", "--tests", "{dir}/nope.py"], "does not exist"),
        (["{add}", "--tests", "{dir}/bad.json"], "not valid json"),
        (["{add}", "--tests", "{dir}/badtask.json"], "io_cases.0.output: Field required"),
        (["{add}", "--tests", "{dir}/tests.txt"], "unsupported tests file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files: Path, args: list[str], message: str) -> None:
    (files / "bad.json").write_text("{not json")
    (files / "badtask.json").write_text(json.dumps({"io_cases": [{"input": "1"}]}))
    (files / "tests.txt").write_text("assert True")
    filled = [a.format(add=files / "add.py", dir=files) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_candidate_from_stdin(files: Path) -> None:
    result = runner.invoke(app, ["-", "--tests", str(files / "check.py")], input=ADD)
    assert result.exit_code == 0


def test_names_and_messages_are_printed_as_text_not_markup(tmp_path: Path) -> None:
    # '[/x]' is a closing tag without an opening one: as markup, rich raises MarkupError.
    (tmp_path / "echo.py").write_text("def f(s):\n    return s\n")
    (tmp_path / "tests.py").write_text("assert f('[/x]') == '[bold]'\n")
    code, out = run(str(tmp_path / "echo.py"), "--tests", str(tmp_path / "tests.py"))
    assert code == 1  # failed, not crashed
    assert "[/x]" in out
    assert "assert f('[/x]') ==" in out
