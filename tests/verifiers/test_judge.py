"""Model-judged verification and model-written tests, on the scripted FakeModel."""

from __future__ import annotations

import asyncio
import math

import pytest

from forkpath import IOCase, Task, VerifierError
from forkpath.models import FakeModel, ModelCapabilities, TokenInfo, TopLogprob
from forkpath.verifiers import (
    AITestsVerifier,
    ModelJudge,
    Sandbox,
    generate_tests,
    make_verifier,
    parse_score,
    yes_probability,
)

QUESTION = Task(id="q", prompt="What is the capital of France?", kind="text")


def judge_model() -> FakeModel:
    return FakeModel(
        "fake/judge",
        script={"Answer: Paris": ["yes"], "Answer: Lyon": ["no"], "Answer: Nice": ["Sure."]},
    )


async def test_judge_reads_p_yes_from_top_logprobs() -> None:
    judge = ModelJudge(judge_model())
    good = await judge.verify(QUESTION, "Answer: Paris")
    assert good.passed and good.score > 0.9
    assert good.details["method"] == "logprobs"
    assert not good.trusted
    assert good.tests[0].source == "model" and good.tests[0].message.startswith("P(yes) = ")
    bad = await judge.verify(QUESTION, "Answer: Lyon")
    assert not bad.passed and bad.score < 0.1
    assert bad.tests[0].reason == "wrong_answer"


async def test_judge_without_logprobs_parses_a_score() -> None:
    model = FakeModel("fake/chat-only", script={"Answer: Paris": ["9"], "Answer: Lyon": ["Score: 2/10"]})
    model.capabilities = ModelCapabilities()  # like a chat API that returns no logprobs
    judge = ModelJudge(model)
    good = await judge.verify(QUESTION, "Answer: Paris")
    assert good.details["method"] == "score"
    assert good.passed and good.score == pytest.approx(0.9)
    bad = await judge.verify(QUESTION, "Answer: Lyon")
    assert not bad.passed and bad.score == pytest.approx(0.2)
    assert bad.tests[0].message == "score 2/10"


async def test_judge_can_be_told_not_to_use_logprobs() -> None:
    model = FakeModel("fake/judge", script={"Give a score": ["7"]})
    verdict = await ModelJudge(model, use_logprobs=False, threshold=0.8).verify(QUESTION, "Answer: Paris")
    assert verdict.details["method"] == "score"
    assert verdict.score == pytest.approx(0.7) and not verdict.passed


async def test_unreadable_judgment_is_no_answer() -> None:
    verdict = await ModelJudge(judge_model()).verify(QUESTION, "Answer: Nice")
    assert not verdict.passed
    assert verdict.tests[0].reason == "no_answer"


def test_yes_probability_renormalises_over_yes_and_no() -> None:
    token = TokenInfo(
        token="Yes",
        logprob=math.log(0.6),
        top=[
            TopLogprob(token="Yes", logprob=math.log(0.6)),
            TopLogprob(token=" no", logprob=math.log(0.2)),
            TopLogprob(token="Maybe", logprob=math.log(0.2)),
        ],
    )
    assert yes_probability([TokenInfo(token=" "), token]) == pytest.approx(0.75)
    assert yes_probability([TokenInfo(token="No", logprob=math.log(0.8))]) == pytest.approx(0.2)
    assert yes_probability([TokenInfo(token="Perhaps", logprob=-0.1)]) is None


@pytest.mark.parametrize(
    ("text", "score"),
    [("8", 0.8), ("Score: 10/10", 1.0), ("12", 1.0), ("-3", 0.0), ("yes", 1.0), ("No.", 0.0), ("hmm", None)],
)
def test_parse_score(text: str, score: float | None) -> None:
    assert parse_score(text) == score


def test_registry_builds_a_judge_from_a_model_string() -> None:
    judge = make_verifier({"name": "model_judge", "model": "fake/judge", "threshold": 0.7})
    assert isinstance(judge, ModelJudge)
    assert judge.model.id == "fake/judge" and judge.threshold == 0.7


ADD = Task(id="add", prompt="Write add(a, b) returning the sum.", kind="code", entry_point="add")
AI_REPLY = (
    "```python\n"
    "assert add(1, 2) == 3\n"
    "assert add(-1, 1) == 0\n"
    "assert add(0, 0) == 1\n"  # model-written tests can be wrong
    "assert add(1, 2) == 3\n"  # duplicates are dropped
    "assert other(1) == 2\n"  # not about the function under test
    "this is not python\n"
    "```"
)


async def test_generate_function_tests() -> None:
    model = FakeModel("fake/tester", script={"Write 4 new test cases": [AI_REPLY]})
    tests = await generate_tests(model, ADD, n=4)
    assert tests.asserts == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 1"]
    assert tests.model == "fake/tester" and tests.count == 3


async def test_generate_io_tests_for_stdin_stdout_tasks() -> None:
    reply = (
        '```yaml\n- input: |\n    2 3\n  output: |\n    5\n- input: "7 0"\n  output: 7\n- nonsense: 1\n```'
    )
    task = Task(
        id="sum",
        prompt="Read two ints, print the sum.",
        kind="code",
        io_cases=[IOCase(input="1 1", output="2")],
    )
    tests = await generate_tests(FakeModel(script={"YAML": [reply]}), task, n=5)
    assert tests.io_cases == [IOCase(input="2 3\n", output="5\n"), IOCase(input="7 0\n", output="7\n")]


async def test_ai_tests_verdicts_are_untrusted_and_generated_once(sandbox: Sandbox) -> None:
    model = FakeModel("fake/tester", script={"new test cases": [AI_REPLY]})
    verifier = AITestsVerifier(model, n=6)
    verifier.runner.sandbox = sandbox
    good = "def add(a, b):\n    return a + b\n"
    verdicts = await asyncio.gather(*(verifier.verify(ADD, good) for _ in range(3)))
    assert model.calls == 1  # concurrent verifications share one generation
    for verdict in verdicts:
        assert not verdict.trusted
        assert verdict.verifier == "ai_tests"
        assert [t.passed for t in verdict.tests] == [True, True, False]
        assert {t.source for t in verdict.tests} == {"ai"}
        assert verdict.details["tests_by"] == "fake/tester"


async def test_ai_tests_join_humaneval_style_prompts(sandbox: Sandbox) -> None:
    task = Task(
        id="he",
        prompt='def add(a, b):\n    """Sum."""\n',
        kind="code",
        entry_point="add",
        test="def check(c): pass",
    )
    verifier = AITestsVerifier(FakeModel(script={"new test cases": [AI_REPLY]}))
    verifier.runner.sandbox = sandbox
    verdict = await verifier.verify(task, "    return a + b\n")  # a body completion
    assert verdict.score == pytest.approx(2 / 3)


async def test_no_usable_ai_tests_is_a_verifier_error() -> None:
    verifier = AITestsVerifier(FakeModel(script={"new test cases": ["I cannot help with that."]}))
    with pytest.raises(VerifierError, match="wrote no usable tests"):
        await verifier.verify(ADD, "def add(a, b):\n    return a + b\n")
