"""Command: ``forkpath sweep`` (which strategy, at which budget; ``--calibrate`` fits escalate).

    forkpath sweep grid.yaml --dataset humaneval --split dev --limit 20 --out runs/sweep-dev
    forkpath sweep grid.yaml --dataset humaneval --split dev --calibrate escalate \\
        --target-accuracy 0.7 --save runs/escalate.json
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from forkpath._cli._batch import Backend, Split
from forkpath._cli._numbers import real_option
from forkpath._cli._term import console, table
from forkpath._errors import ConfigError

if TYPE_CHECKING:
    from forkpath._types import Task
    from forkpath.sweep import Grid, SweepConfig

app = typer.Typer(rich_markup_mode=None)


class CostMeasure(StrEnum):
    """What --target-cost counts."""

    tokens = "tokens"
    wall_s = "wall_s"
    dollars = "dollars"


@app.command("sweep")
def sweep(
    grid_path: Path = typer.Argument(..., help="The grid file (YAML): models, configurations, budgets."),
    dataset: str = typer.Option(..., "--dataset", help="humaneval, gsm8k or a .jsonl file."),
    split: Split = typer.Option(Split.dev, "--split", help="dev (tuning), test (reporting) or all."),
    fields: str | None = typer.Option(
        None, "--fields", help="JSONL only: which field holds each part, e.g. answer=answer,prompt=question."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many tasks of the split."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many tasks of the split first."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default: runs/sweep-<grid>-<split>)."
    ),
    concurrency: int = typer.Option(
        1, "--concurrency", "-j", min=1, max=1024, help="Tasks in flight per point."
    ),
    timeout: float | None = real_option(
        None, "--timeout", low=0, low_open=True, help="Seconds per task before it is recorded as a timeout."
    ),
    backend: Backend = typer.Option(Backend.local, "--backend", help="local (asyncio) or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (with --backend ray)."),
    calibrate: str | None = typer.Option(
        None, "--calibrate", help="Fit the thresholds of this escalate configuration instead of sweeping."
    ),
    target_accuracy: float | None = real_option(
        None, "--target-accuracy", low=0, high=1, help="With --calibrate: the cheapest ladder this accurate."
    ),
    target_cost: float | None = real_option(
        None,
        "--target-cost",
        low=0,
        low_open=True,
        help="With --calibrate: the best ladder at most this costly.",
    ),
    cost: CostMeasure = typer.Option(
        CostMeasure.tokens, "--cost", help="With --calibrate: what cost counts."
    ),
    save: Path | None = typer.Option(
        None, "--save", help="With --calibrate: the thresholds file (default: OUT/<config>.thresholds.json)."
    ),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="Draw accuracy against each cost (matplotlib)."
    ),
) -> None:
    """Run every configuration of a grid at every budget over a task split; rerun to resume.

    Writes OUT/sweep.json, sweep.csv, tasks.csv and accuracy_vs_{tokens,wall_s,dollars}.png,
    and prints the table with 95% bootstrap intervals; * marks the Pareto frontier.
    """
    import asyncio

    from forkpath import DatasetSpec, load_tasks, parse_dataset
    from forkpath.sweep import SweepConfig, load_grid

    if calibrate is None and (target_accuracy is not None or target_cost is not None or save is not None):
        raise ConfigError("--target-accuracy, --target-cost and --save go with --calibrate")
    if calibrate is not None and split.value == "test":
        raise ConfigError("--calibrate reads the dev split only; the test split is for reporting")
    grid = load_grid(grid_path, calibrating=calibrate)
    spec = parse_dataset(dataset, split.value)
    updates: dict[str, object] = {"offset": offset, "limit": limit}
    if fields is not None:
        if spec.name != "jsonl":
            raise ConfigError("--fields goes with a .jsonl dataset")
        pairs = [p.partition("=") for p in fields.split(",") if p.strip()]
        if not pairs or any(not k.strip() or not sep or not v.strip() for k, sep, v in pairs):
            raise ConfigError(
                f"--fields {fields!r}: give part=field pairs, e.g. answer=answer,prompt=question"
            )
        updates["fields"] = {k.strip(): v.strip() for k, _, v in pairs}
    tasks = load_tasks(DatasetSpec.model_validate({**spec.model_dump(), **updates}))
    if not tasks:
        raise ConfigError(f"no tasks in {dataset} split {split.value}")
    out = out or Path("runs") / f"sweep-{grid.spec.name}-{split.value}"
    config = SweepConfig(
        out_dir=out,
        concurrency=concurrency,
        task_timeout_s=timeout,
        backend=backend.value,
        ray_address=address,
        dataset=f"{dataset}:{split.value}",
    )
    if calibrate is not None:
        _calibrate(
            grid,
            calibrate,
            tasks,
            config,
            target_accuracy,
            target_cost,
            cost.value,
            save,
            dataset,
            split.value,
        )
        return
    asyncio.run(_sweep(grid, tasks, config, plots))


async def _sweep(grid: Grid, tasks: list[Task], config: SweepConfig, plots: bool) -> None:
    from forkpath.sweep import PointRun, analyse, plot_frontiers, run_sweep, write_outputs

    def on_point(run: PointRun) -> None:
        s = run.summary
        console.print(
            f"{run.point.name}: {s.ran} run, {s.skipped} resumed, {s.failed} failed", highlight=False
        )

    runs = await run_sweep(grid, tasks, config, on_point=on_point)
    stats, rows = analyse(runs, grid.spec.prices)
    meta = {"grid": grid.spec.name, "dataset": config.dataset, "n_tasks": len({r.task_id for r in rows})}
    paths = write_outputs(config.out_dir, stats, rows, meta)
    if plots:
        paths += plot_frontiers(
            stats, config.out_dir, title=f"{grid.spec.name} on {config.dataset} ({meta['n_tasks']} tasks)"
        )
    shown = table(
        "point",
        "tasks",
        "accuracy [95% CI]",
        "tokens/task",
        "wall s/task",
        "$/task",
        "calls/task",
        title=grid.spec.name,
    )
    for s in stats:
        mark = {a: "*" if s.frontier[a] else "" for a in s.frontier}
        shown.add_row(
            s.point,
            str(s.tasks),
            f"{s.accuracy.mean:.3f} [{s.accuracy.low:.3f}, {s.accuracy.high:.3f}]",
            f"{s.tokens.mean:.0f}{mark['tokens']}",
            f"{s.wall_s.mean:.2f}{mark['wall_s']}",
            f"{s.dollars.mean:.6f}{mark['dollars']}",
            f"{s.calls:.2f}",
        )
    console.print(shown)
    console.print("* on the Pareto frontier of accuracy against that cost")
    for path in paths:
        console.print(f"wrote {path}", highlight=False)


def _calibrate(
    grid: Grid,
    name: str,
    tasks: list[Task],
    config: SweepConfig,
    target_accuracy: float | None,
    target_cost: float | None,
    cost: str,
    save: Path | None,
    dataset: str,
    split: str,
) -> None:
    import asyncio

    from forkpath.strategies import Stage, save_thresholds
    from forkpath.sweep import calibrate_escalate, collect_calibration, store_url

    if (target_accuracy is None) == (target_cost is None):
        raise ConfigError("--calibrate needs exactly one of --target-accuracy and --target-cost")
    if name not in grid.spec.configs:
        raise ConfigError(f"no configuration {name!r} in the grid (it has {', '.join(grid.spec.configs)})")
    rows = asyncio.run(
        collect_calibration(grid, name, tasks, config.out_dir, store_url=store_url(grid, config))
    )
    stages = [Stage.model_validate(s) for s in grid.spec.configs[name].params.get("stages", [])]
    thresholds = calibrate_escalate(
        rows,
        [s.gate for s in stages[:-1]],
        target_accuracy=target_accuracy,
        target_cost=target_cost,
        cost=cost,  # type: ignore[arg-type]
        source={"dataset": dataset, "split": split},
    )
    path = save_thresholds(thresholds, save or config.out_dir / f"{name}.thresholds.json")
    fitted = thresholds.fitted
    shown = table(
        "stage",
        "gate",
        "threshold",
        "reached by",
        "stage accuracy",
        f"stage {cost}",
        title=f"{name} on {len(rows)} dev tasks",
    )
    for i, stage in enumerate(stages):
        gate = stage.gate or "-"
        threshold = thresholds.thresholds[i] if i < len(thresholds.thresholds) else None
        shown.add_row(
            f"{i}: {stage.strategy}",
            gate,
            "-" if i == len(stages) - 1 else ("never stop" if threshold is None else f"{threshold:.4g}"),
            f"{fitted['escalated'][i]:.0%}",
            f"{fitted['stage_accuracy'][i]:.3f}",
            f"{fitted['stage_cost'][i]:.4g}",
        )
    console.print(shown)
    console.print(
        f"ladder on dev: accuracy {fitted['accuracy']:.3f}, mean {cost} {fitted['cost']:.4g}; thresholds: {path}",
        highlight=False,
    )
