"""Routing between a small and a large local model on HumanEval: one run, one table.

Models: ``local/qwen2.5-coder-0.5b`` (small) and ``local/qwen2.5-coder-1.5b`` (large), greedy,
the default code prompt of ``forkpath.strategies`` (one ```python block), pass@1 by the
``python_tests`` verifier. Two disjoint HumanEval subsets, fixed:

- calibration: HumanEval/144..163 (the last 20; ``--calib-limit`` takes the first N of them).
  The large model's answers are labelled (``forkpath router label``, token kind) and both models
  answer (query kind); from these: the entropy threshold and the learned router of token routing
  (both at a 15% target share of large-model tokens), the window-entropy trigger of segment
  offload (2% of tokens), and the cascade's Chow-Average thresholds at 30% and 60% deferral.
- evaluation: HumanEval/0..29 (``--limit`` takes the first N).

Methods, run per problem one after another (so drift on this shared machine hits all alike),
each from a cold KV cache: small alone, large alone, token_routing (entropy; learned),
segment_offload, cascade at two deferral rates, speculative_decoding. Answers are kept, and
verified again by ``--report-from``. The table reports pass@1,
the share of tokens (or requests) the large model handled, and wall time relative to the large
model alone. A second table gives the bound this machine sets: each model's prefill and decode
speed, measured, and what they allow. The large model is loaded ``batch_invariant`` (greedy
speculative decoding needs it to be exact), for every row alike. ``--only speculative`` skips
calibration, which only the routers need.

    python bench/routing.py [--limit 30] [--calib-limit 20] [--max-tokens 384] [--threads 1]
                            [--out runs/bench-routing] [--reuse-calibration] [--report-from]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from forkpath import Task, humaneval_task
from forkpath._prompts import task_messages
from forkpath.models import GenerateRequest, Model, get_model
from forkpath.routers import label_tokens, record_queries, save_router, write_records
from forkpath.routers._fit import calibrate_records
from forkpath.strategies._base import Context, StrategyResult
from forkpath.strategies._cascade import cascade
from forkpath.strategies._segment_offload import segment_offload
from forkpath.strategies._speculative import speculative_decoding
from forkpath.strategies._token_routing import token_routing
from forkpath.verifiers import make_verifier

SMALL, LARGE = "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"
EVAL = list(range(0, 30))
CALIBRATION = list(range(144, 164))
TOKEN_RATE = 0.15
SEGMENT_RATE = 0.02
CASCADE_RATES = (0.3, 0.6)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cold(*models: Model) -> None:
    """Empty the models' KV caches so every method pays its own prompt prefill."""
    for model in models:
        model._engine.scheduler.forget()  # type: ignore[attr-defined]


# -- the machine's bound ---------------------------------------------------------------------------
async def measure_speeds(
    small: Model, large: Model, prompt: list[int], rounds: int = 5, steps: int = 8
) -> dict[str, dict[str, float]]:
    """Prefill and decode speed of each model, and the cost of verifying drafts of 1..8 tokens.

    The two models are measured in alternation, ``rounds`` times, and medians are kept, so load
    from other processes on this shared machine hits both alike.
    """
    samples: dict[str, dict[str, list[float]]] = {m.id: {} for m in (small, large)}

    def add(model: Model, key: str, value: float) -> None:
        samples[model.id].setdefault(key, []).append(value)

    for _ in range(rounds):
        for model in (small, large):
            cold(model)
            started = time.perf_counter()
            last = await model.next_token_logprobs(prompt)  # type: ignore[attr-defined]
            add(model, "prefill_tps", len(prompt) / (time.perf_counter() - started))
            tokens = [*prompt]
            started = time.perf_counter()
            for _ in range(steps):
                tokens.append(int(np.argmax(last)))
                last = await model.next_token_logprobs(tokens)  # type: ignore[attr-defined]
            step = (time.perf_counter() - started) / steps
            add(model, "step_s", step)
            for gamma in range(1, 9):
                draft = [*tokens[len(prompt) :], *[tokens[-1]] * 8][:gamma]
                started = time.perf_counter()
                await model.continuation_logprobs(prompt, draft)  # type: ignore[attr-defined]
                add(model, f"verify{gamma}_steps", (time.perf_counter() - started) / step)
    out: dict[str, dict[str, float]] = {}
    for model_id, values in samples.items():
        out[model_id] = {key: statistics.median(v) for key, v in values.items()}
        out[model_id]["decode_tps"] = 1.0 / out[model_id]["step_s"]
    return out


