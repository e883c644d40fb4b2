"""Tree search on HumanEval with a small local coder: pass@1 and generations per problem.

Rows (one model, one HumanEval subset, every row rewarded by the same *public* tests):

- ``greedy``: one greedy answer;
- ``best_of_n``: N samples at temperature 0.8, reranked by public tests, stopping at the first
  that passes them (N = the search budget: an equal generation budget);
- ``best_of_n_in_flight_1``: the same, one sample at a time (``in_flight=1``): the next starts
  only when the last one failed;
- ``beam_search``, ``mcts``: step-level searches over Python statements, values from greedy
  rollouts scored by public tests, at most N model calls each;
- ``token_tree_search``: PG-TD/Seed-CTS token-level MCTS, at most N rollouts that reach the model;
- ``greedy_prefilled``: the first rollout of ``token_tree_search`` (greedy decoding of the body
  after the prefilled signature), read from its candidates: no extra generation;
- ``tts_cache_on`` / ``tts_cache_off``: token_tree_search with a fixed number of rollouts (R),
  no call limit and no early stop, with the trajectory cache on and off: the same tree, so the
  ratio of model calls and wall time is what the cache saves (on the first ``--cache-limit``
  problems only: the cache-off row is the slowest).

The three searches continue an answer prefilled with ``"```python\\n" + prompt`` (the signature
and docstring), so they search the function body; greedy and best-of-N answer from scratch,
as a user of those strategies would.

Public tests are the docstring examples of each problem (``>>>`` doctests and ``f(x) ==> y``
lines), kept only where the canonical solution passes them; pass@1 is the chosen answer on the
full hidden HumanEval tests. The subset is fixed: the first ``--limit`` HumanEval problems in
dataset order that have at least one public test (problems 38, 41 and 50 have none and are
skipped). Searches run cold: a private tree per search, no generation cache.

Results are kept per (row, problem) in a SQLite store, so the benchmark is incremental: rerun
with a larger ``--limit`` (or after an interruption) and only the missing cells run. ``--report``
prints the table from what is stored. With ``--concurrency K`` the K problems of a chunk are
searched by one row at once (the batched engine decodes their sequences together) and each is
charged 1/K of the chunk's wall time ("wall s / problem" is then the amortised time).

    .venv/bin/python bench/search.py --limit 30 [--budget 8] [--rollouts 8] [--threads 1] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _shared import run_together

from forkpath import Task, humaneval_tasks
from forkpath.models import Model, get_model
from forkpath.store import Store, open_store
from forkpath.strategies import Context, Strategy, strategies
from forkpath.strategies._beam_search import beam_search  # noqa: F401 - registers the searches
from forkpath.strategies._mcts import mcts  # noqa: F401
from forkpath.strategies._token_tree_search import token_tree_search  # noqa: F401
from forkpath.verifiers import PythonTestsVerifier, Verdict

ROWS = (
    "greedy",
    "best_of_n",
    "best_of_n_in_flight_1",
    "beam_search",
    "mcts",
    "token_tree_search",
    "tts_cache_on",
    "tts_cache_off",
)
CACHE_ROWS = ("tts_cache_on", "tts_cache_off")
TABLE_ROWS = (
    "greedy",
    "greedy_prefilled",
    "best_of_n",
    "best_of_n_in_flight_1",
    "beam_search",
    "mcts",
    "token_tree_search",
)
PREFIX = "```python\n{prompt}"
_ARROW = re.compile(r"^(?P<call>\w+\(.*\))\s*(?:==>|==|➞|=>)\s*(?P<want>.+?)\s*$")


def docstring_examples(task: Task) -> list[str]:
    """Assert statements from the examples in a HumanEval prompt (unchecked)."""
    entry = task.entry_point or ""
    lines = task.prompt.splitlines()
    asserts: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith(">>>"):
            call = line[3:].split("#", 1)[0].strip()
            want: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(">>>"):
                piece = lines[i].strip().removesuffix('"""').removesuffix("'''").strip()
                if not piece:
                    break  # the docstring's closing quotes
                want.append(piece)
                i += 1
            if entry in call and want and all(want):
                asserts.append(f"assert {call} == {' '.join(want)}")
            continue
        match = _ARROW.match(line)
        if match and match.group("call").startswith(entry + "("):
            asserts.append(f"assert {match.group('call')} == {match.group('want').rstrip('.')}")
        i += 1
    return [a for a in asserts if _compiles(a)]


def _compiles(code: str) -> bool:
    try:
        compile(code, "<example>", "exec")
    except SyntaxError:
        return False
    return True


