"""The markdown tables of docs/benchmarks.md from a sweep's sweep.json (and the thresholds file).

    python bench/sweep/report.py bench/results/sweep-humaneval-test [bench/results/sweep-humaneval-dev]

Prints every point with its 95% bootstrap intervals, then each ``escalate*`` configuration against
the most accurate fixed configuration (the target of issue 17: its accuracy at <= 50% of its
tokens and wall time), with the thresholds it was fitted to on dev (a dev directory holds one
``<config>.thresholds.json`` per ladder; a file path names one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1])
    data = json.loads((out / "sweep.json").read_text())
    points = data["points"]
    print(f"{data['grid']} on {data['dataset']}, {data['n_tasks']} tasks\n")
    print(
        "| point | accuracy [95% CI] | tokens / task [CI] | wall s / task [CI] | calls / task | frontier (tokens, wall) |"
    )
    print("|---|---|---|---|---|---|")
    for p in points:
        a, t, w = p["accuracy"], p["tokens"], p["wall_s"]
        front = ", ".join(k for k in ("tokens", "wall_s") if p["frontier"][k]) or "-"
        print(
            f"| {p['point']} | {a['mean']:.3f} [{a['low']:.3f}, {a['high']:.3f}] "
            f"| {t['mean']:.0f} [{t['low']:.0f}, {t['high']:.0f}] | {w['mean']:.1f} [{w['low']:.1f}, {w['high']:.1f}] "
            f"| {p['calls']:.2f} | {front} |"
        )
    ladders = [p for p in points if p["config"].startswith("escalate")]
    fixed = [p for p in points if not p["config"].startswith("escalate")]
    if not fixed:
        return
    best = max(fixed, key=lambda p: (p["accuracy"]["mean"], -p["tokens"]["mean"]))
    dev = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    for ladder in ladders:
        compare(data, ladder, best)
        saved_path = dev / f"{ladder['config']}.thresholds.json" if dev and dev.is_dir() else dev
        if saved_path is not None and saved_path.exists():
            saved = json.loads(saved_path.read_text())
            fitted = saved["fitted"]
            print(
                f"thresholds {saved['thresholds']} for gates {saved['gates']}, fitted on {fitted['tasks']} dev "
                f"tasks to {saved['target']}: dev accuracy {fitted['accuracy']:.3f}, mean {fitted['cost_measure']} "
                f"{fitted['cost']:.0f}, share reaching each stage {fitted['escalated']}; per-stage dev accuracy "
                f"{fitted['stage_accuracy']}, cost {fitted['stage_cost']}"
            )


def compare(data: dict, ladder: dict, best: dict) -> None:
    """One ladder against the most accurate fixed point: cost ratios and the paired accuracy
    difference with a bootstrap interval over tasks."""
    import numpy as np

    print(
        f"\n{ladder['point']} vs the most accurate fixed point ({best['point']}): accuracy "
        f"{ladder['accuracy']['mean']:.3f} vs {best['accuracy']['mean']:.3f}; tokens "
        f"{ladder['tokens']['mean'] / best['tokens']['mean']:.2f}x; wall "
        f"{ladder['wall_s']['mean'] / best['wall_s']['mean']:.2f}x"
    )
    rows = data["tasks"]
    mine = {r["task_id"]: r["passed"] for r in rows if r["point"] == ladder["point"]}
    theirs = {r["task_id"]: r["passed"] for r in rows if r["point"] == best["point"]}
    diffs = np.array([float(mine[t]) - float(theirs[t]) for t in mine if t in theirs])
    if diffs.size:
        means = diffs[np.random.default_rng(0).integers(0, diffs.size, (2000, diffs.size))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        print(
            f"paired accuracy difference ({ladder['point']} - {best['point']}): "
            f"{diffs.mean():+.3f} [{low:+.3f}, {high:+.3f}]"
        )


if __name__ == "__main__":
    main()
