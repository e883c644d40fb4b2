"""Commands: ``forkpath batch``, ``forkpath report``, ``forkpath compare``."""

from __future__ import annotations

import uuid
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forkpath._cli._numbers import real_option
from forkpath._cli._term import console, table
from forkpath._errors import ConfigError

if TYPE_CHECKING:
    from forkpath.batch import BatchSummary, TaskRecord

app = typer.Typer(rich_markup_mode=None)


class Backend(StrEnum):
    """Where tasks run."""

    local = "local"
    ray = "ray"


class Split(StrEnum):
    """Which part of a task set (``forkpath/_datasets.py``: a fixed split by task id)."""

    all = "all"
    dev = "dev"
    test = "test"


class OnBadLine(StrEnum):
    """What a malformed dataset line does."""

    stop = "stop"
    skip = "skip"


@app.command("batch")
def batch(
    flow_path: Path = typer.Argument(..., help="The flow file (YAML)."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="humaneval, gsm8k or a .jsonl file (default: the flow's)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many tasks."),
    offset: int | None = typer.Option(
        None,
        "--offset",
        min=0,
        help="Skip this many tasks first (default: the flow's dataset offset, else 0).",
    ),
    split: Split | None = typer.Option(
        None, "--split", help="dev or test: that fixed part of the task set (default: the flow's, else all)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: runs/<run id>)."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Resume this run (default: the --out folder's name or new)."
    ),
    concurrency: int = typer.Option(
        2, "--concurrency", "-j", min=1, max=1024, help="Tasks in flight at once (Ray: actors)."
    ),
    timeout: float | None = real_option(
        None, "--timeout", low=0, low_open=True, help="Seconds per task before it is recorded as a timeout."
    ),
    retries: int = typer.Option(
        1, "--retries", min=0, max=20, help="Extra attempts of a task after a transient failure."
    ),
    max_calls: int | None = typer.Option(
        None, "--max-calls", min=1, help="Batch-wide: start no new task after this many model calls in all."
    ),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", min=1, help="Batch-wide: start no new task after this many tokens in all."
    ),
    max_cost: float | None = real_option(
        None,
        "--max-cost",
        low=0,
        low_open=True,
        help="Batch-wide: start no new task after this many US dollars.",
    ),
    max_seconds: float | None = real_option(
        None,
        "--max-seconds",
        low=0,
        low_open=True,
        help="Batch-wide: start no new task after this many seconds.",
    ),
    rerun_budget_stopped: bool = typer.Option(
        False,
        "--rerun-budget-stopped",
        help="Also run again the tasks their own budget (the flow's budget:) cut short; by default they are done.",
    ),
    on_bad_line: OnBadLine = typer.Option(
        OnBadLine.stop, "--on-bad-line", help="A malformed JSONL line: stop or skip."
    ),
    backend: Backend = typer.Option(Backend.local, "--backend", help="local (asyncio) or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (with --backend ray)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.md/.html at the end."),
) -> None:
    """Run a flow over a task set; results go to OUT/results.jsonl as they complete. Rerun to resume.

    The flow's budget: limits each task (a task it cuts short is done, with its best answer).
    --max-calls, --max-tokens, --max-cost and --max-seconds limit this whole invocation: once one
    is reached no new task starts and the tasks in flight finish.
    """
    import asyncio

    from forkpath import BudgetLimits, DatasetSpec, load_tasks, parse_dataset
    from forkpath.batch import BatchConfig, check_out_dir, run_batch, write_report
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
    updates: dict[str, object] = {"on_bad_line": on_bad_line.value}
    if offset is not None:
        updates["offset"] = offset
    if limit is not None:
        updates["limit"] = limit
    if split is not None:
        updates["split"] = split.value
    tasks = load_tasks(DatasetSpec.model_validate({**spec.model_dump(), **updates}))
    run_id = run_id or (out.name if out is not None and out.name else uuid.uuid4().hex[:10])
    out = out or Path("runs") / run_id
    check_out_dir(out, what="--out")
    config = BatchConfig(
        run_id=run_id,
        out_dir=out,
        concurrency=concurrency,
        task_timeout_s=timeout,
        retries=retries,
        batch_budget=BudgetLimits(
            max_calls=max_calls, max_tokens=max_tokens, max_cost=max_cost, max_seconds=max_seconds
        ),
        rerun_budget_stopped=rerun_budget_stopped,
        backend=backend.value,
        ray_address=address,
        dataset=spec.path or spec.name,
    )
    store = flow.open_store()  # the flow's store: with its fallback, exactly as `forkpath run`

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
    console.print(_summary_line(summary), highlight=False, soft_wrap=True)
    if report and summary.ran + summary.skipped:
        # the tasks asked for: the folder may also hold records of an earlier invocation's others
        path = write_report([out], tasks=[t.id for t in tasks])
        console.print(f"report: {path} (and {path.with_suffix('.html')})")


def _summary_line(summary: BatchSummary) -> str:
    parts = [f"{summary.ran} run, {summary.skipped} already done (resumed), of {summary.total}"]
    if summary.budget_stopped:
        parts.append(f"{summary.budget_stopped} stopped by their own budget (finished, best answer kept)")
    if summary.failed:
        parts.append(f"{summary.failed} failed (errors or timeouts: a rerun retries them)")
    if summary.stopped == "batch_budget":
        parts.append(
            f"stopped: batch_budget ({summary.batch_limit} limit reached; "
            f"{summary.not_started} not started: a rerun runs them)"
        )
    else:
        parts.append(f"stopped: {summary.stopped}")
    parts.append(f"results: {summary.results_path}")
    return "; ".join(parts)


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run folders (with results.jsonl)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default: the first run folder)."),
) -> None:
    """Write report.md and report.html with plots for one or more runs."""
    from forkpath.batch import check_out_dir, write_report

    for d in run_dirs:
        if not (d / "results.jsonl").is_file():
            raise ConfigError(f"{d}: no results.jsonl (is it a run folder?)")
    if out is not None:
        check_out_dir(out, what="--out")
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
