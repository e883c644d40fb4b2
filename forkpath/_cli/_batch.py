"""Commands: ``forkpath batch``, ``forkpath report``, ``forkpath compare``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forkpath._cli._term import console, table
from forkpath._errors import ConfigError

if TYPE_CHECKING:
    from forkpath.batch import BatchSummary, TaskRecord

app = typer.Typer(rich_markup_mode=None)


@app.command("batch")
def batch(
    flow_path: Path = typer.Argument(..., help="The flow file (YAML)."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="humaneval, gsm8k or a .jsonl file (default: the flow's)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="At most this many tasks."),
    offset: int = typer.Option(0, "--offset", help="Skip this many tasks first."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: runs/<run id>)."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Resume this run (default: the --out folder's name or new)."
    ),
    concurrency: int = typer.Option(2, "--concurrency", "-j", help="Tasks in flight at once."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Seconds per task before it is recorded as a timeout."
    ),
    retries: int = typer.Option(1, "--retries", help="Extra attempts for transient failures."),
    on_bad_line: str = typer.Option("stop", "--on-bad-line", help="A malformed JSONL line: stop or skip."),
    backend: str = typer.Option("local", "--backend", help="local (asyncio) or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (with --backend ray)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.md/.html at the end."),
) -> None:
    """Run a flow over a task set; results go to OUT/results.jsonl as they complete. Rerun to resume."""
    import asyncio

    from forkpath import DatasetSpec, load_tasks, parse_dataset
    from forkpath.batch import BatchConfig, run_batch, write_report
    from forkpath.flows import Flow

    flow = Flow.from_yaml(flow_path)
    if dataset is not None:
        spec = parse_dataset(dataset)
    elif flow.spec.dataset is not None:
        spec = flow.spec.dataset
        if spec.path is not None and not Path(spec.path).is_absolute():  # relative to the flow file
            spec = spec.model_copy(update={"path": str(flow.base_dir / spec.path)})
    else:
        raise ConfigError("no dataset: give --dataset or a `dataset:` in the flow")
    if on_bad_line not in ("stop", "skip"):
        raise ConfigError("--on-bad-line is stop or skip")
    if backend not in ("local", "ray"):
        raise ConfigError("--backend is local or ray")
    updates = {"offset": offset or spec.offset, "on_bad_line": on_bad_line}
    if limit is not None:
        updates["limit"] = limit
    spec = DatasetSpec.model_validate({**spec.model_dump(), **updates})
    tasks = load_tasks(spec)
    run_id = run_id or (out.name if out is not None else uuid.uuid4().hex[:10])
    out = out or Path("runs") / run_id
    config = BatchConfig(
        run_id=run_id,
        out_dir=out,
        concurrency=concurrency,
        task_timeout_s=timeout,
        retries=retries,
        budget=flow.spec.budget,
        backend="ray" if backend == "ray" else "local",
        ray_address=address,
        dataset=spec.path or spec.name,
    )
    store = None
    if flow.spec.store is not None:
        from forkpath.store import open_store

        store = open_store(flow.spec.store.url)

    stats = {"passed": 0, "done": 0, "tokens": 0, "cost": 0.0}
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pass {task.fields[rate]}"),
        TextColumn("tokens {task.fields[tokens]}"),
        TextColumn("${task.fields[cost]}"),
        TimeElapsedColumn(),
        console=console.get(),
    )

    async def go() -> BatchSummary:
        try:
            with progress:
                bar = progress.add_task(run_id, total=len(tasks), rate="-", tokens=0, cost="0.0000")

                def on_record(record: TaskRecord) -> None:
                    stats["done"] += 1
                    stats["passed"] += int(bool(record.passed))
                    stats["tokens"] += record.tokens
                    stats["cost"] += record.cost
                    progress.update(
                        bar,
                        advance=1,
                        rate=f"{stats['passed'] / stats['done']:.0%}",
                        tokens=stats["tokens"],
                        cost=f"{stats['cost']:.4f}",
                    )

                summary = await run_batch(flow, tasks, config, store=store, on_record=on_record)
                progress.update(bar, completed=summary.skipped + summary.ran)
                return summary
        finally:
            if store is not None:
                await store.aclose()

    summary = asyncio.run(go())
    console.print(
        f"{summary.ran} run, {summary.skipped} already done (resumed), "
        f"of {summary.total}; stopped: {summary.stopped}; results: {summary.results_path}"
    )
    if report:
        path = write_report([out])
        console.print(f"report: {path} (and {path.with_suffix('.html')})")


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run folders (with results.jsonl)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default: the first run folder)."),
) -> None:
    """Write report.md and report.html with plots for one or more runs."""
    from forkpath.batch import write_report

    for d in run_dirs:
        if not (d / "results.jsonl").is_file():
            raise ConfigError(f"{d}: no results.jsonl (is it a run folder?)")
    path = write_report(run_dirs, out)
    console.print(f"report: {path} (and {path.with_suffix('.html')})")


@app.command("compare")
def compare(run_dirs: list[Path] = typer.Argument(..., help="Run folders to put side by side.")) -> None:
    """Put runs side by side: accuracy, pass@k, tokens, cost, latency, work split."""
    from forkpath.batch import compare_rows

    for d in run_dirs:
        if not (d / "results.jsonl").is_file():
            raise ConfigError(f"{d}: no results.jsonl (is it a run folder?)")
    head, *rows = compare_rows(run_dirs)
    shown = table()
    for col in head:
        shown.add_column(col)
    for row in rows:
        shown.add_row(*row)
    console.print(shown)
