"""Benchmark of forkpath.store: what the generation cache saves, and what store calls cost.

A best-of-N-like workload (N samples at temperature > 0 for each of P prompts) runs twice over
the same prompts, cache cold then warm, on each backend; then the latency of single store
operations is measured and set against the model call a cache hit replaces.

Run (from the repository root)::

    .venv/bin/python bench/store.py                      # local/smollm2-135m, SQLite + Redis
    .venv/bin/python bench/store.py --prompts 5 --samples 4 --fake --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

from forkpath import StoreError
from forkpath.models import FakeModel, GenerateRequest, Message, Model, get_model, usage_meter
from forkpath.store import NewChild, Store, open_store

WORDS = "cat tree light house river stone cloud bread music paper green night apple chair snow road fire glass bird sun"


def prompts(n: int) -> list[GenerateRequest]:
    words = (WORDS.split() * (n // 20 + 1))[:n]
    return [
        GenerateRequest(
            messages=(Message(role="user", content=f"Write one short sentence about a {w}."),),
            max_tokens=0,  # set per run
            temperature=0.8,
        )
        for w in words
    ]


def load_model(name: str, fake: bool) -> tuple[Model, str]:
    """The model to run, and a note saying which it is (and why, if it is the fallback)."""
    if fake:
        return FakeModel("fake/bench"), "fake/bench (asked for with --fake)"
    try:
        model = get_model(name)
        asyncio.run(
            model.generate(GenerateRequest(prompt="Hello", max_tokens=2))
        )  # load it now, not in the timing
        return model, name
    except Exception as e:  # any failure to load means: fall back, and say so
        return FakeModel(
            "fake/bench"
        ), f"fake/bench (FALLBACK: {name} failed to load: {type(e).__name__}: {e})"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def workload(model: Model, requests: list[GenerateRequest], samples: int) -> dict[str, Any]:
    """One pass of the best-of-N workload; model calls, cache hits, wall time, per-call latency."""
    started = time.perf_counter()
    with usage_meter() as meter:
        results = []
        for request in requests:
            # Samples one after another: the local engine serialises calls anyway, and this way
            # each call's latency is the model's time, not time queued behind its siblings.
            for i in range(samples):
                results.append(await model.generate(request.model_copy(update={"sample_index": i})))
    wall = time.perf_counter() - started
    total = meter.total
    return {
        "wall_s": wall,
        "model_calls": total.calls,
        "cache_hits": total.cached_calls,
        "call_latencies_s": [r.latency_s for r in results if not r.cached],
        "sample_result": results[0].model_dump(mode="json"),
    }


async def op_latency(store: Store, ns: str, payload: dict[str, Any], ops: int) -> dict[str, float]:
    """p50/p95 of single store operations, in milliseconds."""
    cache = store.generation_cache(ns)
    timings: dict[str, list[float]] = {
        "cache_put": [],
        "cache_get": [],
        "update_stats": [],
        "add_children": [],
    }
    for i in range(ops):
        t = time.perf_counter()
        await cache.put(f"bench-key-{i}", payload)
        timings["cache_put"].append(time.perf_counter() - t)
    for i in range(ops):
        t = time.perf_counter()
        assert await cache.get(f"bench-key-{i}") is not None
        timings["cache_get"].append(time.perf_counter() - t)
    root = await store.trajectories.add_root(ns, tokens=list(range(64)))
    for i in range(ops):
        t = time.perf_counter()
        await store.trajectories.add_children(ns, root.key, [NewChild(tokens=(1000 + i,), logprobs=(-0.5,))])
        timings["add_children"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await store.trajectories.update_stats(ns, root.key, 1, 0.5)
        timings["update_stats"].append(time.perf_counter() - t)
    out = {}
    for name, values in timings.items():
        out[f"{name}_p50_ms"] = 1000 * statistics.median(values)
        out[f"{name}_p95_ms"] = 1000 * pct(values, 0.95)
    return out


async def bench_backend(
    label: str, url: str, model: Model, requests: list[GenerateRequest], samples: int, ops: int
) -> dict[str, Any]:
    store = open_store(url)
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        model.cache = store.generation_cache(ns)
        cold = await workload(model, requests, samples)
        warm = await workload(model, requests, samples)
        model.cache = None
        latency = await op_latency(store, f"{ns}-ops", cold["sample_result"], ops)
    finally:
        model.cache = None
        for name in (ns, f"{ns}-ops"):
            await store.clear(name, "all")
        await store.aclose()
    call_p50_ms = (
        1000 * statistics.median(cold["call_latencies_s"]) if cold["call_latencies_s"] else float("nan")
    )
    return {
        "backend": label,
        "url": url,
        "cold_model_calls": cold["model_calls"],
        "warm_model_calls": warm["model_calls"],
        "warm_cache_hits": warm["cache_hits"],
        "model_calls_saved": cold["model_calls"] - warm["model_calls"],
        "cold_wall_s": cold["wall_s"],
        "cold_model_time_s": sum(cold["call_latencies_s"]),
        "warm_wall_s": warm["wall_s"],
        "wall_ratio_cold_over_warm": cold["wall_s"] / warm["wall_s"],
        "model_call_p50_ms": call_p50_ms,
        **latency,
        "model_call_over_cache_get": call_p50_ms / latency["cache_get_p50_ms"],
        "model_call_over_cache_put": call_p50_ms / latency["cache_put_p50_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2-135m")
    parser.add_argument("--fake", action="store_true", help="use the fake model (no real calls)")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--ops", type=int, default=500, help="single operations timed per kind")
    parser.add_argument(
        "--redis", default=os.environ.get("FORKPATH_BENCH_REDIS", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()

    model, model_note = load_model(args.model, args.fake)
    requests = [r.model_copy(update={"max_tokens": args.max_tokens}) for r in prompts(args.prompts)]
    folder = tempfile.mkdtemp(prefix="forkpath-bench-")
    backends = [("sqlite", f"sqlite://{folder}/store.db"), ("redis", args.redis)]
    rows = []
    try:
        for label, url in backends:
            try:
                rows.append(asyncio.run(bench_backend(label, url, model, requests, args.samples, args.ops)))
            except StoreError as e:
                print(f"skipping {label}: {e}", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    report = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "model": model_note,
        "workload": f"{args.prompts} prompts x {args.samples} samples, temperature 0.8, max_tokens {args.max_tokens}",
        "results": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"$ {report['command']}")
    print(f"model:    {report['model']}")
    print(f"workload: {report['workload']}, run cold then warm")
    for r in rows:
        print(f"\n[{r['backend']}] {r['url']}")
        print(
            f"  model calls  cold {r['cold_model_calls']}, warm {r['warm_model_calls']} "
            f"(saved {r['model_calls_saved']}, {r['warm_cache_hits']} cache hits)"
        )
        print(
            f"  wall time    cold {r['cold_wall_s']:.2f} s, warm {r['warm_wall_s']:.3f} s "
            f"-> {r['wall_ratio_cold_over_warm']:.0f}x faster warm "
            f"(cold: {r['cold_model_time_s']:.2f} s inside model calls)"
        )
        print(f"  model call   p50 {r['model_call_p50_ms']:.1f} ms")
        for op in ("cache_get", "cache_put", "add_children", "update_stats"):
            print(f"  {op:<12} p50 {r[f'{op}_p50_ms']:.3f} ms, p95 {r[f'{op}_p95_ms']:.3f} ms")
        print(
            f"  a cache hit costs 1/{r['model_call_over_cache_get']:.0f} of the model call it saves "
            f"(get), a put 1/{r['model_call_over_cache_put']:.0f}"
        )


if __name__ == "__main__":
    main()
