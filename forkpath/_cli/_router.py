"""``forkpath router``: make calibration data and calibrate routers.

Mounted by the core CLI as ``forkpath router label|calibrate``::

    forkpath router label --small local/qwen2.5-coder-0.5b --large local/qwen2.5-coder-1.5b \\
        --tasks humaneval:0-19 --kind token --out runs/labels.jsonl
    forkpath router calibrate runs/labels.jsonl --router logistic --recall 0.9 --holdout 0.3 --out runs/r2r.json
    forkpath router label ... --kind query --out runs/queries.jsonl
    forkpath router calibrate runs/queries.jsonl --router chow_mean --rate 0.3 --out runs/cascade.json

Tasks are ``humaneval`` (all 164), ``humaneval:0-29``, ``humaneval:3,7,12`` or a JSONL file of
tasks (one :class:`~forkpath.Task` object per line).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from forkpath._cli._numbers import real_option
from forkpath._cli._term import LazyConsole, table
from forkpath._errors import ConfigError, ForkpathError

app = typer.Typer(
    rich_markup_mode=None,
    help="Make routing labels and calibrate routers.",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")

_JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _console(stderr: bool = False) -> LazyConsole:
    return LazyConsole(stderr=stderr, highlight=False, soft_wrap=True)


def _guard(work: Callable[[], T]) -> T:
    """Run ``work``; a forkpath error becomes one line on stderr and exit code 2."""
    try:
        return work()
    except ForkpathError as e:
        _console(stderr=True).print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None


def _run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    import asyncio

    return _guard(lambda: asyncio.run(coro()))


@app.command("label")
def label(
    small: str = typer.Option(..., "--small", help="Small model, e.g. local/qwen2.5-coder-0.5b."),
    large: str = typer.Option(..., "--large", help="Large model, e.g. local/qwen2.5-coder-1.5b."),
    tasks: str = typer.Option(
        "humaneval:0-19", "--tasks", help="humaneval, humaneval:0-29, or a tasks .jsonl."
    ),
    kind: str = typer.Option("token", "--kind", help="token: per-token labels; query: cascade records."),
    out: Path = typer.Option(..., "--out", help="Where to write the JSONL records."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, max=32768, help="Most tokens per answer."),
    line_tokens: int = typer.Option(
        48, "--line-tokens", min=1, max=4096, help="Token labels: most tokens per mismatch continuation."
    ),
    window: int = typer.Option(
        8, "--window", min=1, max=1024, help="Token labels: positions in the window features."
    ),
    verifier: str = typer.Option(
        "python_tests", "--verifier", help="Query records: verifier judging answers."
    ),
    as_json: bool = _JSON,
) -> None:
    """Label calibration data: per-token routing labels (R2R, simplified) or per-query cascade records."""
    from forkpath import Task, task_set
    from forkpath.models import get_model
    from forkpath.routers import label_tokens, record_queries, write_records
    from forkpath.verifiers import make_verifier

    def prepare() -> list[Task]:
        if kind not in ("token", "query"):
            raise ConfigError(f"--kind must be token or query, got {kind!r}")
        return task_set(tasks)

    chosen = _guard(prepare)

    async def work() -> dict[str, Any]:
        s_model, l_model = get_model(small), get_model(large)
        if kind == "token":
            records: list[Any] = await label_tokens(
                s_model, l_model, chosen, max_tokens=max_tokens, line_tokens=line_tokens, window=window
            )
        else:
            records = await record_queries(
                s_model, l_model, chosen, make_verifier(verifier), max_tokens=max_tokens
            )
        write_records(out, records)
        summary: dict[str, Any] = {
            "out": str(out),
            "kind": kind,
            "tasks": len(chosen),
            "records": len(records),
        }
        if kind == "token":
            summary["mismatches"] = sum(r.mismatch for r in records)
            summary["divergent"] = sum(r.label for r in records)
        else:
            summary["small_quality"] = sum(r.small_quality for r in records) / max(len(records), 1)
            summary["large_quality"] = sum(r.large_quality for r in records) / max(len(records), 1)
        return summary

    summary = _run(work)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console = _console()
    if kind == "token":
        n = max(summary["records"], 1)
        console.print(
            f"{summary['records']} token labels from {summary['tasks']} tasks -> {out}: "
            f"{summary['mismatches']} mismatches ({summary['mismatches'] / n:.1%}), "
            f"{summary['divergent']} divergent ({summary['divergent'] / n:.1%})"
        )
    else:
        console.print(
            f"{summary['records']} query records -> {out}: small pass@1 {summary['small_quality']:.3f}, "
            f"large pass@1 {summary['large_quality']:.3f}"
        )


@app.command("calibrate")
def calibrate(
    labels: Path = typer.Argument(..., help="Records from `forkpath router label`."),
    router: str = typer.Option(
        "entropy", "--router", help="A router name or .json file, or 'logistic' to train."
    ),
    alpha: float | None = real_option(None, "--alpha", low=0, high=1, help="chow_quantile: the quantile."),
    rate: float | None = real_option(None, "--rate", low=0, high=1, help="Target routing / deferral rate."),
    recall: float | None = real_option(
        None, "--recall", low=0, high=1, low_open=True, help="Target share of positive labels routed."
    ),
    quality: float | None = real_option(
        None, "--quality", low=0, high=1, help="Target cascade quality (query records)."
    ),
    holdout: float = real_option(
        0.3, "--holdout", low=0, high=1, high_open=True, help="Share of tasks held out to check the result."
    ),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed of the held-out split."),
    delta: float = real_option(
        0.1,
        "--delta",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        help="Quality target: confidence of the lower bound.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Where to save the calibrated router (.json)."),
    as_json: bool = _JSON,
) -> None:
    """Set a router's threshold for a target rate, recall or quality; print the cost-quality curve."""
    from forkpath.routers import calibrate_records, read_records, save_router

    def work() -> tuple[Any, Any]:
        records = read_records(labels)
        spec: Any = router
        if alpha is not None:
            if router != "chow_quantile":
                raise ConfigError("--alpha is for --router chow_quantile")
            spec = {"name": "chow_quantile", "alpha": alpha}
        made, report = calibrate_records(
            records,
            spec,
            rate=rate,
            recall=recall,
            quality=quality,
            holdout=holdout,
            seed=seed,
            delta=delta,
            source=str(labels),
        )
        if out is not None:
            save_router(made, out)
        return made, report

    _, report = _guard(work)
    if as_json:
        print(
            json.dumps({"router_file": str(out) if out else None, **report.model_dump(mode="json")}, indent=2)
        )
        return
    _print_report(report, out)


