"""Sweeps: which strategy, at which budget, on the user's own tasks (``forkpath sweep``).

A grid file names strategy configurations and the budgets to try; every point runs as a batch
over the same tasks, sharing one sample cache so smaller budgets are evaluated on prefixes of
the largest budget's samples; the outcome is accuracy against tokens, wall seconds and dollars,
with bootstrap intervals and the Pareto frontier. ``forkpath sweep --calibrate`` fits the
thresholds of an ``escalate`` configuration on a dev split (see ``docs/choosing.md``).

Example:
    >>> from forkpath import DatasetSpec, load_tasks
    >>> from forkpath.sweep import SweepConfig, analyse, load_grid, run_sweep
    >>> grid = load_grid("grid.yaml")
    >>> runs = await run_sweep(grid, load_tasks(DatasetSpec(name="humaneval", split="dev")),
    ...                        SweepConfig(out_dir=Path("runs/sweep")))
    >>> stats, rows = analyse(runs, grid.spec.prices)
"""

from forkpath.sweep._analysis import (
    AXES,
    Interval,
    PointStats,
    TaskCost,
    analyse,
    bootstrap,
    pareto,
    task_cost,
    write_outputs,
)
from forkpath.sweep._calibrate import CalibrationRow, calibrate_escalate, collect_calibration
from forkpath.sweep._grid import ConfigSpec, Grid, GridSpec, Point, Price, load_grid
from forkpath.sweep._plot import plot_frontiers
from forkpath.sweep._run import PointRun, SweepConfig, run_sweep, store_url

__all__ = [
    "AXES",
    "CalibrationRow",
    "ConfigSpec",
    "Grid",
    "GridSpec",
    "Interval",
    "Point",
    "PointRun",
    "PointStats",
    "Price",
    "SweepConfig",
    "TaskCost",
    "analyse",
    "bootstrap",
    "calibrate_escalate",
    "collect_calibration",
    "load_grid",
    "pareto",
    "plot_frontiers",
    "run_sweep",
    "store_url",
    "task_cost",
    "write_outputs",
]
