"""How ``forkpath view`` copes with a big run: a flow run whose trace holds 100,000 events.

    flock /tmp/forkpath-bench.lock python bench/view.py            # 100,000 events
    flock /tmp/forkpath-bench.lock python bench/view.py --events 1000000

The trace mixes what a long search writes: model calls, routing decisions, search expansions
(one tree of a fifth of the events), verdicts, candidates and token records. Each page is
fetched in-process through the viewer's ASGI app (server time, no network), first cold (the
file is indexed) and then warm (the index is reused), with the Python heap's peak measured by
tracemalloc during the request, next to the size of the file.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from starlette.testclient import TestClient

from forkpath._trace import (
    CandidateEvent,
    ExpansionEvent,
    FlowEdge,
    FlowEvent,
    ModelCallEvent,
    RoutingEvent,
    SearchPathEvent,
    StrategyEvent,
    TokensEvent,
    TracedToken,
    VerdictEvent,
)
from forkpath.server import create_view_app


def write_trace(path: Path, events: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True)
    t = time.time()
    nodes = ["big:root"]
    with path.open("w", encoding="utf-8") as f:

        def put(event: object) -> None:
            f.write(event.model_dump_json() + "\n")  # type: ignore[attr-defined]

        put(
            FlowEvent(
                flow="bench",
                phase="start",
                run_id="big",
                task_id="big/0",
                prompt="Write a function that adds two numbers.\n" * 5,
                models={"default": "fake/bench"},
                nodes={"search": "strategy mcts"},
                edges=[FlowEdge(source="search", target="end")],
                first="search",
            )
        )
        put(StrategyEvent(name="mcts", phase="start", span="mcts", params={"max_simulations": events}))
        put(ExpansionEvent(node="big:root", parent=None, text="", visits=1, span="mcts"))
        written, candidates = 3, 0
        while written < events - 3:
            t += 0.001
            kind = rng.random()
            if kind < 0.45:
                put(
                    ModelCallEvent(
                        model="fake/bench",
                        prompt_tokens=300,
                        completion_tokens=40,
                        latency_s=0.01,
                        cached=False,
                        time=t,
                        span="mcts",
                    )
                )
            elif kind < 0.65:
                put(
                    RoutingEvent(
                        router="entropy",
                        decision="token",
                        position=written % 512,
                        features={"entropy": rng.random() * 3},
                        time=t,
                        span="mcts",
                    )
                )
            elif kind < 0.85:
                key = f"big:{written}"
                put(
                    ExpansionEvent(
                        node=key,
                        parent=rng.choice(nodes[-200:]),
                        text=f"step {written}\n",
                        value=rng.random(),
                        visits=rng.randint(1, 9),
                        time=t,
                        span="mcts",
                    )
                )
                nodes.append(key)
            elif kind < 0.95:
                put(
                    VerdictEvent(
                        verifier="python_tests",
                        passed=rng.random() < 0.2,
                        score=rng.random(),
                        candidate_index=candidates,
                        time=t,
                        span="mcts",
                    )
                )
            elif kind < 0.99:
                text = "def add(a, b):\n    return a + b\n" * rng.randint(1, 8)
                put(
                    CandidateEvent(
                        strategy="mcts",
                        index=candidates,
                        text=text,
                        model="fake/bench",
                        score=rng.random(),
                        passed=False,
                        time=t,
                        span="mcts",
                    )
                )
                candidates += 1
            else:
                toks = [
                    TracedToken(
                        text="tok", logprob=-0.5, entropy=rng.random(), top=[("tok", -0.5), ("alt", -1.2)]
                    )
                    for _ in range(64)
                ]
                put(
                    TokensEvent(
                        candidate_index=max(candidates - 1, 0),
                        models=["fake/bench"],
                        tokens=toks,
                        time=t,
                        span="mcts",
                    )
                )
            written += 1
        put(
            SearchPathEvent(
                search="big",
                strategy="mcts",
                namespace="bench",
                path=nodes[:3],
                nodes=len(nodes),
                span="mcts",
            )
        )
        put(StrategyEvent(name="mcts", phase="end", stopped="done", info={"iterations": events}, span="mcts"))
        put(
            FlowEvent(
                flow="bench",
                phase="end",
                run_id="big",
                answer="def add(a, b): return a + b",
                passed=True,
                score=1.0,
            )
        )


def fetch(client: TestClient, url: str) -> tuple[float, float, int]:
    """Server seconds, peak Python heap (MB) and status of one request."""
    tracemalloc.start()
    start = time.perf_counter()
    response = client.get(url)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 1e6, response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder)
        trace = runs / "big" / "trace.jsonl"
        start = time.perf_counter()
        write_trace(trace, args.events)
        lines = sum(1 for _ in trace.open("rb"))
        print(
            f"trace: {lines} events, {trace.stat().st_size / 1e6:.1f} MB (written in {time.perf_counter() - start:.1f} s)"
        )
        client = TestClient(create_view_app(runs))
        pages = [
            ("runs page, cold (indexes the trace)", "/"),
            ("runs page, warm", "/"),
            ("run page", "/runs/big"),
            ("task page (events page 1)", "/runs/big/tasks/big/0"),
            ("task page, its last events page", f"/runs/big/tasks/big/0?events={(lines + 99) // 100}"),
            ("tokens page", "/runs/big/tokens/big/0"),
            ("tree page, cold (builds the tree)", "/runs/big/tree/big/0"),
            ("tree: the root's children", "/api/runs/big/tree/big/0?node=big:root"),
        ]
        print(f"{'page':<40} {'status':>6} {'server s':>9} {'peak heap MB':>13}")
        for name, url in pages:
            seconds, peak, status = fetch(client, url)
            print(f"{name:<40} {status:>6} {seconds:>9.3f} {peak:>13.1f}")


if __name__ == "__main__":
    main()
