"""Model-layer speed, measured side by side in one run.

1. Tokens per second of forkpath's llama.cpp backend generating with top-5 logprobs and entropy,
   versus plain llama-cpp-python generation (no logprobs) on the same prompt, and versus
   llama-cpp-python's own logprobs path (``logits_all=True``). Printed as ratios to plain.
2. Framework overhead per call: forkpath's litellm backend versus a direct ``litellm.acompletion``
   against the same local llama.cpp server, printed as a ratio.

Runs are interleaved (A, B, C, A, B, C, ...) and the median is reported, so drift on a shared
machine hits every variant alike.

    python bench/models.py [--model local/smollm2-135m] [--tokens 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _server import llama_server

from forkpath.models import GenerateRequest, Message, get_model
from forkpath.models._llamacpp import LlamaCppModel, new_llama

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def median_rate(samples: list[tuple[int, float]]) -> float:
    return statistics.median(n / t for n, t in samples)


async def generation_speed(model_id: str, n_tokens: int, rounds: int) -> None:
    import llama_cpp

    model = get_model(model_id)
    assert isinstance(model, LlamaCppModel), "the generation benchmark needs a local GGUF model"
    prompt_ids = model.chat_prefix((Message(role="user", content=PROMPT),))
    threads = os.cpu_count() or 1
    # Loaded as forkpath loads its engine (extra weight buffers only where safe), so the
    # comparison is of decode loops, not of llama.cpp settings.
    plain = new_llama(model.path, n_ctx=4096, n_threads=threads, verbose=False)
    slow = new_llama(model.path, n_ctx=4096, n_threads=threads, logits_all=True, verbose=False)
    request = GenerateRequest(prompt_tokens=tuple(prompt_ids), max_tokens=n_tokens, top_logprobs=5)

    def run_plain(llm: llama_cpp.Llama, logprobs: int | None) -> tuple[int, float]:
        llm.reset()  # a cold prompt each time, as forkpath's engine gets below
        started = time.perf_counter()
        out = llm.create_completion(
            prompt=prompt_ids, max_tokens=n_tokens, temperature=0.0, logprobs=logprobs
        )
        elapsed = time.perf_counter() - started
        return out["usage"]["completion_tokens"], elapsed  # type: ignore[index]

    async def run_forkpath() -> tuple[int, float]:
        model._engine.scheduler.forget()  # a cold prompt, as llama-cpp-python gets it
        started = time.perf_counter()
        result = await model.generate(request)
        elapsed = time.perf_counter() - started
        assert all(len(t.top) == 5 and t.entropy is not None for t in result.tokens)
        return result.usage.completion_tokens, elapsed

    results: dict[str, list[tuple[int, float]]] = {"plain": [], "forkpath": [], "logits_all": []}
    await run_forkpath()  # warm-up: page in the weights
    run_plain(plain, None)
    for _ in range(rounds):
        results["plain"].append(run_plain(plain, None))
        results["forkpath"].append(await run_forkpath())
        results["logits_all"].append(run_plain(slow, 5))
    base = median_rate(results["plain"])
    print(
        f"## Generation speed: {model_id}, {n_tokens} tokens, {rounds} interleaved rounds, {threads} threads"
    )
    print(f"{'variant':<52} {'tokens/s':>9} {'ratio':>7}")
    labels = {
        "plain": "llama-cpp-python plain generation (no logprobs)",
        "forkpath": "forkpath llamacpp backend, top-5 logprobs + entropy",
        "logits_all": "llama-cpp-python logprobs=5 (logits_all=True)",
    }
    for key, label in labels.items():
        rate = median_rate(results[key])
        print(f"{label:<52} {rate:>9.1f} {rate / base:>7.2f}")


async def api_overhead(model_id: str, calls: int) -> None:
    import litellm

    from forkpath.models import model_path

    path = model_path(model_id.removeprefix("local/"))
    with llama_server(path) as base:
        model = get_model("openai/bench", api_base=base)
        messages = [{"role": "user", "content": "Say hi."}]
        request = GenerateRequest(messages=(Message(role="user", content="Say hi."),), max_tokens=4)

        async def direct() -> float:
            started = time.perf_counter()
            await litellm.acompletion(
                model="openai/bench",
                messages=messages,
                max_tokens=4,
                temperature=0.0,
                api_base=base,
                api_key="not-needed",
            )
            return time.perf_counter() - started

        async def ours() -> float:
            started = time.perf_counter()
            await model.generate(request)
            return time.perf_counter() - started

        variants: dict[str, Callable[[], object]] = {"direct": direct, "forkpath": ours}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for fn in variants.values():
            await fn()  # type: ignore[misc]
        for _ in range(calls):
            for key, fn in variants.items():
                times[key].append(await fn())  # type: ignore[misc]
        d, f = statistics.median(times["direct"]), statistics.median(times["forkpath"])
        print(
            f"\n## Per-call overhead through litellm: {calls} interleaved calls, max_tokens=4, local server"
        )
        print(f"direct litellm.acompletion   median {d * 1000:8.1f} ms")
        print(f"forkpath LiteLLMModel        median {f * 1000:8.1f} ms")
        print(f"ratio forkpath / direct      {f / d:8.3f}  (extra {1000 * (f - d):+.1f} ms per call)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="local/smollm2-135m")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    print(
        f"$ python bench/models.py --model {args.model} --tokens {args.tokens} --rounds {args.rounds} --calls {args.calls}"
    )
    asyncio.run(generation_speed(args.model, args.tokens, args.rounds))
    asyncio.run(api_overhead(args.model, args.calls))


if __name__ == "__main__":
    main()