# -- calibration -----------------------------------------------------------------------------------
async def calibrate(
    small: Model, large: Model, tasks: list[Task], max_tokens: int, out: Path, verifier: Any
) -> dict[str, Any]:
    log(f"calibration: labelling {len(tasks)} tasks (token level) ...")
    started = time.perf_counter()
    labels = await label_tokens(small, large, tasks, max_tokens=max_tokens)
    write_records(out / "token_labels.jsonl", labels)
    log(
        f"  {len(labels)} tokens, {sum(r.mismatch for r in labels)} mismatches, {sum(r.label for r in labels)} divergent ({time.perf_counter() - started:.0f}s)"
    )
    entropy_router, entropy_report = calibrate_records(labels, "entropy", rate=TOKEN_RATE)
    learned_router, learned_report = calibrate_records(labels, "logistic", rate=TOKEN_RATE)
    window_router, window_report = calibrate_records(
        labels, {"name": "window_entropy", "threshold": 1.0}, rate=SEGMENT_RATE
    )
    log("calibration: both models answer (query level) ...")
    started = time.perf_counter()
    queries = await record_queries(small, large, tasks, verifier, max_tokens=max_tokens)
    write_records(out / "queries.jsonl", queries)
    log(
        f"  small pass@1 {np.mean([q.small_quality for q in queries]):.3f}, large {np.mean([q.large_quality for q in queries]):.3f} ({time.perf_counter() - started:.0f}s)"
    )
    cascades = {rate: calibrate_records(queries, "chow_mean", rate=rate)[0] for rate in CASCADE_RATES}
    routers = {"entropy": entropy_router, "learned": learned_router, "window": window_router}
    routers.update({f"cascade{rate}": router for rate, router in cascades.items()})
    for name, router in routers.items():
        save_router(router, out / f"router_{name}.json")
    return {
        **summarize_calibration(routers, labels),
        "learned_recall_at_rate": learned_report.curve,
        "entropy_recall_at_rate": entropy_report.curve,
        "window_threshold": window_report.threshold,
    }


NO_CALIBRATION: dict[str, Any] = {"routers": {}, "thresholds": {}, "label_tokens": 0}
"""What stands for calibration when ``--only`` picks methods that need no router."""
UNCALIBRATED = ("small", "large", "speculative")
"""Name prefixes of the methods that need no router."""


def load_calibration(out: Path) -> dict[str, Any]:
    """The routers and label statistics a previous run saved in ``out``."""
    from forkpath.routers import load_router, read_records

    labels = read_records(out / "token_labels.jsonl")
    names = ["entropy", "learned", "window", *(f"cascade{rate}" for rate in CASCADE_RATES)]
    routers = {name: load_router(out / f"router_{name}.json") for name in names}
    return summarize_calibration(routers, labels)


def summarize_calibration(routers: dict[str, Any], labels: list[Any]) -> dict[str, Any]:
    """The routers with their thresholds and the token labels' statistics."""
    return {
        "routers": routers,
        "thresholds": {name: router.threshold for name, router in routers.items()},
        "label_tokens": len(labels),
        "mismatch_rate": float(np.mean([r.mismatch for r in labels])),
        "divergent_rate": float(np.mean([r.label for r in labels])),
    }


# -- evaluation ------------------------------------------------------------------------------------
Outcome = tuple[str, float, dict[str, Any]]


