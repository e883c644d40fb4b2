"""Self-consistency on GSM8K beside a peer: its_hub's and forkpath's, on the same model and server.

Three systems answer the same problems with the same prompt (``bench/_gsm8k.py``), ``--n``
samples at temperature ``--temperature``, at most ``--max-tokens`` tokens, majority vote:

- ``its_hub``: its ``SelfConsistency`` (``its-hub[lm]==1.2.0``, in its own venv under
  ``.peers/``, made on first use: a peer for comparison, not a dependency) against the server,
  voting on the first number of the stated answer (``bench/_peer_its_hub.py``);
- ``forkpath (server)``: ``self_consistency`` through litellm against the same server;
- ``forkpath (in-process)``: ``self_consistency`` on the same GGUF file in this process.

One llama.cpp server (``python -m forkpath.models._llama_server``, ``--threads`` threads) serves both
HTTP clients; the in-process model gets as many. Every request of every system carries
the same sampling settings, forkpath's defaults (``SAMPLING``: no top-k, top-p 1, no min-p, no
repetition penalty), so the server's own defaults never apply. The systems
take turns per problem, in an order that rotates, so load on the machine falls on all three.
forkpath samples all ``n`` (no early stop) so the three spend comparable tokens.

Each system is judged on its own answer: its_hub's voted number, forkpath's vote winner,
against the reference exactly as numbers. Printed: accuracy, completion tokens, seconds per
1,000 completion tokens (wall time of the strategy call over the tokens it made), and every
sample where its_hub's reading and forkpath's differ. Results and every sample go to
``runs/bench-peers/`` (a rerun resumes; the samples are also raw material for the extraction
test data).

    flock /tmp/forkpath-bench.lock python bench/peers.py [--limit N] [--model qwen2.5-coder-0.5b]
    python bench/peers.py --report
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _gsm8k import PEER_SUBSET, PROMPT
from _server import llama_server

from forkpath import Task, load_task
from forkpath.models import GenerateRequest, Message, Model, get_model, model_path, usage_meter
from forkpath.strategies import Context, strategies
from forkpath.verifiers import extract_number, numbers_equal

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".peers" / "its_hub"
PEER_PACKAGE = "its-hub[lm]==1.2.0"
SYSTEMS = ["its_hub", "forkpath (server)", "forkpath (in-process)"]
OUT = Path("runs/bench-peers")


def peer_python() -> Path:
    """The peer venv's interpreter, made (and its_hub installed) on first use."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"# making {PEER_VENV} with {PEER_PACKAGE}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PEER_PACKAGE], check=True)
    return python


