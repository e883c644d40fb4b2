"""Flow overhead: the same best-of-N run as a flow and as a direct strategy call.

Both use one in-process model instance, the same tasks, the same sample indexes and the
same verifier, with no generation cache, so they do identical model work; the difference is
what the flow machinery costs (LangGraph, checkpoints, the JSONL trace). Runs alternate
(direct, flow, direct, flow, ...) so drift on a shared machine hits both alike.

    python bench/flows.py [--model local/smollm2-135m] [--tasks 3] [--n 2] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from forkpath import humaneval_task
from forkpath.flows import Flow
from forkpath.models import get_model
from forkpath.strategies import Context, strategies
from forkpath.verifiers import make_verifier

FLOW = """\
name: bench-best-of-n
models:
  default: {model: MODEL}
verifier: python_tests
nodes:
  sample:
    strategy: best_of_n
    params: {n: N, max_tokens: 128, early_stop: false}
edges:
  - {from: sample, to: end}
"""


async def main(model_id: str, n_tasks: int, n: int, rounds: int, threads: int) -> None:
    tasks = [humaneval_task(i) for i in range(n_tasks)]
    model = get_model(model_id, n_threads=threads)  # the flow's model object shares this engine
    verifier = make_verifier("python_tests")
    flow = Flow.from_yaml_text(FLOW.replace("MODEL", model_id).replace("N", str(n)))
    strategy = strategies.create("best_of_n", n=n, max_tokens=128, early_stop=False)
    flow_runtime_model = {"default": model}

    async def direct() -> float:
        started = time.perf_counter()
        for task in tasks:
            await strategy(task, Context(models=flow_runtime_model, verifier=verifier))
        return time.perf_counter() - started

    async def as_flow(runs_dir: str) -> float:
        started = time.perf_counter()
        for task in tasks:
            await flow.run(task, runs_dir=runs_dir)
        return time.perf_counter() - started

    # The flow creates its own model object, which shares the loaded engine with `model`.
    await direct()  # warm-up: page in the weights
    times: dict[str, list[float]] = {"direct": [], "flow": []}
    with tempfile.TemporaryDirectory() as runs_dir:
        for _ in range(rounds):
            times["direct"].append(await direct())
            times["flow"].append(await as_flow(runs_dir))
    d, f = statistics.median(times["direct"]), statistics.median(times["flow"])
    per_task = (f - d) / n_tasks
    print(
        f"## Flow overhead: best_of_n n={n}, {n_tasks} HumanEval tasks, {model_id}, {rounds} alternating rounds"
    )
    print(f"direct strategy call   median {d:8.2f} s   runs {[round(x, 2) for x in times['direct']]}")
    print(f"flow (LangGraph)       median {f:8.2f} s   runs {[round(x, 2) for x in times['flow']]}")
    print(f"ratio flow / direct    {f / d:8.4f}   extra {1000 * per_task:+.1f} ms per task")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="local/smollm2-135m")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    args = parser.parse_args()
    print(
        f"$ python bench/flows.py --model {args.model} --tasks {args.tasks} --n {args.n} --rounds {args.rounds}"
        f" --threads {args.threads}"
    )
    asyncio.run(main(args.model, args.tasks, args.n, args.rounds, args.threads))