def _print_report(report: Any, out: Path | None) -> None:
    console = _console()
    console.print(
        f"[bold]{report.router}[/] ({report.kind} level), target {report.target}: threshold {report.threshold:.6g}, "
        f"rate {report.calibration_rate:.3f} on {report.calibration_n} calibration {report.kind}s"
    )
    if report.heldout_n:
        held = ", ".join(f"{k} {v:.3f}" for k, v in report.heldout.items())
        console.print(f"held out ({report.heldout_n} {report.kind}s): {held}")
    shown = table(
        title="cost-quality curve (calibration split)"
        if report.kind == "query"
        else "rate vs recall of divergent tokens"
    )
    if report.kind == "query":
        for column in ("deferral rate", "threshold", "pass@1", "cost vs large"):
            shown.add_column(column, justify="right")
        for p in report.curve:
            shown.add_row(f"{p.rate:.2f}", f"{p.threshold:.4g}", f"{p.quality:.3f}", f"{p.cost:.3f}")
    else:
        for column in ("routed", "threshold", "recall"):
            shown.add_column(column, justify="right")
        for p in report.curve:
            shown.add_row(f"{p.rate:.3f}", f"{p.threshold:.4g}", f"{p.quality:.3f}")
    console.print(shown)
    if report.auc is not None:
        console.print(f"AUC-DF {report.auc:.4f} (random deferral {report.auc_random:.4f})")
    if out is not None:
        console.print(f"saved {out}")
