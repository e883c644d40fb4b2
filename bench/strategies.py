"""Strategies side by side: HumanEval pass@1 and GSM8K accuracy, with calls, tokens and wall time.

HumanEval (model ``local/qwen2.5-coder-0.5b`` by default): greedy decoding versus best-of-N
reranked by the prompt's public examples, self-refine on the public examples, AlphaCodium, SED
and AdaDec. Every row is judged by the hidden ``check`` of the task, run once on the answer the
strategy returns; no strategy sees the hidden tests. GSM8K: greedy chain of thought versus self-consistency, program-of-thought (greedy and voting
over 5 programs) and an agent with the ``python`` tool.

Fixed subsets (the same for every row):
- HumanEval: ``HumanEval/i`` for i = 0, 4, 8, ..., 160 (41 problems, spread over the set).
- GSM8K: ``gsm8k/i`` for i = 0, 33, 66, ... (40 problems of the 1319-problem test split).
- AdaDec's entropy threshold is learned on HumanEval/i for i = 2, 6, 10, ... (16 problems,
  disjoint from the evaluation subset), from their canonical solutions.

The run is incremental: every finished (suite, row, problem) is appended to
``runs/bench-strategies/results.jsonl`` and skipped when the command is run again, and the
problems are done in order with every row of a suite run on a problem before the next problem,
so an interrupted run still compares the rows on the same problems. The table counts only the
problems every shown row of a suite has finished. With ``--concurrency K`` the K problems of a
chunk run one row at once (the batched engine decodes their sequences together) and each is
charged 1/K of the chunk's wall time ("wall s / problem" is then the amortised time).

    python bench/strategies.py [--limit N] [--only greedy,sed] [--suite humaneval|gsm8k|both]
    python bench/strategies.py --report          # print the table of what has finished
    python bench/strategies.py --report --reverify   # the same, answers judged again by today's verifiers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _shared import run_together

from forkpath._prompts import task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, Model, Usage, get_model, usage_meter
from forkpath.strategies import (  # noqa: F401
    Context,
    StrategyResult,
    _adadec,
    _alphacodium,
    _sed,
    _self_consistency,
    _self_refine,
    strategies,
)
from forkpath.strategies._entropy_threshold import calibrate_entropy_threshold, load_threshold, save_threshold
from forkpath.strategies._helpers import ExamplesVerifier

OUT = Path("runs/bench-strategies")
HUMANEVAL_SUBSET = list(range(0, 164, 4))
GSM8K_SUBSET = list(range(0, 1319, 33))[:40]
CALIBRATION_SUBSET = list(range(2, 164, 4))[:16]
CODE_TOKENS = 512
MATH_TOKENS = 384

Runner = Callable[[Task, Model], Awaitable[tuple[str | None, dict[str, Any]]]]


def thresholds_file() -> Path:
    return OUT / "adadec-thresholds.json"


async def _strategy(
    name: str, params: dict[str, Any], task: Task, model: Model, verifier: Any = None
) -> StrategyResult:
    strategy = strategies.create(name, **params)
    return await strategy(task, Context({"default": model}, verifier))


def humaneval_rows(model_id: str) -> dict[str, Runner]:
    async def greedy(task: Task, model: Model) -> tuple[str | None, dict[str, Any]]:
        result = await model.generate(
            GenerateRequest(messages=task_messages(task), max_tokens=CODE_TOKENS, temperature=0.0)
        )
        return result.text, {"finish": result.finish_reason}

    def strategy_row(name: str, params: dict[str, Any], verifier: Callable[[], Any] | None = None) -> Runner:
        async def run(task: Task, model: Model) -> tuple[str | None, dict[str, Any]]:
            result = await _strategy(name, params, task, model, verifier() if verifier else None)
            info = {k: v for k, v in result.info.items() if k not in ("pause_detail",)}
            return result.answer, {"stopped": result.stopped, **info}

        return run

    async def adadec(task: Task, model: Model) -> tuple[str | None, dict[str, Any]]:
        return await strategy_row(
            "adadec",
            {
                "threshold_file": str(thresholds_file()),
                "candidates": 3,
                "lookahead": 5,
                "max_tokens": CODE_TOKENS,
            },
        )(task, model)

    return {
        "greedy": greedy,
        "best_of_4 (public-example rerank)": strategy_row(
            "best_of_n", {"n": 4, "temperature": 0.8, "max_tokens": CODE_TOKENS}, ExamplesVerifier
        ),
        "self_refine (public examples, 2 rounds)": strategy_row(
            "self_refine", {"feedback": "examples", "max_rounds": 2, "max_tokens": CODE_TOKENS}
        ),
        "alphacodium": strategy_row(
            "alphacodium",
            {"solutions": 2, "ai_tests": 4, "max_attempts": 2, "max_fix_calls": 3, "stage_tokens": 256},
        ),
        "sed (ratio 0.5, k=2, horizon 48)": strategy_row(
            "sed", {"k": 2, "ratio": 0.5, "horizon": 48, "max_pauses": 4, "max_tokens": CODE_TOKENS}
        ),
        "adadec (learned H*, B=3, L=5)": adadec,
    }


def gsm8k_rows() -> dict[str, Runner]:
    async def greedy(task: Task, model: Model) -> tuple[str | None, dict[str, Any]]:
        result = await model.generate(
            GenerateRequest(messages=task_messages(task), max_tokens=MATH_TOKENS, temperature=0.0)
        )
        return result.text, {"finish": result.finish_reason}

    async def self_consistency(task: Task, model: Model) -> tuple[str | None, dict[str, Any]]:
        result = await _strategy(
            "self_consistency", {"n": 5, "temperature": 0.7, "max_tokens": MATH_TOKENS}, task, model
        )
        return result.answer, {"stopped": result.stopped, "votes": result.info["votes"]}

    def pot(n: int, temperature: float) -> Runner:
        async def run(task: Task, model: Model) -> tuple[str | None, dict[str, Any]]:
            result = await _strategy(
                "program_of_thought",
                {"n": n, "temperature": temperature, "max_tokens": MATH_TOKENS},
                task,
                model,
            )
            return result.answer, {"stopped": result.stopped, "votes": result.info["votes"]}

        return run

    async def agent(task: Task, model: Model) -> tuple[str | None, dict[str, Any]]:
        from forkpath.models import Message
        from forkpath.tools import open_tools, run_agent

        messages = [Message(role="system", content=AGENT_SYSTEM), Message(role="user", content=task.prompt)]
        async with open_tools(["python"]) as kit:
            outcome = await run_agent(
                model, messages, kit, max_steps=4, max_tokens=MATH_TOKENS, first_tool_choice="required"
            )
        return outcome.answer, {"stopped": outcome.stopped, "steps": len(outcome.steps)}

    return {
        "greedy": greedy,
        "self_consistency (n=5, T=0.7, majority)": self_consistency,
        "program_of_thought (greedy)": pot(1, 0.0),
        "program_of_thought (n=5, T=0.7, vote)": pot(5, 0.7),
        "agent (python tool first, 4 steps)": agent,
    }


AGENT_SYSTEM = (
    "You are a careful problem solver. Use the python tool to compute every number (print the "
    "results), then answer in one sentence ending with 'The answer is N.' where N is the final number."
)


def load_results() -> list[dict[str, Any]]:
    path = OUT / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_result(row: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "results.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


async def run_one(
    suite: str, row: str, runner: Runner, task: Task, model: Model, judge: Any
) -> dict[str, Any]:
    started = time.perf_counter()
    with usage_meter() as meter:
        answer, info = await runner(task, model)
    elapsed = time.perf_counter() - started
    verdict = await judge.verify(task, answer or "")
    usage: Usage = meter.total
    return {
        "tool_calls": meter.tool_calls,
        "tool_s": round(meter.tool_seconds, 2),
        "suite": suite,
        "row": row,
        "task": task.id,
        "model": model.id,
        "passed": verdict.passed,
        "calls": usage.calls,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "wall_s": round(elapsed, 2),
        "info": info,
        "answer": answer,  # kept, so a later extraction can judge the same answers again (--reverify)
    }


async def ensure_threshold(model: Model) -> None:
    path = thresholds_file()
    try:
        load_threshold(path, model.id)
        return
    except Exception:
        pass
    from forkpath import humaneval_task

    tasks = [humaneval_task(i) for i in CALIBRATION_SUBSET]
    started = time.perf_counter()
    found = await calibrate_entropy_threshold(model, tasks)
    save_threshold(found, path)
    print(
        f"# AdaDec threshold for {model.id}: H* = {found.threshold:.3f} nats (p* {found.probability_cut}, "
        f"held-out accuracy {found.heldout_accuracy:.3f}, {found.positions} positions, top-1 rate "
        f"{found.top1_rate:.3f}, {len(found.tasks)} tasks, {time.perf_counter() - started:.0f} s)",
        flush=True,
    )


async def bench(args: argparse.Namespace) -> None:
    from forkpath import load_task
    from forkpath.verifiers import make_verifier

    # One thread: on a shared 2-core machine llama.cpp's spinning threads slow each other down 4x.
    model = get_model(args.model, n_threads=args.threads)
    judge = make_verifier("python_tests")
    math_judge = make_verifier("math_answer")
    suites: list[tuple[str, list[Task], dict[str, Runner], Any]] = []
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    if args.suite in ("humaneval", "both"):
        rows = {k: v for k, v in humaneval_rows(args.model).items() if not only or k.split(" ")[0] in only}
        tasks = [load_task(f"humaneval/{i}") for i in HUMANEVAL_SUBSET[: args.limit]]
        suites.append(("humaneval", tasks, rows, judge))
        if any(k.startswith("adadec") for k in rows):
            await ensure_threshold(model)
    if args.suite in ("gsm8k", "both"):
        rows = {k: v for k, v in gsm8k_rows().items() if not only or k.split(" ")[0] in only}
        tasks = [load_task(f"gsm8k/{i}") for i in GSM8K_SUBSET[: args.limit]]
        suites.append(("gsm8k", tasks, rows, math_judge))
    done = {(r["suite"], r["row"], r["task"], r["model"]) for r in load_results()}
    longest = max(len(tasks) for _, tasks, _, _ in suites) if suites else 0
    step = max(1, args.concurrency)
    for start in range(0, longest, step):  # interleave the suites so both tables grow together
        for suite, tasks, rows, suite_judge in suites:
            chunk = tasks[start : start + step]
            for row, runner in rows.items():
                todo = [task for task in chunk if (suite, row, task.id, model.id) not in done]
                if not todo:
                    continue
                results = await run_together(
                    [run_one(suite, row, runner, task, model, suite_judge) for task in todo]
                )
                for task, result in zip(todo, results, strict=True):
                    share = result["wall_share_s"]
                    append_result(result)
                    print(
                        f"{suite:<9} {task.id:<14} {row:<42} {'PASS' if result['passed'] else 'fail'} "
                        f"calls {result['calls']:>3} tokens {result['prompt_tokens']:>6}+"
                        f"{result['completion_tokens']:<5} {result['wall_s']:>7.1f} s (share {share:.1f} s, "
                        f"{len(todo)} at once)",
                        flush=True,
                    )


def reverify(results: list[dict[str, Any]]) -> None:
    """Judge the saved answers again with today's verifiers (rows saved with their answer)."""
    from forkpath import load_task
    from forkpath.verifiers import make_verifier

    judges = {"gsm8k": make_verifier("math_answer"), "humaneval": make_verifier("python_tests")}

    async def judge_all() -> None:
        for r in results:
            if "answer" in r:
                verdict = await judges[r["suite"]].verify(load_task(r["task"]), r.get("answer") or "")
                r["passed"] = verdict.passed

    asyncio.run(judge_all())


