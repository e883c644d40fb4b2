"""Batch runner throughput against a llama.cpp server, next to the server's own limit.

For each concurrency level, the same GSM8K prompts are sent (a) as direct ``litellm.acompletion``
calls with that many in flight — the server's throughput limit for this workload — and (b) as a
``forkpath batch`` run of a one-node flow making the same call, on the local asyncio backend and
on the Ray backend (a local Ray on this machine). The ratio batch/direct is what the runner
(flow, trace, checkpoints, results file) costs.

    python bench/batch.py [--tasks 16] [--levels 1,2,4,8] [--tokens 32] [--ray-levels 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _server import llama_server

from forkpath import DatasetSpec, load_tasks
from forkpath.batch import BatchConfig, run_batch
from forkpath.flows import Flow
from forkpath.models import model_path

FLOW = """\
name: bench-batch
models:
  default: {model: openai/bench, options: {api_base: "API_BASE", max_concurrency: 64}}
nodes:
  ask:
    model: default
    prompt: "{{ prompt }}"
    params: {max_tokens: TOKENS}
edges:
  - {from: ask, to: end}
"""


async def direct(api_base: str, prompts: list[str], concurrency: int, tokens: int) -> float:
    import litellm

    semaphore = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with semaphore:
            await litellm.acompletion(
                model="openai/bench",
                api_base=api_base,
                api_key="x",
                max_tokens=tokens,
                temperature=0.0,
                messages=[{"role": "user", "content": prompt}],
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    return time.perf_counter() - started


async def batch(flow: Flow, tasks: list, concurrency: int, backend: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        config = BatchConfig(run_id="bench", out_dir=Path(out), concurrency=concurrency, backend=backend)  # type: ignore[arg-type]
        started = time.perf_counter()
        summary = await run_batch(flow, tasks, config)
        elapsed = time.perf_counter() - started
    assert summary.ran == len(tasks)
    return elapsed


async def main(n_tasks: int, levels: list[int], tokens: int, ray_levels: list[int]) -> None:
    path = model_path("smollm2-135m")
    with llama_server(path, timeout=None) as api_base:
        tasks = load_tasks(DatasetSpec(name="gsm8k", limit=n_tasks))
        prompts = [t.prompt for t in tasks]
        flow = Flow.from_yaml_text(FLOW.replace("API_BASE", api_base).replace("TOKENS", str(tokens)))
        await direct(api_base, prompts[:2], 1, tokens)  # warm-up
        rows = []
        for level in levels:
            d = await direct(api_base, prompts, level, tokens)
            b = await batch(flow, tasks, level, "local")
            rows.append(("local", level, d, b))
        if ray_levels:
            import ray

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            for level in ray_levels:
                d = await direct(api_base, prompts, level, tokens)
                b = await batch(flow, tasks, level, "ray")
                rows.append(("ray", level, d, b))
            ray.shutdown()
        print(
            f"## Batch throughput: {n_tasks} GSM8K prompts, max_tokens={tokens}, SmolLM2 behind llama_cpp.server"
        )
        print(
            f"{'backend':<8} {'concurrency':>11} {'direct tasks/min':>17} {'batch tasks/min':>16} {'batch/direct':>13}"
        )
        for backend, level, d, b in rows:
            print(
                f"{backend:<8} {level:>11} {60 * n_tasks / d:>17.1f} {60 * n_tasks / b:>16.1f} {d / b:>13.3f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--ray-levels", default="2")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    ray_levels = [int(x) for x in args.ray_levels.split(",") if x]
    print(
        f"$ python bench/batch.py --tasks {args.tasks} --levels {args.levels} --tokens {args.tokens} "
        f"--ray-levels {args.ray_levels}"
    )
    asyncio.run(main(args.tasks, levels, args.tokens, ray_levels))
