"""Forking tokens on HumanEval and GSM8K problems (issue 18's must-show), and whether token tree
search's branch points coincide with them.

For each problem: the model's greedy answer, ``--samples`` continuations from every
``--stride``-th token index of it (``forkpath analyze forks``: ``generate_n`` on the batched
engine, cached in ``--store``), the forking tokens (TV shift of the outcome distribution >=
``--threshold`` with a permutation-test p-value <= ``--alpha``) and token tree search's branch
points (``branch_at: uncertain``: top-1 probability below 0.9). A fork at index ``t`` with stride ``s`` lies in ``[t, t + s)``; it
*coincides* with a branch point when one lies in that window. ``chance`` is the fraction of all
windows holding a branch point: what coincidence a fork placed at random would reach.

Writes ``<out>/<dataset>-<n>/forks.json`` and ``forks.png`` per problem (``forkpath view <out>``
shows them) and ``<out>/summary.md``; prints the table. Run it under the bench lock:

    flock /tmp/forkpath-bench.lock .venv/bin/python bench/forks.py \\
        --model local/qwen2.5-coder-0.5b --humaneval 0,1,2,3,4 --gsm8k 0,1,2,3,4 \\
        --samples 8 --stride 8 --max-tokens 320 --threads 2 --parallel 1 \\
        --store runs/forks/cache.db --out runs/forks

A rerun with the same settings replays every continuation from ``--store``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from forkpath._cli._analyze import analyze_task
from forkpath._forks import ForkReport
from forkpath.models import usage_meter


def windows_with_branch_point(report: ForkReport) -> float:
    """The fraction of analysed windows ``[t, t + stride)`` that hold a branch point."""
    starts = [ix.index for ix in report.indexes if ix.index < len(report.tokens)]
    if not starts:
        return 0.0
    points = report.branch_points
    hit = sum(1 for t in starts if any(t <= b < t + report.stride for b in points))
    return hit / len(starts)


def shifts_by_branch_point(report: ForkReport) -> tuple[list[float], list[float]]:
    """The TV shifts of the analysed windows that hold a branch point, and of those that do not."""
    points = report.branch_points
    held: list[float] = []
    free: list[float] = []
    for ix, shift in zip(report.indexes, report.shifts, strict=False):
        (held if any(ix.index <= b < ix.index + report.stride for b in points) else free).append(shift)
    return held, free


def row(ref: str, report: ForkReport, seconds: float, tokens: int, calls: int, cached: int) -> dict[str, Any]:
    token_at = {ix.index: ix.token for ix in report.indexes}
    shared = report.coinciding()
    held, free = shifts_by_branch_point(report)
    return {
        "problem": ref,
        "base_outcome": report.base_outcome,
        "answer_tokens": len(report.tokens),
        "indexes": len(report.indexes),
        "continuations": calls,
        "cached": cached,
        "generated_tokens": tokens,
        "seconds": round(seconds, 1),
        "forks": [f"{t}:{token_at.get(t, '')!r}" for t in report.forks],
        "largest_shift": largest_shift(report),
        "outcomes": len({o for ix in report.indexes for o in ix.counts}),
        "branch_points": len(report.branch_points),
        "forks_at_branch_point": len(shared),
        "chance": round(windows_with_branch_point(report), 3),
        "shifts_at_branch_points": held,
        "shifts_elsewhere": free,
    }


def largest_shift(report: ForkReport) -> str:
    """The largest TV step, where it is and its p-value: what fell short of a fork, or was one."""
    if not report.shifts:
        return "—"
    i = max(range(len(report.shifts)), key=lambda k: (report.shifts[k], -report.p_values[k]))
    return f"{report.shifts[i]:.2f} at {report.indexes[i].index} (p {report.p_values[i]:.3f})"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| problem | base outcome | answer tokens | indexes | continuations (cached) | generated tokens "
        "| s | outcomes | largest shift | forking tokens (index:token) | branch points "
        "| forks at a branch point | chance |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        forks = ", ".join(r["forks"]) or "none"
        coincide = f"{r['forks_at_branch_point']} of {len(r['forks'])}" if r["forks"] else "—"
        lines.append(
            f"| {r['problem']} | {r['base_outcome'][:16]} | {r['answer_tokens']} | {r['indexes']} "
            f"| {r['continuations']} ({r['cached']}) | {r['generated_tokens']} | {r['seconds']} "
            f"| {r['outcomes']} | {r['largest_shift']} | {forks} "
            f"| {r['branch_points']} | {coincide} | {r['chance']:.2f} |"
        )
    forks = sum(len(r["forks"]) for r in rows)
    shared = sum(r["forks_at_branch_point"] for r in rows)
    if forks:
        lines.append(
            f"\nforks at a branch point: {shared} of {forks} ({shared / forks:.0%}); "
            f"chance (mean over problems): {sum(r['chance'] for r in rows) / len(rows):.0%}"
        )
    else:
        lines.append("\nno forking tokens found")
    for dataset in sorted({r["problem"].split("/")[0] for r in rows}):
        mine = [r for r in rows if r["problem"].startswith(dataset + "/")]
        held = [x for r in mine for x in r["shifts_at_branch_points"]]
        free = [x for r in mine for x in r["shifts_elsewhere"]]
        if held and free:
            lines.append(
                f"{dataset}: mean TV shift over a window holding a branch point {sum(held) / len(held):.3f} "
                f"({len(held)} windows), over one holding none {sum(free) / len(free):.3f} ({len(free)} windows)"
            )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    refs = [f"humaneval/{n}" for n in _numbers(args.humaneval)] + [f"gsm8k/{n}" for n in _numbers(args.gsm8k)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.perf_counter()
    for ref in refs:
        t0 = time.perf_counter()
        with usage_meter() as meter:
            report = await analyze_task(
                ref,
                args.model,
                samples=args.samples,
                stride=args.stride,
                max_tokens=args.max_tokens,
                threshold=args.threshold,
                alpha=args.alpha,
                store_url=args.store,
                threads=args.threads,
                parallel=args.parallel,
            )
        seconds = time.perf_counter() - t0
        used = meter.total
        folder = out / ref.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        report.to_json(folder / "forks.json")
        report.plot(folder / "forks.png")
        rows.append(row(ref, report, seconds, used.completion_tokens, used.calls, used.cached_calls))
        print(f"{ref}: {seconds:.1f} s, {used.completion_tokens} tokens, forks {report.forks}", flush=True)
    settings = (
        f"model {args.model}, samples {args.samples}, stride {args.stride}, max tokens {args.max_tokens}, "
        f"threshold {args.threshold}, alpha {args.alpha}, threads {args.threads}, parallel {args.parallel}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    shown = table(rows)
    print(settings)
    print(shown)
    (out / "summary.md").write_text(f"{settings}\n\n{shown}\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=1))


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--humaneval", default="0,1,2,3,4", help="HumanEval problem numbers")
    parser.add_argument("--gsm8k", default="0,1,2,3,4", help="GSM8K problem numbers")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.05, help="largest p-value of a fork's shift")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--store", default="runs/forks/cache.db")
    parser.add_argument("--out", default="runs/forks")
    asyncio.run(main(parser.parse_args()))