def methods(
    routers: dict[str, Any], max_tokens: int
) -> dict[str, Callable[[Task, Context], Awaitable[Outcome]]]:
    def via(
        strategy: Any, share: Callable[[StrategyResult], float]
    ) -> Callable[[Task, Context], Awaitable[Outcome]]:
        async def run(task: Task, context: Context) -> Outcome:
            result = await strategy(task, context)
            info = {k: v for k, v in result.info.items() if k not in ("large_positions", "features")}
            return result.answer or "", share(result), info

        return run

    async def small_alone(task: Task, context: Context) -> Outcome:
        result = await context.models["small"].generate(
            GenerateRequest(messages=task_messages(task), max_tokens=max_tokens)
        )
        return result.text, 0.0, {}

    async def large_alone(task: Task, context: Context) -> Outcome:
        result = await context.models["large"].generate(
            GenerateRequest(messages=task_messages(task), max_tokens=max_tokens)
        )
        return result.text, 1.0, {"token_ids": result.token_ids}

    token_share = lambda r: r.info["large_share"]  # noqa: E731
    speculative = {"speculative_decoding": via(speculative_decoding(max_tokens=max_tokens), lambda r: 1.0)}
    if not routers:  # no calibration was run: the methods that need none
        return {"small alone": small_alone, "large alone": large_alone, **speculative}
    return {
        "small alone": small_alone,
        "large alone": large_alone,
        "token_routing (entropy)": via(
            token_routing(router=routers["entropy"], max_tokens=max_tokens), token_share
        ),
        "token_routing (learned)": via(
            token_routing(router=routers["learned"], max_tokens=max_tokens), token_share
        ),
        "segment_offload": via(
            segment_offload(router=routers["window"], estimator="full", max_tokens=max_tokens), token_share
        ),
        **{
            f"cascade (defer {rate:.0%})": via(
                cascade(router=routers[f"cascade{rate}"], max_tokens=max_tokens),
                lambda r: float(r.info["deferred"]),
            )
            for rate in CASCADE_RATES
        },
        **speculative,
    }


