"""The batched llama.cpp engine on real models: concurrent calls decode in one batch, share a
prompt's KV, wait for room (FIFO) and free their sequence when cancelled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from forkpath import ConfigError, ContextWindowError
from forkpath.models import GenerateRequest, Message, get_model, usage_meter
from forkpath.models._llamacpp import LlamaCppModel
from forkpath.models._local import is_present, resolve
from forkpath.models._shaping import StepShaper

pytestmark = pytest.mark.slow

ASK = (Message(role="user", content="Write a Python function that returns the square of a number."),)


def invariant(name: str, **options: int) -> LlamaCppModel:
    model = LlamaCppModel(
        f"local/{name}", resolve(name), n_ctx=2048, n_threads=2, batch_invariant=True, **options
    )
    return model


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppModel:
    return invariant("smollm2-135m")


def counting(i: int) -> GenerateRequest:
    return GenerateRequest(
        messages=(Message(role="user", content=f"Count from {i} to {i + 5}."),), max_tokens=12
    )


@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
async def test_concurrent_greedy_calls_give_the_sequential_tokens_and_logprobs(name: str) -> None:
    if not is_present(name):
        pytest.skip(f"{name} is not pulled")
    model = invariant(name)
    requests = [counting(i).model_copy(update={"logprobs": True}) for i in range(6)]
    sequential = [await model.generate(r) for r in requests]
    steps = model._engine.scheduler.steps
    batched = await asyncio.gather(*(model.generate(r) for r in requests))
    assert [r.text for r in batched] == [r.text for r in sequential]
    assert [[t.logprob for t in r.tokens] for r in batched] == [
        [t.logprob for t in r.tokens] for r in sequential
    ]
    # they did decode together: far fewer steps than 6 x 12 tokens
    assert model._engine.scheduler.steps - steps < 6 * 12 // 2


async def test_a_sample_does_not_depend_on_what_ran_beside_it(smollm2: LlamaCppModel) -> None:
    request = GenerateRequest(messages=ASK, max_tokens=16, temperature=1.0, seed=11)
    third = request.model_copy(update={"sample_index": 3})
    alone = await smollm2.generate(third)
    scheduler = smollm2._engine.scheduler
    scheduler.forget()
    prompt_before = scheduler.prompt_tokens_decoded
    eight = await smollm2.generate_n(request, 8)
    # the prompt was evaluated once for all eight (each re-decodes only its last token)
    assert scheduler.prompt_tokens_decoded - prompt_before <= len(smollm2.chat_prefix(ASK)) + 7
    assert eight[3].text == alone.text
    assert len({s.text for s in eight}) > 1
    beside_others = await asyncio.gather(
        smollm2.generate(third), *(smollm2.generate(counting(i)) for i in range(3))
    )
    assert beside_others[0].text == alone.text
    keys = {
        request.model_copy(update={"sample_index": i}).cache_key(smollm2.cache_identity) for i in range(8)
    }
    assert len(keys) == 8 and third.cache_key(smollm2.cache_identity) in keys


async def test_cancelling_a_call_frees_its_sequence_at_the_next_step(smollm2_path: Path) -> None:
    model = LlamaCppModel("local/smollm2-135m", smollm2_path, n_ctx=1024, n_threads=2, n_seq_max=4)
    scheduler = model._engine.scheduler
    scheduler.forget()
    assert scheduler.held_cells() == 0
    with usage_meter() as meter:
        task = asyncio.create_task(model.generate(GenerateRequest(messages=ASK, max_tokens=500)))
    while scheduler.decoded_tokens < len(model.chat_prefix(ASK)) + 3:  # prefilled, decoding
        await asyncio.sleep(0.05)
    assert scheduler.held_cells() > 0 and any(s.job is not None for s in scheduler.slots)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # what it decoded before the cancel is charged to the meter open where the call began
    spent = meter.total
    assert spent.calls == 1 and spent.prompt_tokens == len(model.chat_prefix(ASK))
    assert 3 <= spent.completion_tokens < 500
    for _ in range(200):
        if all(s.job is None and not s.tokens for s in scheduler.slots):
            break
        await asyncio.sleep(0.05)
    assert all(s.job is None and not s.tokens for s in scheduler.slots)
    assert scheduler.held_cells() == 0
    # the engine goes on serving
    assert (await model.generate(GenerateRequest(messages=ASK, max_tokens=3))).usage.completion_tokens == 3


async def test_a_request_that_can_never_fit_fails_at_once_while_others_decode(smollm2_path: Path) -> None:
    model = LlamaCppModel("local/smollm2-135m", smollm2_path, n_ctx=256, n_threads=2, n_seq_max=4)
    scheduler = model._engine.scheduler
    running = asyncio.create_task(model.generate(GenerateRequest(messages=ASK, max_tokens=120)))
    while scheduler.decoded_tokens == 0:
        await asyncio.sleep(0.02)
    with pytest.raises(ContextWindowError, match="do not fit the context of 256"):
        await model.generate(GenerateRequest(prompt="word " * 300, max_tokens=4))
    assert not running.done()  # refused before the running call ended, not after it
    assert (await running).usage.completion_tokens > 0


async def test_calls_wait_for_kv_cells_in_order_and_never_fail_half_way(smollm2_path: Path) -> None:
    """Room for about two calls at once: the rest wait (FIFO) and all complete whole."""
    model = LlamaCppModel(
        "local/smollm2-135m", smollm2_path, n_ctx=512, n_threads=2, batch_invariant=True, kv_cells=200
    )
    requests = [counting(i).model_copy(update={"max_tokens": 40}) for i in range(5)]
    need = len(model.chat_prefix(requests[0].messages or ())) + 40
    assert 5 * need > model._engine.scheduler.kv_cells  # not all at once
    results = await asyncio.gather(*(model.generate(r) for r in requests))
    reference = invariant("smollm2-135m")
    for request, result in zip(requests, results, strict=True):
        assert result.text == (await reference.generate(request)).text
    assert all(s.job is None for s in model._engine.scheduler.slots)


async def test_sixty_four_concurrent_calls_all_complete_once(smollm2: LlamaCppModel) -> None:
    requests = [
        GenerateRequest(messages=(Message(role="user", content=f"Repeat the number {i}."),), max_tokens=6)
        for i in range(64)
    ]
    results = await asyncio.gather(*(smollm2.generate(r) for r in requests))
    assert len(results) == 64
    for request, result in zip(requests, results, strict=True):
        assert result.usage.prompt_tokens == len(smollm2.chat_prefix(request.messages or ()))
        assert 0 < result.usage.completion_tokens <= 6
    for i in (0, 17, 63):  # each got its own answer, the one it gets alone
        assert results[i].text == (await smollm2.generate(requests[i])).text


async def test_streaming_yields_tokens_as_the_engine_samples_them(smollm2: LlamaCppModel) -> None:
    request = GenerateRequest(messages=ASK, max_tokens=20)
    whole = await smollm2.generate(request)
    chunks = [c async for c in smollm2.stream(request)]
    assert len(chunks) > 10 and chunks[-1].result is not None
    assert "".join(c.text for c in chunks[:-1]) == whole.text == chunks[-1].result.text
    # a stop string: nothing past it is ever streamed
    cut = request.model_copy(update={"stop": ("\n",)})
    chunks = [c async for c in smollm2.stream(cut)]
    result = chunks[-1].result
    assert (
        result is not None and result.finish_reason == "stop" and "\n" not in "".join(c.text for c in chunks)
    )


async def test_leaving_a_stream_early_frees_its_sequence(smollm2: LlamaCppModel) -> None:
    scheduler = smollm2._engine.scheduler
    async with asyncio.timeout(600):
        stream = smollm2.stream(GenerateRequest(messages=ASK, max_tokens=400))
        async for _chunk in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
        while any(s.job is not None for s in scheduler.slots):
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_seq_max": 0}, "n_seq_max"),
        ({"kv_cells": 4}, "kv_cells"),
        ({"n_seq_max": "many"}, "n_seq_max"),
        ({"flash_attn": "maybe"}, "flash_attn"),
    ],
)
def test_bad_engine_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_model("local/smollm2-135m", **options)


async def test_a_call_bigger_than_all_kv_cells_is_refused_at_once(smollm2_path: Path) -> None:
    model = LlamaCppModel("local/smollm2-135m", smollm2_path, n_ctx=1024, n_threads=2, kv_cells=64)
    with pytest.raises(ContextWindowError, match="exceed the engine's"):
        await model.generate(GenerateRequest(messages=ASK, max_tokens=500))


async def test_penalties_act_on_raw_logits_over_the_generated_tokens_as_llama_cpp_python(
    smollm2: LlamaCppModel, smollm2_path: Path
) -> None:
    """Greedy with repetition and frequency penalties gives llama-cpp-python's own sampler chain's
    tokens (penalties on raw logits over the generated tokens, then greedy), and the penalties
    do change the output."""
    from forkpath.models._llamacpp import new_llama

    prompt = smollm2.tokenize("The list: cat, dog, cat, dog, cat, dog, cat,")
    plain = GenerateRequest(prompt_tokens=tuple(prompt), max_tokens=24)
    penalised = plain.model_copy(update={"repetition_penalty": 1.5, "frequency_penalty": 0.5})
    ours = await smollm2.generate(penalised)
    assert ours.text != (await smollm2.generate(plain)).text
    reference = new_llama(smollm2_path, batch_invariant=True, n_ctx=2048, n_threads=2, verbose=False)
    try:
        theirs = reference.create_completion(
            prompt=prompt, max_tokens=24, temperature=0.0, repeat_penalty=1.5, frequency_penalty=0.5
        )
    finally:
        reference.close()
    assert ours.text == theirs["choices"][0]["text"]  # type: ignore[index]


class _Split(StepShaper):
    """Always decodes a step in chunks of three rows (uneven: 8 = 3 + 3 + 2)."""

    def choose(self, rows: int) -> int:
        return min(rows, 3)


async def test_a_step_split_into_chunks_gives_the_one_batch_tokens(smollm2: LlamaCppModel) -> None:
    scheduler = smollm2._engine.scheduler
    requests = [counting(i).model_copy(update={"logprobs": True}) for i in range(8)]
    # both from a cold cache: where earlier calls left their cells is another matter (the KV
    # layout can move a warm engine's logprobs in the last bits; docs/benchmarks.md)
    scheduler.forget()
    scheduler.shaper = None
    whole = await asyncio.gather(*(smollm2.generate(r) for r in requests))
    scheduler.forget()
    scheduler.shaper = _Split()
    try:
        split = await asyncio.gather(*(smollm2.generate(r) for r in requests))
    finally:
        scheduler.shaper = StepShaper()
    assert [r.text for r in split] == [r.text for r in whole]
    assert [[t.logprob for t in r.tokens] for r in split] == [[t.logprob for t in r.tokens] for r in whole]
    # the engine's own shaper measures steps of more than four rows as it decodes them
    await asyncio.gather(*(smollm2.generate(r) for r in requests))
    assert 8 in scheduler.shaper.table() or 7 in scheduler.shaper.table()


@pytest.mark.parametrize(
    ("options", "flash"),
    [
        ({"flash_attn": True}, True),
        ({"flash_attn": False}, False),
        ({"flash_attn": False, "batch_invariant": True}, True),
    ],
)
async def test_the_flash_attn_option_reaches_the_context(options: dict[str, bool], flash: bool) -> None:
    """``flash_attn`` from a flow's model options loads a context with llama.cpp's flash
    attention on or off (a batch-invariant load always has it), in an engine of its own."""
    import llama_cpp

    model = get_model("local/smollm2-135m", n_ctx=256, n_threads=2, **options)
    engine = model._engine  # type: ignore[attr-defined]
    wanted = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    assert engine.llm.context_params.flash_attn_type == wanted
    other = get_model("local/smollm2-135m", n_ctx=256, n_threads=2, flash_attn=not flash)
    assert other._engine is not engine  # type: ignore[attr-defined]
    result = await model.generate(GenerateRequest(messages=ASK, max_tokens=4))
    assert result.usage.completion_tokens == 4


def test_the_options_default_is_the_engines() -> None:
    """A flow that says nothing about ``flash_attn`` gets what a model built in code gets."""
    from forkpath.models import LlamaCppOptions
    from forkpath.models._llamacpp import DEFAULT_FLASH_ATTN

    assert LlamaCppOptions().flash_attn is DEFAULT_FLASH_ATTN