class PublicTests:
    """The verifier the searches see: a task's public tests only (its docstring examples)."""

    def __init__(self, inner: PythonTestsVerifier, public: dict[str, Task]) -> None:
        self.inner = inner
        self.public = public

    async def verify(self, task: Task, candidate: str) -> Verdict:
        return await self.inner.verify(self.public[task.id], candidate)


async def public_tasks(tasks: list[Task], verifier: PythonTestsVerifier, limit: int) -> list[Task]:
    """The first ``limit`` tasks with public tests the canonical solution passes (asserts kept)."""
    out: list[Task] = []
    for task in tasks:
        examples = docstring_examples(task)
        if not examples:
            continue
        public = task.model_copy(update={"test": None, "asserts": examples})
        verdict = await verifier.verify(public, task.metadata["canonical_solution"])
        kept = [t.name for t in verdict.tests if t.passed]
        if kept:
            out.append(public.model_copy(update={"asserts": [a for a in examples if a in kept]}))
        if len(out) == limit:
            break
    return out


def make_row(row: str, budget: int, rollouts: int, max_tokens: int) -> Strategy:
    if row == "greedy":
        return strategies.create("best_of_n", n=1, temperature=0.0, max_tokens=max_tokens)
    if row == "best_of_n":
        return strategies.create("best_of_n", n=budget, temperature=0.8, max_tokens=max_tokens)
    if row == "best_of_n_in_flight_1":  # the same samples, the next started only when one fails
        return strategies.create("best_of_n", n=budget, temperature=0.8, max_tokens=max_tokens, in_flight=1)
    step = {
        "step": {"kind": "statement", "expansion_width": 2},
        "value": {"max_tokens": max_tokens},
        "max_generations": budget,
        "answer_prefix": PREFIX,
    }
    if row == "beam_search":
        return strategies.create("beam_search", beam_width=2, **step)
    if row == "mcts":
        return strategies.create("mcts", max_simulations=4 * budget, **step)
    tree = {
        "step": {"top_k": 3, "branch_at": "token"},
        "value": {"max_tokens": max_tokens},
        "answer_prefix": PREFIX,
    }
    if row == "token_tree_search":
        return strategies.create(
            "token_tree_search", max_generations=budget, max_rollouts=16 * budget, **tree
        )
    return strategies.create(
        "token_tree_search",
        max_generations=10_000,
        max_rollouts=rollouts,
        sharing={"reuse": row == "tts_cache_on"},
        early_stop=False,
        **tree,
    )


async def run_cell(
    row: str, task: Task, model: Model, search_verifier: PublicTests, hidden: PythonTestsVerifier, args: Any
) -> dict[str, Any]:
    strategy = make_row(row, args.budget, args.rollouts, args.max_tokens)
    started = time.perf_counter()
    result = await strategy(task, Context({"default": model}, search_verifier))
    wall = time.perf_counter() - started
    usage = result.usage.get(model.id)
    passed = False
    if result.answer is not None:
        passed = (await hidden.verify(task, result.answer)).passed
    first: dict[str, Any] = {}
    if row == "token_tree_search" and result.candidates:
        root = result.candidates[0]  # the root's rollout: greedy after the prefill
        first = {
            "first_passed": (await hidden.verify(task, root.text)).passed,
            "first_public_passed": bool(root.passed),
        }
    return {
        **first,
        "row": row,
        "task": task.id,
        "passed": passed,
        "public_passed": bool(result.passed),
        "stopped": result.stopped,
        "calls": usage.calls if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "wall_s": round(wall, 2),
        "rollouts": result.info.get("rollouts", result.info.get("iterations")),
        "reused": result.info.get("reused"),
        "nodes": result.info.get("nodes"),
    }