class Peer:
    """The its_hub worker process: one JSON problem in, one JSON answer out."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [str(peer_python()), str(Path(__file__).with_name("_peer_its_hub.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def solve(self, problem: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(problem) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the its_hub worker stopped")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


SAMPLING = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0}
"""forkpath's defaults (the model's own distribution at the temperature), which forkpath sends
to a server explicitly; the its_hub worker puts them in its requests too."""


async def run_forkpath(task: Task, model: Model, args: argparse.Namespace) -> dict[str, Any]:
    strategy = strategies.create(
        "self_consistency",
        n=args.n,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        early_stop=False,
        prompt=PROMPT,
    )
    started = time.perf_counter()
    with usage_meter() as meter:
        result = await strategy(task, Context({"default": model}))
    seconds = time.perf_counter() - started
    return {
        "texts": [c.text for c in result.candidates],
        "votes": [c.answer for c in result.candidates],
        "answer": result.info["winner"],
        "completion_tokens": meter.total.completion_tokens,
        "prompt_tokens": meter.total.prompt_tokens,
        "seconds": seconds,
    }


def run_peer(peer: Peer, task: Task, api_base: str, args: argparse.Namespace) -> dict[str, Any]:
    body = {
        "top_k": SAMPLING["top_k"],
        "top_p": SAMPLING["top_p"],
        "min_p": SAMPLING["min_p"],
        "repeat_penalty": SAMPLING["repetition_penalty"],
        "max_tokens": args.max_tokens,  # llama_cpp.server reads max_tokens, not its_hub's max_completion_tokens
    }
    return peer.solve(
        {
            "id": task.id,
            "prompt": PROMPT.format(**task.model_dump()),
            "api_base": api_base,
            "model": "bench",
            "n": args.n,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "sampling": body,
        }
    )


def load(name: str) -> list[dict[str, Any]]:
    path = OUT / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append(name: str, row: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / name).open("a") as f:
        f.write(json.dumps(row) + "\n")


async def bench(args: argparse.Namespace) -> None:
    gguf = model_path(args.model)
    tasks = [load_task(f"gsm8k/{i}") for i in PEER_SUBSET[: args.limit]]
    done = {(r["system"], r["task"]) for r in load("results.jsonl")}
    local = get_model(f"local/{args.model}", n_threads=args.threads)
    peer = Peer()
    with llama_server(gguf, timeout=300, threads=args.threads) as api_base:
        server = get_model("openai/bench", api_base=api_base, timeout_s=1800)
        warm = GenerateRequest(messages=(Message(role="user", content="Hi"),), max_tokens=1)
        for model in (local, server):  # loaded and answering before anything is timed
            await model.generate(warm)
        try:
            for number, task in enumerate(tasks):
                order = SYSTEMS[number % 3 :] + SYSTEMS[: number % 3]
                for system in order:
                    if (system, task.id) in done:
                        continue
                    if system == "its_hub":
                        out = await asyncio.to_thread(run_peer, peer, task, api_base, args)
                    else:
                        model = server if system == "forkpath (server)" else local
                        out = await run_forkpath(task, model, args)
                    reference = task.answer or ""
                    row = {
                        "system": system,
                        "task": task.id,
                        "reference": reference,
                        "answer": out["answer"],
                        "correct": out["answer"] is not None and numbers_equal(reference, str(out["answer"])),
                        "completion_tokens": out["completion_tokens"],
                        "seconds": round(out["seconds"], 2),
                        "votes": out["votes"],
                        "settings": {"n": args.n, "temperature": args.temperature, **SAMPLING},
                        "load": os.getloadavg()[0],
                    }
                    append("results.jsonl", row)
                    for i, text in enumerate(out["texts"]):
                        append(
                            "samples.jsonl",
                            {
                                "system": system,
                                "model": args.model,
                                "task": task.id,
                                "sample": i,
                                "reference": reference,
                                "text": text,
                            },
                        )
                    print(
                        f"{task.id:<11} {system:<22} {'right' if row['correct'] else 'wrong':<5} "
                        f"answer {row['answer']!s:<8} tokens {row['completion_tokens']:>5} "
                        f"{row['seconds']:>7.1f} s  load {row['load']:.1f}",
                        flush=True,
                    )
        finally:
            peer.close()


def its_hub_reading(text: str) -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from _peer_its_hub import project  # pure regex code: importable without its_hub

    return project(text)


def report(args: argparse.Namespace) -> None:
    results = load("results.jsonl")
    by_system = {s: {r["task"]: r for r in results if r["system"] == s} for s in SYSTEMS}
    common = set.intersection(*(set(v) for v in by_system.values())) if results else set()
    print(f"\n## Self-consistency on GSM8K: {args.model}, {len(common)} problems every system finished")
    if results:
        print(f"settings: {results[-1]['settings']}, max_tokens {args.max_tokens}")
    print(
        f"{'system':<22} {'accuracy':>8} {'solved':>7} {'compl. tokens':>14} {'seconds':>8} {'s / 1k tok':>11}"
    )
    base = None
    for system in SYSTEMS:
        rows = [by_system[system][t] for t in sorted(common)]
        tokens = sum(r["completion_tokens"] for r in rows)
        seconds = sum(r["seconds"] for r in rows)
        solved = sum(r["correct"] for r in rows)
        per_k = 1000 * seconds / tokens if tokens else 0.0
        base = base or per_k
        n = len(rows) or 1
        print(
            f"{system:<22} {solved / n:>8.3f} {solved:>4}/{len(rows):<2} {tokens:>14} {seconds:>8.0f} {per_k:>11.1f}"
            + (f"  speed vs its_hub {base / per_k:.3f}" if per_k and system != "its_hub" else "")
        )
    samples = [s for s in load("samples.jsonl") if s["task"] in common]
    disagreements = [
        (s, its_hub_reading(s["text"]), extract_number(s["text"]))
        for s in samples
        if not _same(its_hub_reading(s["text"]), extract_number(s["text"]))
    ]
    labels = person_labels()
    print(
        f"\nextraction: {len(samples)} samples, its_hub's reading and forkpath's differ on {len(disagreements)}"
        " (person: the label a person gave it in the extraction test data)"
    )
    sides: dict[str, int] = {}
    for s, theirs, ours in disagreements:
        person = labels.get((s["system"], s["task"], s["text"]), "?")
        side = (
            "unlabelled"
            if person == "?"
            else "forkpath"
            if _same_label(person, ours)
            else "its_hub"
            if _same(theirs, person)
            else "neither"
        )
        sides[side] = sides.get(side, 0) + 1
        tail = " ".join(s["text"].split())[-100:]
        print(
            f"  {s['task']:<11} ref {s['reference']:<6} its_hub {theirs[:12]!r:<14} forkpath {ours!r:<10}"
            f" person {person!r:<8} …{tail}"
        )
    if disagreements:
        print("the person's reading agrees with: " + ", ".join(f"{k} {v}" for k, v in sorted(sides.items())))


def person_labels() -> dict[tuple[str, str, str], str | None]:
    """The labels of the extraction test data (``bench/gsm8k_label.py``) by system, task and text
    (a sample index recurs across runs; the text says which run's sample was labelled)."""
    data = Path(__file__).resolve().parent.parent / "tests" / "verifiers" / "data" / "gsm8k_solutions.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    return {(r["system"], r["task"], r["text"]): r["label"] for r in rows}


def _same_label(label: str | None, ours: str | None) -> bool:
    return ours is label if label is None or ours is None else numbers_equal(label, ours)


def _same(theirs: str, ours: str | None) -> bool:
    return ours is not None and numbers_equal(theirs, ours) if _numberish(theirs) else ours is None


def _numberish(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="a bundled local model (its GGUF file)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of the 40-problem subset")
    parser.add_argument("--n", type=int, default=4, help="samples per problem")
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads of the server and the in-process model"
    )
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--report", action="store_true", help="only print the table of what has finished")
    args = parser.parse_args()
    OUT = Path(args.out)
    if not args.report:
        print(f"$ {sys.executable} {' '.join(sys.argv)}")
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, model {args.model}", flush=True)
        asyncio.run(bench(args))
    report(args)


if __name__ == "__main__":
    main()
