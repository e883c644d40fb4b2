"""How fast the ``forkpath`` command starts: ``--help`` of the command and of every subcommand,
side by side with the floor (an interpreter that imports nothing, and one that imports typer).

    python bench/cli_start.py            # 15 runs of each, median and max in seconds

The target (issue: cold start) is < 0.3 s for every line.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = [
    [],
    ["run"],
    ["validate"],
    ["graph"],
    ["batch"],
    ["report"],
    ["compare"],
    ["verify"],
    ["models", "list"],
    ["trace", "show"],
    ["store", "stats"],
    ["router", "label"],
]


def timed(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rows: list[tuple[str, list[float]]] = [
        ("python -c pass (floor)", timed([sys.executable, "-c", "pass"], args.runs)),
        ("python -c 'import typer'", timed([sys.executable, "-c", "import typer"], args.runs)),
    ]
    for command in COMMANDS:
        argv = [sys.executable, "-m", "forkpath._cli", *command, "--help"]
        rows.append((" ".join(["forkpath", *command, "--help"]), timed(argv, args.runs)))
    floor = statistics.median(rows[0][1])
    print(f"{'command':38} {'median s':>9} {'max s':>7} {'over floor':>11}")
    for name, times in rows:
        median = statistics.median(times)
        print(f"{name:38} {median:9.3f} {max(times):7.3f} {median - floor:10.3f}s")


if __name__ == "__main__":
    main()