def report(model_id: str, again: bool = False) -> None:
    results = [r for r in load_results() if r["model"] == model_id]
    if again:
        reverify(results)
    for suite, order in (("humaneval", list(humaneval_rows(model_id))), ("gsm8k", list(gsm8k_rows()))):
        rows = [row for row in order if any(r["suite"] == suite and r["row"] == row for r in results)]
        if not rows:
            continue
        by_row = {
            row: {r["task"]: r for r in results if r["suite"] == suite and r["row"] == row} for row in rows
        }
        common = set.intersection(*(set(v) for v in by_row.values()))
        print(f"\n## {suite}: {model_id}, {len(common)} problems finished by every row shown")
        print(
            f"{'row':<42} {'pass@1':>7} {'solved':>7} {'calls/pb':>9} {'prompt tok/pb':>14} "
            f"{'compl. tok/pb':>14} {'tool s/pb':>10} {'wall s/pb':>10}"
        )
        for row in rows:
            picked = [by_row[row][t] for t in common]
            n = len(picked) or 1
            solved = sum(r["passed"] for r in picked)
            print(
                f"{row:<42} {solved / n:>7.3f} {solved:>4}/{len(picked):<2} {sum(r['calls'] for r in picked) / n:>9.1f} "
                f"{sum(r['prompt_tokens'] for r in picked) / n:>14.0f} {sum(r['completion_tokens'] for r in picked) / n:>14.0f} "
                f"{sum(r.get('tool_s', 0.0) for r in picked) / n:>10.2f} {sum(r.get('wall_share_s', r['wall_s']) for r in picked) / n:>10.1f}"
            )


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--suite", choices=["humaneval", "gsm8k", "both"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each subset")
    parser.add_argument("--only", default="", help="comma-separated row names (first word), e.g. greedy,sed")
    parser.add_argument("--report", action="store_true", help="only print the table of finished results")
    parser.add_argument(
        "--reverify", action="store_true", help="judge the saved answers again with today's verifiers"
    )
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1 suits a busy machine)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="problems of one row run at once (their sequences share the batched engine's decode steps); "
        "each is charged an equal share of the wall time",
    )
    parser.add_argument(
        "--out", default="runs/bench-strategies", help="folder of results.jsonl and the learned thresholds"
    )
    args = parser.parse_args()
    OUT = Path(args.out)
    logging.basicConfig(level=logging.WARNING)
    if not args.report:
        print(f"$ {sys.executable} {' '.join(sys.argv)}")
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, model {args.model}", flush=True)
        asyncio.run(bench(args))
    report(args.model, again=args.reverify)


if __name__ == "__main__":
    main()
