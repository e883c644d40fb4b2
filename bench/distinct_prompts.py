"""Eight sequences decoding together: distinct prompts against one shared prompt (forkpath engine).

Why (issue 21): the strategies bench decodes eight HumanEval problems at once and got far less
from batching than ``bench/parallel.py``, whose sequences share one prompt. Prompts are prefilled
first (``max_tokens=1``, kept by the prefix index), so the timed part is decode: completion
tokens of the eight greedy answers (at most 128 each) over the wall time of decoding them.

    python bench/distinct_prompts.py [--flash-attn | --no-flash-attn]

The flags set the model's ``flash_attn`` load option (llama.cpp's flash attention); without
either, forkpath's default.
"""

import asyncio
import statistics
import sys
import time

import llama_cpp

from forkpath import load_task
from forkpath._prompts import task_messages
from forkpath.models import GenerateRequest, get_model

flash = {"--flash-attn": {"flash_attn": True}, "--no-flash-attn": {"flash_attn": False}}
options = next((flash[a] for a in sys.argv[1:] if a in flash), {})
model = get_model("local/qwen2.5-coder-0.5b", n_threads=2, **options)
scheduler = model._engine.scheduler
lengths: list[list[int]] = []
tasks = [load_task(f"humaneval/{i}") for i in (0, 4, 8, 12, 16, 20, 24, 28)]


async def run(messages_list) -> float:
    scheduler.forget()
    for m in messages_list:
        await model.generate(GenerateRequest(messages=m, max_tokens=1))
    t = time.perf_counter()
    outs = await asyncio.gather(
        *(model.generate(GenerateRequest(messages=m, max_tokens=128)) for m in messages_list)
    )
    wall = time.perf_counter() - t
    lengths.append(sorted(o.usage.completion_tokens for o in outs))
    return sum(o.usage.completion_tokens for o in outs) / wall, scheduler.held_cells()


async def main() -> None:
    distinct = [task_messages(t) for t in tasks]
    shared = [task_messages(tasks[0])] * 8
    rows = {"1 sequence": [], "8 sharing one prompt": [], "8 distinct prompts": []}
    for _ in range(3):
        rows["1 sequence"].append((await run(distinct[:1]))[0])
        rows["8 sharing one prompt"].append((await run(shared))[0])
        v, held = await run(distinct)
        rows["8 distinct prompts"].append(v)
    on = model._engine.llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    print(
        f"qwen2.5-coder-0.5b (flash attention {'on' if on else 'off'}), 128 tokens each, 2 threads, decode only, median of 3 rounds; cells held after distinct: {held}"
    )
    print(f"  answer lengths of the last round: shared {lengths[-2]}, distinct {lengths[-1]}")
    for k, v in rows.items():
        print(f"  {k:<22} {statistics.median(v):6.1f} tok/s  {[round(x, 1) for x in v]}")


asyncio.run(main())