def report(cells: dict[str, dict[str, dict[str, Any]]], task_ids: list[str]) -> str:
    """The markdown table over the problems that every row has finished."""
    main_rows = [r for r in ROWS if r not in CACHE_ROWS and cells.get(r)]  # the rows this run has
    done = [t for t in task_ids if all(t in cells.get(row, {}) for row in main_rows)]
    lines = [
        f"Problems with every row finished: {len(done)} (HumanEval/{', '.join(t.split('/')[1] for t in done)})",
        "",
        "| row | pass@1 (hidden tests) | public tests passed | model calls / problem | completion tokens / problem | wall s / problem |",
        "|---|---|---|---|---|---|",
    ]
    for row in TABLE_ROWS:
        if row == "greedy_prefilled":
            got = [cells["token_tree_search"][t] for t in done if "token_tree_search" in main_rows]
            if got:
                n = len(got)
                hidden_ok = sum(c["first_passed"] for c in got)
                public_ok = sum(c["first_public_passed"] for c in got)
                lines.append(
                    f"| greedy_prefilled (first rollout) | {hidden_ok}/{n} = {hidden_ok / n:.3f} | {public_ok}/{n} | 1 | - | - |"
                )
            continue
        got = [cells[row][t] for t in done if row in main_rows]
        if not got:
            continue
        lines.append(
            f"| {row} | {sum(c['passed'] for c in got)}/{len(got)} = {sum(c['passed'] for c in got) / len(got):.3f} "
            f"| {sum(c['public_passed'] for c in got)}/{len(got)} "
            f"| {statistics.mean(c['calls'] for c in got):.2f} "
            f"| {statistics.mean(c['completion_tokens'] for c in got):.0f} "
            f"| {statistics.mean(c.get('wall_share_s', c['wall_s']) for c in got):.1f} |"
        )
    both = [t for t in task_ids if all(t in cells.get(row, {}) for row in CACHE_ROWS)]
    on = [cells["tts_cache_on"][t] for t in both]
    off = [cells["tts_cache_off"][t] for t in both]
    if on and off:
        calls_on, calls_off = sum(c["calls"] for c in on), sum(c["calls"] for c in off)
        wall_on = sum(c.get("wall_share_s", c["wall_s"]) for c in on)
        wall_off = sum(c.get("wall_share_s", c["wall_s"]) for c in off)
        lines += [
            "",
            f"Trajectory cache (token_tree_search, {len(both)} problems, {on[0]['rollouts']} rollouts each, no early stop):",
            f"model calls off/on = {calls_off}/{calls_on}"
            f" = {calls_off / max(calls_on, 1):.2f}x; wall time off/on = {wall_off:.0f}/{wall_on:.0f} s"
            f" = {wall_off / max(wall_on, 1e-9):.2f}x; same hidden-test outcome: "
            f"{sum(a['passed'] == b['passed'] for a, b in zip(on, off, strict=True))}/{len(on)}; "
            f"rollouts reused from the cache: {sum(c['reused'] or 0 for c in on)}",
        ]
    return "\n".join(lines)


async def main_async(args: Any) -> None:
    store: Store = open_store(args.store)
    hidden = PythonTestsVerifier()
    tasks = await public_tasks(humaneval_tasks(), hidden, args.limit)
    task_ids = [t.id for t in tasks]
    rows = [r for r in args.rows.split(",") if r]
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for row in ROWS:
        cells[row] = {t: r async for t, r in store.results(f"{args.run_id}/{row}")}
    print(f"subset: {len(tasks)} problems: {', '.join(task_ids)}", flush=True)
    if not args.report:
        model = get_model(args.model, n_threads=args.threads, n_ctx=4096, n_seq_max=args.sequences)
        search_verifier = PublicTests(hidden, {t.id: t for t in tasks})
        full = {t.id: t for t in humaneval_tasks()}
        searched = [t.model_copy(update={"asserts": [], "test": full[t.id].test}) for t in tasks]
        step = max(1, args.concurrency)
        for start in range(0, len(searched), step):
            chunk = searched[start : start + step]
            for row in rows:
                todo = [
                    t
                    for t in chunk
                    if t.id not in cells[row]
                    and not (row in CACHE_ROWS and task_ids.index(t.id) >= args.cache_limit)
                ]
                if not todo:
                    continue
                done = await run_together(
                    [run_cell(row, t, model, search_verifier, hidden, args) for t in todo]
                )
                for task, cell in zip(todo, done, strict=True):
                    await store.put_result(f"{args.run_id}/{row}", task.id, cell)
                    cells[row][task.id] = cell
                    print(json.dumps(cell), flush=True)
    text = report(cells, task_ids)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        f"$ {' '.join([os.path.basename(sys.executable), *sys.argv])}\n\nmodel {args.model}, budget {args.budget}"
        f" calls, {args.rollouts} rollouts (cache rows), max_tokens {args.max_tokens}\n\n{text}\n"
    )
    await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--limit", type=int, default=30, help="problems in the subset (in dataset order)")
    parser.add_argument("--budget", type=int, default=8, help="model calls per search; N of best-of-N")
    parser.add_argument("--rollouts", type=int, default=8, help="rollouts of the cache on/off rows")
    parser.add_argument("--cache-limit", type=int, default=10, help="problems of the cache on/off rows")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (1 is faster on a busy machine)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="problems of one row searched at once (their sequences share the batched engine's decode "
        "steps); each is charged an equal share of the wall time",
    )
    parser.add_argument(
        "--sequences",
        type=int,
        default=16,
        help="sequences the engine decodes together (n_seq_max; 1 decodes one sequence at a time, "
        "as the engine did before batching)",
    )
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    parser.add_argument("--store", default="runs/bench-search/results.db")
    parser.add_argument("--run-id", default="bench-search-v1")
    parser.add_argument("--out", default="runs/bench-search/report.md")
    parser.add_argument("--report", action="store_true", help="print the table from stored results only")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
