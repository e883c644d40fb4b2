"""Commands for flows: ``run``, ``validate``, ``graph`` and ``trace show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from forkpath._cli._term import console, table
from forkpath._errors import ConfigError

if TYPE_CHECKING:
    from forkpath import Task

MAX_INPUT = 1 << 20
"""The largest ``--input`` task read (1 MiB)."""

app = typer.Typer(rich_markup_mode=None)
trace_app = typer.Typer(rich_markup_mode=None, help="Read the JSONL traces of runs.", no_args_is_help=True)
app.add_typer(trace_app, name="trace")


def _task(input_json: str | None, task_ref: str | None) -> Task:
    if (input_json is None) == (task_ref is None):
        raise ConfigError("give exactly one of --input JSON and --task DATASET/N")
    from pydantic import ValidationError

    from forkpath import Task, load_task

    if task_ref is not None:
        return load_task(task_ref)
    assert input_json is not None
    if len(input_json) > MAX_INPUT:
        raise ConfigError(f"--input is larger than {MAX_INPUT // 1024} KiB; give a dataset task with --task")
    try:
        data: Any = json.loads(input_json)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--input is not JSON: {e.msg} at character {e.pos}") from None
    except RecursionError:
        raise ConfigError("--input is not a task: JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"--input is not JSON that can be read: {str(e).split(';')[0]}") from None
    if isinstance(data, str):
        data = {"prompt": data}
    if not isinstance(data, dict):
        raise ConfigError("--input must be a JSON object (a task) or a string (its prompt)")
    data.setdefault("id", "input")
    try:
        return Task.model_validate(data)
    except ValidationError as e:
        # A misspelt field says more than the field it was meant to be.
        first = min(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
        field = ".".join(map(str, first["loc"])) or "task"
        if first["type"] == "extra_forbidden":
            message = f"unknown task field (fields: {', '.join(Task.model_fields)})"
        else:
            message = first["msg"]
        raise ConfigError(f"--input: {field}: {message}"[:1000]) from None


@app.command("run")
def run(
    flow_path: Path = typer.Argument(..., help="The flow file (YAML)."),
    input_json: str | None = typer.Option(
        None, "--input", help='A task as JSON, e.g. \'{"prompt": "..."}\'.'
    ),
    task_ref: str | None = typer.Option(None, "--task", help="A dataset task: humaneval/N or gsm8k/N."),
    run_id: str | None = typer.Option(None, "--run-id", help="Name the run (default: random)."),
    resume: bool = typer.Option(False, "--resume", help="Continue run --run-id from its last checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run a flow on one task and show the answer, the steps and the usage."""
    import asyncio

    from forkpath.flows import Flow

    flow = Flow.from_yaml(flow_path)
    task = _task(input_json, task_ref)

    async def go() -> Any:
        result = None
        async for node, update in flow.stream(task, run_id=run_id, resume=resume):
            if node == "__result__":
                result = update["result"]
            elif not as_json:
                passed = update.get("passed")
                mark = "" if passed is None else (" [green]passed[/]" if passed else " [red]failed[/]")
                console.print(f"[bold]{node}[/] done{mark}", highlight=False)
        return result

    result = asyncio.run(go())
    if as_json:
        print(result.model_dump_json(indent=2, exclude={"trace"}))
        return
    console.rule(f"{result.flow} · run {result.run_id}")
    console.print(result.answer or "(no answer)", markup=False, highlight=False)
    shown = table(title="usage")
    for col in ("model", "calls", "cached", "prompt tokens", "completion tokens", "cost $"):
        shown.add_column(col)
    for model, usage in result.usage.items():
        shown.add_row(
            model,
            str(usage.calls),
            str(usage.cached_calls),
            str(usage.prompt_tokens),
            str(usage.completion_tokens),
            f"{usage.cost:.4f}",
        )
    console.print(shown)
    verdict = "passed" if result.passed else "did not pass" if result.passed is False else "not verified"
    console.print(f"answer {verdict}; score {result.score}; trace: {result.trace_path}")


@app.command("validate")
def validate(
    flow_paths: list[Path] = typer.Argument(..., help="Flow files to check."),
) -> None:
    """Check flow files without running them; exit 0 when all are valid."""
    from forkpath.flows import Flow

    for path in flow_paths:
        Flow.from_yaml(path)
        console.print(f"{path}: ok")


@app.command("graph")
def graph(
    flow_path: Path = typer.Argument(..., help="The flow file."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also draw it to this .svg or .png file."),
) -> None:
    """Print the flow as a Mermaid chart (and draw a picture with --out)."""
    from forkpath.flows import Flow

    flow = Flow.from_yaml(flow_path)
    print(flow.mermaid(), end="")
    if out is not None:
        if out.suffix not in (".svg", ".png"):
            raise ConfigError(f"--out must end in .svg or .png, not {out.suffix or 'nothing'}")
        flow.draw(out)
        console.print(f"drew {out}")


@trace_app.command("show")
def trace_show(
    run: str = typer.Argument(..., help="A run id (under ./runs) or a trace.jsonl path."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir"),
    as_json: bool = typer.Option(False, "--json", help="Print the events as JSONL."),
    tree: Path | None = typer.Option(
        None, "--tree", help="Draw the explored search tree(s) to this .html or .svg file."
    ),
) -> None:
    """Show the events of a run: nodes, strategies, model calls, verdicts (or draw its search tree)."""
    from forkpath._trace import read_trace

    path = Path(run) if run.endswith(".jsonl") else runs_dir / run / "trace.jsonl"
    if not path.is_file():
        raise ConfigError(f"no trace at {path}")
    events = list(read_trace(path))
    if tree is not None:
        from forkpath._tree_view import render_tree

        console.print(f"drew {render_tree(events, tree)}")
        return
    if as_json:
        for event in events:
            print(event.model_dump_json())
        return
    shown = table(title=str(path))
    for col in ("t (s)", "span", "event", "detail"):
        shown.add_column(col)
    start = events[0].time if events else 0.0
    for event in events:
        detail = {
            k: v
            for k, v in event.model_dump().items()
            if k not in ("time", "span", "type") and v not in (None, {}, [])
        }
        shown.add_row(f"{event.time - start:.2f}", event.span or "", event.type, json.dumps(detail)[:120])
    console.print(shown)