async def check_verifier(verifier: Any, task: Task) -> None:
    """Refuse to benchmark with a verifier that fails a known-good answer (a broken sandbox)."""
    answer = "```python\n" + task.prompt + task.metadata["canonical_solution"] + "\n```"
    verdict = await verifier.verify(task, answer)
    if not verdict.passed:
        raise SystemExit(f"the verifier fails the canonical solution of {task.id}: {verdict.summary()}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--limit", type=int, default=30, help="evaluation problems: the first N of HumanEval/0..29"
    )
    parser.add_argument(
        "--calib-limit", type=int, default=20, help="calibration problems: first N of HumanEval/144..163"
    )
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads per model (1 suits a shared machine)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-routing"))
    parser.add_argument(
        "--reuse-calibration", action="store_true", help="use the labels and routers already in --out"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated name prefixes of the methods to run (default: all)"
    )
    parser.add_argument(
        "--report-from",
        action="store_true",
        help="print the report of the (possibly interrupted) run in --out",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    verifier = make_verifier("python_tests")
    eval_tasks = [humaneval_task(i) for i in EVAL[: args.limit]]
    await check_verifier(verifier, eval_tasks[0])
    if args.report_from:
        await report_from(args, verifier)
        return
    small, large = get_model(SMALL, n_threads=args.threads), large_model(args)
    context = Context({"small": small, "large": large})
    calib_tasks = [humaneval_task(i) for i in CALIBRATION[: args.calib_limit]]
    started_all = time.perf_counter()

    prompt = small.chat_prefix(task_messages(eval_tasks[0]))  # type: ignore[attr-defined]
    speeds = await measure_speeds(small, large, prompt)
    (args.out / "speeds.json").write_text(json.dumps(speeds, indent=1))
    if args.only and all(p.strip().startswith(UNCALIBRATED) for p in args.only.split(",")):
        calibration = dict(NO_CALIBRATION)
    elif args.reuse_calibration:
        calibration = load_calibration(args.out)
    else:
        calibration = await calibrate(small, large, calib_tasks, args.max_tokens, args.out, verifier)
    runs = methods(calibration["routers"], args.max_tokens)
    if args.only:
        prefixes = ("large alone", *(p.strip() for p in args.only.split(",")))  # the report's yardstick
        runs = {name: run for name, run in runs.items() if name.startswith(prefixes)}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for n, task in enumerate(eval_tasks, 1):
        for name, run in runs.items():
            cold(small, large)
            started = time.perf_counter()
            text, share, info = await run(task, context)
            seconds = time.perf_counter() - started
            verdict = await verifier.verify(task, text)
            rows[name].append(
                {
                    "task": task.id,
                    "passed": verdict.passed,
                    "share": share,
                    "seconds": seconds,
                    "text": text,
                    "info": info,
                }
            )
        log(
            f"[{n}/{len(eval_tasks)}] {task.id}: "
            + ", ".join(f"{k.split(' ')[0][:8]} {int(v[-1]['passed'])}" for k, v in rows.items())
        )
        (args.out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    await check_verifier(verifier, eval_tasks[-1])  # the sandbox still works at the end
    calibration["divergences"] = await divergences(large, rows)
    (args.out / "divergences.json").write_text(json.dumps(calibration["divergences"], indent=1))
    report(rows, speeds, calibration, args, time.perf_counter() - started_all)


async def report_from(args: Any, verifier: Any) -> None:
    """The report of an earlier run from its files: answers verified again,
    speeds measured again if they are missing."""
    rows = json.loads((args.out / "results.json").read_text())
    n = min(len(v) for v in rows.values())
    rows = {name: results[:n] for name, results in rows.items()}  # whole problems only
    for results in rows.values():
        for r in results:
            r["passed"] = (await verifier.verify(humaneval_task(r["task"]), r["text"])).passed
    large = large_model(args)
    speeds_file = args.out / "speeds.json"
    if speeds_file.exists():
        speeds = json.loads(speeds_file.read_text())
    else:
        small = get_model(SMALL, n_threads=args.threads)
        prompt = small.chat_prefix(task_messages(humaneval_task(0)))  # type: ignore[attr-defined]
        speeds = await measure_speeds(small, large, prompt)
        speeds_file.write_text(json.dumps(speeds, indent=1))
    needs_routers = any(not name.startswith(UNCALIBRATED) for name in rows)
    calibration = load_calibration(args.out) if needs_routers else dict(NO_CALIBRATION)
    calibration["divergences"] = await divergences(large, rows)
    report(rows, speeds, calibration, args, float("nan"))


def large_model(args: Any) -> Model:
    """The large model, batch-invariant: greedy speculative decoding needs its verification batches
    to give the logits one-token decoding gives, and every row uses the same large model."""
    return get_model(LARGE, n_threads=args.threads, batch_invariant=True)


async def divergences(large: Model, rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """:func:`row_divergences` of every speculative row."""
    return {name: await row_divergences(large, rows, name) for name in rows if name.startswith("speculative")}


async def row_divergences(
    large: Model, rows: dict[str, list[dict[str, Any]]], name: str
) -> list[dict[str, Any]]:
    """Where speculative greedy output differs from the large model alone, and how close the
    large model's top two tokens were there (a near-tie within float noise, or a real bug)."""
    found = []
    for spec, alone_row in zip(rows[name], rows["large alone"], strict=True):
        ours, theirs = spec["info"]["token_ids"], alone_row["info"]["token_ids"] or []
        if ours == theirs:
            continue
        j = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
            min(len(ours), len(theirs)),
        )
        prefix = large.chat_prefix(task_messages(humaneval_task(spec["task"])))  # type: ignore[attr-defined]
        cold(large)
        sequential = await large.next_token_logprobs([*prefix, *theirs[:j]])  # type: ignore[attr-defined]
        batched = (await large.continuation_logprobs(prefix, theirs[:j]))[-1]  # type: ignore[attr-defined]
        gaps = [float(np.diff(np.sort(x)[-2:])[0]) for x in (sequential, batched)]
        found.append(
            {
                "task": spec["task"],
                "position": j,
                "gap_sequential": gaps[0],
                "gap_batched": gaps[1],
                "argmax_sequential": int(np.argmax(sequential)),
                "argmax_batched": int(np.argmax(batched)),
                "large_alone_token": theirs[j] if j < len(theirs) else None,
                "speculative_token": ours[j] if j < len(ours) else None,
            }
        )
    return found


def report(
    rows: dict[str, list[dict[str, Any]]],
    speeds: dict[str, dict[str, float]],
    calibration: dict[str, Any],
    args: Any,
    total_s: float,
) -> None:
    large_time = sum(r["seconds"] for r in rows["large alone"])
    n = len(rows["large alone"])
    print(
        f"## Routing on HumanEval/0..{n - 1} ({n} problems), {SMALL} -> {LARGE}, greedy, max {args.max_tokens} tokens"
    )
    calibrated = (
        f"calibration: HumanEval/144..{143 + args.calib_limit}"
        if calibration["routers"]
        else "no calibration"
    )
    print(f"{calibrated}; total run {total_s / 60:.1f} min\n")
    print(f"| {'method':<26} | pass@1 | large share | wall s | wall vs large |")
    print(f"|{'-' * 28}|--------|-------------|--------|---------------|")
    for name, results in rows.items():
        passed = np.mean([r["passed"] for r in results])
        share = np.mean([r["share"] for r in results])
        seconds = sum(r["seconds"] for r in results)
        unit = (
            "requests"
            if name.startswith("cascade")
            else ("verified" if name.startswith("speculative") else "tokens")
        )
        print(
            f"| {name:<26} | {passed:6.3f} | {share:5.1%} {unit:<5} | {seconds:6.0f} | {seconds / large_time:13.2f} |"
        )
    bound_from: dict[str, float] = {}
    for name, found in calibration.get("divergences", {}).items():
        spec = rows[name]
        accept = float(np.mean([r["info"]["acceptance_rate"] for r in spec]))
        per_iter = float(np.mean([r["info"]["tokens_per_iteration"] for r in spec]))
        drafted = float(np.mean([r["info"]["drafted"] / max(r["info"]["iterations"], 1) for r in spec]))
        if not bound_from:  # the bound below is the first speculative row's (plain greedy rule)
            bound_from = {"per_iter": per_iter, "drafted": drafted}
        print(
            f"\n{name}: acceptance {accept:.3f}, {per_iter:.2f} tokens per target call, mean draft {drafted:.1f}; "
            f"greedy output token-for-token identical to large alone on {n - len(found)}/{n} problems"
        )
        for d in found:
            print(
                f"  {d['task']}: first difference at token {d['position']}; large model's top-2 logprob gap there: "
                f"{d['gap_sequential']:.4f} (one token at a time), {d['gap_batched']:.4f} (batched); "
                f"tokens large alone {d['large_alone_token']} vs speculative {d['speculative_token']}"
            )
    if calibration["label_tokens"]:
        print(
            f"token labels: {calibration['label_tokens']} tokens, mismatch {calibration['mismatch_rate']:.1%}, "
            f"divergent {calibration['divergent_rate']:.1%}; thresholds: "
            + ", ".join(f"{name} {threshold:.4g}" for name, threshold in calibration["thresholds"].items())
        )
    print("\n## The bound this machine sets (measured, median)")
    print(f"| {'model':<26} | prefill tok/s | decode tok/s | verify 1 / 4 / 8 tokens (in decode steps) |")
    print(f"|{'-' * 28}|---------------|--------------|--------------------------------------------|")
    for model_id, s in speeds.items():
        print(
            f"| {model_id:<26} | {s['prefill_tps']:13.1f} | {s['decode_tps']:12.1f} | {s['verify1_steps']:.2f} / {s['verify4_steps']:.2f} / {s['verify8_steps']:.2f} |"
        )
    c = speeds[LARGE]["decode_tps"] / speeds[SMALL]["decode_tps"]
    print(
        f"\nsmall step / large step c = {c:.2f}: anything that runs the small model on every token costs at least {c:.2f}x "
        f"the large model's time, plus the large model's share; best case at share r: {c:.2f} + r."
    )
    per_iter, drafted = bound_from.get("per_iter", 0.0), bound_from.get("drafted", 1.0)
    gamma = min(max(round(drafted), 1), 8)
    v = speeds[LARGE][f"verify{gamma}_steps"]
    print(
        f"speculative bound with the measured {per_iter:.2f} tokens per target call and mean draft {gamma}: "
        f"{gamma} draft steps + 1 verification = {gamma * c + v:.2f} large steps per call -> at most "
        f"{per_iter / (gamma * c + v):.2f}x the large model's speed"
    )


if __name__ == "__main__":
    asyncio.run(main())
