"""llama.cpp's flash attention on and off, through forkpath's engine, side by side in one run.

llama-cpp-python loads contexts with flash attention off unless told otherwise (llama.cpp's own
default is "auto", which turns it on for the CPU); forkpath's ``flash_attn`` load option decides.
Per model (one subprocess each), two engines of the same file, one with flash attention and
one without, interleaved round by round:

- prefill: tokens/s evaluating a long prompt (HumanEval prompts joined, about 1,800 tokens) from a
  cold cache;
- decode: tokens/s of B = 1, 8, 16 greedy sequences continuing one prompt (short: HumanEval/2,
  about 80 tokens; long: the prompt above), the prompt already in the KV cache, so only
  decoding is timed;
- how many of the B greedy texts differ between the two loads (the kernels round differently).

    flock /tmp/forkpath-bench.lock python bench/flash_attn.py [--models smollm2-135m,...] \
        [--tokens 32] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from forkpath import humaneval_task
from forkpath.models import GenerateRequest
from forkpath.models._llamacpp import LlamaCppModel
from forkpath.models._local import resolve

SIZES = (1, 8, 16)
LONG = 1800


async def decode_rate(
    model: LlamaCppModel, prompt: list[int], width: int, steps: int
) -> tuple[float, list[str]]:
    """Decode tokens/s of ``width`` greedy sequences after ``prompt``, the prompt held in cache."""
    request = GenerateRequest(prompt_tokens=tuple(prompt), max_tokens=steps)
    await model.generate(request.model_copy(update={"max_tokens": 1}))  # the prompt, into the cache
    started = time.perf_counter()
    results = await model.generate_n(request, width)
    seconds = time.perf_counter() - started
    return sum(r.usage.completion_tokens for r in results) / seconds, [r.text for r in results]


async def prefill_rate(model: LlamaCppModel, prompt: list[int]) -> float:
    model._engine.scheduler.forget()
    started = time.perf_counter()
    await model.generate(GenerateRequest(prompt_tokens=tuple(prompt), max_tokens=1))
    return len(prompt) / (time.perf_counter() - started)


async def one_model(name: str, steps: int, rounds: int, threads: int) -> None:
    loads = {
        flash: LlamaCppModel(f"local/{name}", resolve(name), n_ctx=4096, n_threads=threads, flash_attn=flash)
        for flash in (False, True)
    }
    first = loads[False]
    short = first.tokenize(humaneval_task(2).prompt)
    long: list[int] = []
    for i in range(164):
        long += first.tokenize(humaneval_task(i).prompt)
        if len(long) >= LONG:
            break
    long = long[:LONG]
    prompts = {"short": short, "long": long}
    rates: dict[tuple[str, int, bool], list[float]] = {}
    prefill: dict[bool, list[float]] = {False: [], True: []}
    differ: dict[tuple[str, int], int] = {}
    for model in loads.values():  # warm-up: page the weights in
        await decode_rate(model, short, 1, 4)
    for r in range(rounds):
        order = [False, True] if r % 2 == 0 else [True, False]
        for flash in order:
            prefill[flash].append(await prefill_rate(loads[flash], long))
        for label, prompt in prompts.items():
            for width in SIZES:
                texts: dict[bool, list[str]] = {}
                for flash in order:
                    rate, texts[flash] = await decode_rate(loads[flash], prompt, width, steps)
                    rates.setdefault((label, width, flash), []).append(rate)
                differ[label, width] = sum(a != b for a, b in zip(texts[False], texts[True], strict=True))
    print(
        f"\n## {name}: {threads} threads, {steps} tokens per sequence, median of {rounds} interleaved rounds",
        flush=True,
    )
    off, on = statistics.median(prefill[False]), statistics.median(prefill[True])
    print(f"prefill of {len(long)} tokens (tok/s): off {off:.1f}, on {on:.1f}, on/off {on / off:.2f}")
    print(
        f"{'prompt':<16} {'B':>3} {'off tok/s':>10} {'on tok/s':>10} {'on/off':>7} {'greedy texts differ':>20}"
    )
    for label, prompt in prompts.items():
        for width in SIZES:
            off = statistics.median(rates[label, width, False])
            on = statistics.median(rates[label, width, True])
            print(
                f"{label + f' ({len(prompt)} tok)':<16} {width:>3} {off:>10.1f} {on:>10.1f} {on / off:>7.2f} "
                f"{differ[label, width]:>15} / {width}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        asyncio.run(one_model(args.one, args.tokens, args.rounds, args.threads))
        return
    for name in args.models.split(","):  # a process per model: each loads and frees its own
        command = [sys.executable, __file__, "--one", name, "--tokens", str(args.tokens)]
        command += ["--rounds", str(args.rounds), "--threads", str(args.threads)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
