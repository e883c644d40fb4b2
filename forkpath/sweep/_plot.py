"""Accuracy against tokens, wall seconds and dollars, one PNG each, the frontier drawn through.

matplotlib is imported here only (the ``Agg`` backend: no display); without it the plots are
skipped with a warning and the table, JSON and CSV still tell everything.
"""

from __future__ import annotations

import logging
from pathlib import Path

from forkpath.sweep._analysis import AXES, PointStats

logger = logging.getLogger(__name__)

_LABELS = {"tokens": "tokens per task", "wall_s": "wall seconds per task", "dollars": "US dollars per task"}


def plot_frontiers(stats: list[PointStats], out_dir: Path, *, title: str) -> list[Path]:
    """Write ``accuracy_vs_<axis>.png`` for each axis; return the paths (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    written: list[Path] = []
    configs = sorted({s.config for s in stats})
    colours = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(configs)}
    for axis in AXES:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for config in configs:
            mine = [s for s in stats if s.config == config]
            xs = [getattr(s, axis).mean for s in mine]
            ys = [s.accuracy.mean for s in mine]
            yerr = [
                [s.accuracy.mean - s.accuracy.low for s in mine],
                [s.accuracy.high - s.accuracy.mean for s in mine],
            ]
            order = sorted(range(len(mine)), key=lambda i: xs[i])
            ax.errorbar(
                [xs[i] for i in order],
                [ys[i] for i in order],
                yerr=[[yerr[0][i] for i in order], [yerr[1][i] for i in order]],
                marker="o",
                capsize=3,
                color=colours[config],
                label=config,
                alpha=0.85,
            )
            for s, x, y in zip(mine, xs, ys, strict=True):
                if s.param is not None:
                    ax.annotate(
                        f"{s.param}={s.value}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
                    )
        front = sorted((s for s in stats if s.frontier[axis]), key=lambda s: getattr(s, axis).mean)
        ax.plot(
            [getattr(s, axis).mean for s in front],
            [s.accuracy.mean for s in front],
            linestyle="--",
            color="black",
            linewidth=1,
            label="Pareto frontier",
        )
        ax.scatter(
            [getattr(s, axis).mean for s in front],
            [s.accuracy.mean for s in front],
            s=140,
            facecolors="none",
            edgecolors="black",
        )
        if axis != "dollars" or any(s.dollars.mean > 0 for s in stats):
            positive = [getattr(s, axis).mean for s in stats if getattr(s, axis).mean > 0]
            if positive and max(positive) / min(positive) > 20:
                ax.set_xscale("log")
        ax.set_xlabel(_LABELS[axis])
        ax.set_ylabel("accuracy (95% bootstrap interval)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"accuracy_vs_{axis}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
