"""Collect sampled GSM8K solutions from local models: the raw material of the extraction test data.

Each model answers the problems of ``SAMPLES_SUBSET`` (``bench/_gsm8k.py``) with the prompt of
issue 19, ``--samples`` times each at temperature 0.7 and at most 320 tokens, in-process. Every
solution is appended to ``--out`` as one JSON line (model, task, sample index, reference, text,
finish reason, tokens) as soon as it is made; a rerun skips what is there, and what the committed
test data already holds. A problem's samples are asked for together (one batch on the engine). Labelling the
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

from forkpath import Task, load_task
from forkpath._prompts import task_messages
from forkpath.models import GenerateRequest, Model, get_model

MODELS = ["local/smollm2-135m", "local/qwen2.5-coder-0.5b"]


LABELLED = Path(__file__).resolve().parent.parent / "tests/verifiers/data/gsm8k_solutions.jsonl"


def known(path: Path) -> set[tuple[str, str, int]]:
    """(model without ``local/``, task, sample) of the in-process samples a JSONL file holds."""
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        (row["model"].removeprefix("local/"), row["task"], row["sample"])
        for row in rows
        if row.get("system", "forkpath (in-process)") == "forkpath (in-process)"
    }


async def collect(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = known(out) | known(LABELLED)  # labelled ones are not sampled again
    tasks = [load_task(f"gsm8k/{i}") for i in SAMPLES_SUBSET[: args.limit]]
    models = [get_model(model_id, n_threads=args.threads) for model_id in args.models.split(",")]
    started, tokens = time.perf_counter(), 0

    async def sample(model: Model, task: Task, index: int) -> None:
        nonlocal tokens
        result = await model.generate(
            GenerateRequest(
                messages=task_messages(task, PROMPT),
                max_tokens=320,
                temperature=0.7,
                seed=0,
                sample_index=index,
            )
        )
        tokens += result.usage.completion_tokens
        row = {
            "model": model.id,
            "task": task.id,
            "sample": index,
            "reference": task.answer,
            "text": result.text,
            "finish": result.finish_reason,
            "tokens": result.usage.completion_tokens,
        }
        with out.open("a") as f:  # each as it completes
            f.write(json.dumps(row) + "\n")

    for task in tasks:  # the models take turns per problem, so a cut-short run still has both
        for model in models:
            missing = [
                i for i in range(args.samples) if (model.id.removeprefix("local/"), task.id, i) not in done
            ]
            # together: the local engine decodes a problem's samples in one batch
            await asyncio.gather(*(sample(model, task, i) for i in missing))
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
