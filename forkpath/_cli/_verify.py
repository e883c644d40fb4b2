"""``forkpath verify``: check a candidate file against a tests file, a dataset task or an answer.

Exit code 0 when the candidate passes, 1 when it fails, 2 when the input is wrong.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from forkpath._cli._numbers import real_option
from forkpath._cli._term import console, err_console, escape, table
from forkpath._errors import ForkpathError

if TYPE_CHECKING:
    from forkpath import Task
    from forkpath.verifiers import Limits, Verdict, Verifier

app = typer.Typer(
    rich_markup_mode=None,
    help="Check candidates against tests.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
_out = console
_err = err_console


class BadInput(Exception):
    """Wrong command-line input, reported in one line."""


@app.command("verify")
def verify(
    candidate: str = typer.Argument(
        ..., help="File with the candidate: code or a model's answer ('-': stdin)."
    ),
    tests: Path | None = typer.Option(
        None,
        "--tests",
        help="Tests: .py (a check(candidate) function or asserts), .json/.yaml (task or io cases).",
    ),
    task: str | None = typer.Option(None, "--task", help="Dataset task: humaneval/N or gsm8k/N."),
    answer: str | None = typer.Option(
        None, "--answer", help="Reference answer: check the candidate as math."
    ),
    entry_point: str | None = typer.Option(
        None, "--entry-point", help="Function under test (default: inferred)."
    ),
    timeout: float = real_option(10.0, "--timeout", low=0.1, high=3600, help="Wall-clock seconds per run."),
    memory_mb: int = typer.Option(
        1024, "--memory-mb", min=128, max=1024 * 1024, help="Address-space limit per run, MiB."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Verify one candidate and print the verdict; exit 0 when it passes."""
    from forkpath.verifiers import Limits

    try:
        text = _read_candidate(candidate)
        the_task, verifier = _setup(
            text, tests, task, answer, entry_point, Limits(timeout_s=timeout, memory_mb=memory_mb)
        )
        import asyncio

        verdict = asyncio.run(verifier.verify(the_task, text))
    except (BadInput, ForkpathError) as e:
        _err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        print(verdict.model_dump_json(indent=2))
    else:
        _show(the_task, verdict)
    raise typer.Exit(0 if verdict.passed else 1)


def _read_candidate(candidate: str) -> str:
    if candidate == "-":
        return sys.stdin.read()
    path = Path(candidate)
    if not path.is_file():
        raise BadInput(f"candidate file {candidate} does not exist")
    return path.read_text(encoding="utf-8", errors="replace")


def _setup(
    text: str,
    tests: Path | None,
    task: str | None,
    answer: str | None,
    entry_point: str | None,
    limits: Limits,
) -> tuple[Task, Verifier]:
    from forkpath import Task, load_task
    from forkpath.verifiers import MathAnswerVerifier, PythonTestsVerifier

    given = [
        name
        for name, value in (("--tests", tests), ("--task", task), ("--answer", answer))
        if value is not None
    ]
    if len(given) != 1:
        raise BadInput("give exactly one of --tests FILE, --task DATASET/N, --answer VALUE")
    if answer is not None:
        return Task(id="cli", prompt="", kind="math", answer=answer), MathAnswerVerifier()
    if task is not None:
        the_task = load_task(task)
        if the_task.kind == "math":
            return the_task, MathAnswerVerifier()
        return the_task, PythonTestsVerifier(limits)
    assert tests is not None
    return _tests_task(tests, text, entry_point), PythonTestsVerifier(limits)


def _tests_task(path: Path, candidate: str, entry_point: str | None) -> Task:
    import yaml
    from pydantic import ValidationError

    from forkpath import IOCase, Task

    if not path.is_file():
        raise BadInput(f"tests file {path} does not exist")
    source = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix == ".py":
        try:
            tree = ast.parse(source)
        except SyntaxError as e:
            raise BadInput(f"{path}:{e.lineno}: tests file does not compile: {e.msg}") from None
        if any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body):
            name = entry_point or _only_function(candidate)
            return Task(id=path.stem, prompt="", kind="code", test=source, entry_point=name)
        asserts = [ast.get_source_segment(source, stmt) or "" for stmt in tree.body]
        return Task(id=path.stem, prompt="", kind="code", asserts=asserts, entry_point=entry_point)
    if suffix in (".json", ".yaml", ".yml"):
        try:
            data: Any = json.loads(source) if suffix == ".json" else yaml.safe_load(source)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise BadInput(f"{path}: not valid {suffix[1:]}: {str(e).splitlines()[0]}") from None
        try:
            if isinstance(data, list):
                cases = [IOCase.model_validate(case) for case in data]
                return Task(id=path.stem, prompt="", kind="code", io_cases=cases, entry_point=entry_point)
            if isinstance(data, dict):
                return Task.model_validate({"id": path.stem, "prompt": "", "kind": "code", **data})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadInput(f"{path}: {where}: {first['msg']}") from None
        raise BadInput(f"{path}: expected a task mapping or a list of {{input, output}} cases")
    raise BadInput(f"{path}: unsupported tests file (use .py, .json, .yaml)")


def _only_function(candidate: str) -> str:
    from forkpath.verifiers import extract_code

    try:
        tree = ast.parse(extract_code(candidate))
    except SyntaxError:
        raise BadInput(
            "cannot infer the function under test (the candidate does not parse); give --entry-point"
        ) from None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(names) != 1:
        raise BadInput(
            f"cannot infer the function under test from {names or 'no functions'}; give --entry-point"
        )
    return names[0]


def _show(task: Task, verdict: Verdict) -> None:
    # Test names and messages come from the candidate and the tests: text, never markup.
    shown = table(title=escape(f"{task.id}: {verdict.verifier}"), show_lines=False)
    for column in ("test", "result", "reason", "message", "s"):
        shown.add_column(column, overflow="fold")
    for test in verdict.tests:
        shown.add_row(
            escape(test.name),
            "[green]pass[/]" if test.passed else "[red]fail[/]",
            escape(test.reason),
            escape(test.message),
            f"{test.duration_s:.3f}",
        )
    _out.print(shown)
    colour = "green" if verdict.passed else "red"
    _out.print(
        f"[bold {colour}]{'PASSED' if verdict.passed else 'FAILED'}[/] score {verdict.score:.2f}, "
        f"{len(verdict.tests) - len(verdict.failures)}/{len(verdict.tests)} tests, "
        f"isolation: {escape(verdict.isolation)}, {verdict.duration_s:.2f} s",
        highlight=False,
        soft_wrap=True,
    )
