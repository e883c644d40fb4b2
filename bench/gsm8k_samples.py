"""Collect sampled GSM8K solutions from local models: the raw material of the extraction test data.

Each model answers the problems of ``SAMPLES_SUBSET`` (``bench/_gsm8k.py``) with the prompt of
issue 19, ``--samples`` times each at temperature 0.7 and at most 320 tokens, in-process. Every
solution is appended to ``--out`` as one JSON line (model, task, sample index, reference, text,
finish reason, tokens) as soon as it is made; a rerun skips what is there. Labelling the
solutions is a separate step (``bench/gsm8k_label.py``).

    flock /tmp/forkpath-bench.lock python bench/gsm8k_samples.py --out runs/gsm8k-samples.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from _gsm8k import PROMPT, SAMPLES_SUBSET

from forkpath import load_task
from forkpath._prompts import task_messages
from forkpath.models import GenerateRequest, get_model

MODELS = ["local/smollm2-135m", "local/qwen2.5-coder-0.5b"]


async def collect(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done.add((row["model"], row["task"], row["sample"]))
    tasks = [load_task(f"gsm8k/{i}") for i in SAMPLES_SUBSET[: args.limit]]
    models = [get_model(model_id, n_threads=args.threads) for model_id in args.models.split(",")]
    started, tokens = time.perf_counter(), 0
    for task in tasks:  # the models take turns per problem, so a cut-short run still has both
        for model in models:
            for sample in range(args.samples):
                if (model.id, task.id, sample) in done:
                    continue
                result = await model.generate(
                    GenerateRequest(
                        messages=task_messages(task, PROMPT),
                        max_tokens=320,
                        temperature=0.7,
                        seed=0,
                        sample_index=sample,
                    )
                )
                tokens += result.usage.completion_tokens
                row = {
                    "model": model.id,
                    "task": task.id,
                    "sample": sample,
                    "reference": task.answer,
                    "text": result.text,
                    "finish": result.finish_reason,
                    "tokens": result.usage.completion_tokens,
                }
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        elapsed = time.perf_counter() - started
        print(f"{task.id} {tokens} tokens {elapsed:.0f} s ({tokens / elapsed:.1f} tok/s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/gsm8k-samples.jsonl")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--samples", type=int, default=4, help="samples per problem")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of the subset")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    asyncio.run(collect(parser.parse_args()))


if __name__ == "__main__":
    main()
