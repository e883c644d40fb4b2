"""The model judge on real models: in-process SmolLM2 (logprobs) and the llama.cpp server (parsed score)."""

from __future__ import annotations

from forkpath import Task
from forkpath.models import ModelCapabilities, get_model
from forkpath.verifiers import model_judge

TASK = Task(id="q", prompt="What is the capital of France?", kind="text")


async def test_judge_reads_p_yes_from_the_local_models_logprobs() -> None:
    judge = model_judge("local/smollm2-135m", use_logprobs=True)
    right = await judge.verify(TASK, "Paris")
    wrong = await judge.verify(TASK, "Berlin, which is in Germany")
    for verdict in (right, wrong):
        assert verdict.details["method"] == "logprobs"  # read from the top logprobs, not parsed
        assert 0.0 < verdict.score < 1.0  # a renormalised P(yes), never a hard 0/1 from a parse
        assert verdict.trusted is False
        assert verdict.passed == (verdict.score >= 0.5)
    # A 135M model is a weak judge; what must hold is that the probability comes from the
    # logprobs (not a parsed word): two different answers get two different probabilities.
    assert right.score != wrong.score


async def test_judge_over_the_api_without_logprobs_parses_a_score(llama_server: str) -> None:
    model = get_model("openai/smollm2", api_base=llama_server, capabilities=ModelCapabilities())
    judge = model_judge(model, max_tokens=4)
    verdict = await judge.verify(TASK, "Paris")
    assert verdict.details["method"] == "score"  # no logprobs over this endpoint: the reply is parsed
    assert verdict.trusted is False
    reply = verdict.details["reply"]
    from forkpath.verifiers import parse_score

    parsed = parse_score(reply)
    # Whatever the small model replied, the verdict is exactly what parsing that reply gives.
    assert verdict.score == (parsed or 0.0)
    assert verdict.tests[0].reason == (
        "no_answer" if parsed is None else "ok" if parsed >= 0.5 else "wrong_answer"
    )
