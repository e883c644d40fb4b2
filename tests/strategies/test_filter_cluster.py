"""filter_and_cluster on the fake model: filtering, behavioural clusters in the sandbox, budget, e2e."""

from __future__ import annotations

import pytest

from forkpath import Budget, BudgetLimits, ConfigError, Task
from forkpath.models import FakeModel
from forkpath.strategies import Ballot, Context
from forkpath.strategies._filter_cluster import (
    CRASH,
    behaviour,
    clusters_of,
    filter_and_cluster,
    parse_calls,
    parse_stdin_inputs,
)
from forkpath.verifiers import make_verifier

TASK = Task(
    id="ab",
    prompt='def absolute(x):\n    """Absolute value of x.\n    >>> absolute(3)\n    3\n    """\n',
    kind="code",
    entry_point="absolute",
    test="def check(candidate):\n    assert candidate(3) == 3\n    assert candidate(-4) == 4\n",
)


def program(body: str) -> str:
    return f"```python\ndef absolute(x):\n    {body}\n```"


ABS = program("return abs(x)")
ABS2 = program("return x if x >= 0 else -x")
IDENT = program("return x")  # passes the public example, wrong on negatives
SQRT = program("return (x * x) ** 0.5")  # floats: behaves differently from ABS
BROKEN = program("return y")
INPUTS = "```python\nabsolute(-5)\nabsolute(0)\nabsolute(7)\nabsolute(1, 2)\n```"


def sampler(*programs: str) -> FakeModel:
    return FakeModel("fake/c", script={"valid inputs": [INPUTS], "absolute": list(programs)})


async def test_filters_by_public_examples_and_returns_the_largest_behaviour_cluster() -> None:
    m = sampler(IDENT, ABS, BROKEN, ABS2, IDENT, SQRT, IDENT)
    result = await filter_and_cluster(n=7, filter_by="examples", submissions=2, temperature=1.0)(
        TASK, Context({"default": m}, make_verifier("python_tests"))
    )
    # BROKEN fails the example absolute(3) == 3; the rest survive
    assert result.info["survivors"] == 6 and not result.candidates[2].passed
    # absolute(1, 2) crashes every survivor, so it is dropped; IDENT x3, ABS+ABS2, SQRT
    assert result.info["inputs"] == 3
    assert result.info["clusters"] == [3, 2, 1]
    assert result.info["cluster_members"] == [[0, 4, 6], [1, 3], [5]]
    identity_pick, abs_pick = result.info["submissions"]
    assert identity_pick in (0, 4, 6) and abs_pick in (1, 3)
    assert result.chosen == identity_pick
    # the hidden check judged the submissions only, after the choice: the majority is wrong here
    assert result.passed is False and result.candidates[abs_pick].passed is True
    assert m.calls == 8  # 7 programs and one request for inputs


async def test_filter_by_context_verifier() -> None:
    m = sampler(IDENT, ABS, ABS2)
    result = await filter_and_cluster(n=3, temperature=1.0)(
        TASK, Context({"default": m}, make_verifier("python_tests"))
    )
    assert result.info["survivors"] == 2 and result.info["clusters"] == [2]
    assert result.chosen in (1, 2) and result.passed


async def test_no_survivor_clusters_all_samples() -> None:
    m = sampler(BROKEN, BROKEN)
    result = await filter_and_cluster(n=2, temperature=1.0, filter_by="examples")(
        TASK, Context({"default": m})
    )
    assert result.info["filtered_all"] and result.info["survivors"] == 0
    assert result.info["clusters"] == [2] and result.chosen == 0


async def test_budget_keeps_what_was_sampled() -> None:
    m = sampler(ABS, IDENT, ABS2, ABS)
    result = await filter_and_cluster(n=4, temperature=1.0, filter_by="examples")(
        TASK, Context({"default": m}, budget=Budget(BudgetLimits(max_calls=3)))
    )
    assert result.stopped == "budget" and len(result.candidates) == 2 and m.calls == 3


async def test_behaviour_runs_programs_in_the_sandbox() -> None:
    outputs = await behaviour(TASK, ABS, ["absolute(-5)", "absolute('a')"])
    assert outputs == ["5", CRASH]
    stdin_task = Task(
        id="io", prompt="Read n, print 2n.", kind="code", io_cases=[{"input": "1\n", "output": "2\n"}]
    )
    doubled = await behaviour(stdin_task, "```python\nprint(2 * int(input()))\n```", ["3\n", "x\n"])
    assert doubled == ["6", CRASH]


def test_parsers_and_clusters() -> None:
    assert parse_calls(INPUTS + "\nabsolute(\nprint(1)", "absolute", 10) == [
        "absolute(-5)",
        "absolute(0)",
        "absolute(7)",
        "absolute(1, 2)",
    ]
    assert parse_stdin_inputs("```text\n1 2\n```\nand\n```\n3\n```", 5) == ["1 2\n", "3\n"]
    assert clusters_of([("1",), ("2",), ("1",), ("3",), ("2",)]) == [[0, 2], [1, 4], [3]]


def test_clusters_follow_the_voting_rule() -> None:
    # a program that crashes on every kept input abstains: it is in no cluster
    assert clusters_of([("1", CRASH), (CRASH, CRASH), ("1", CRASH)]) == [[0, 2]]
    # equal sizes: the more likely cluster first (mean token logprob), whatever came first
    likely = [Ballot(None, mean_logprob=lp) for lp in (-2.0, -0.5, -2.0, -0.5)]
    assert clusters_of([("a",), ("b",), ("a",), ("b",)], likely) == [[1, 3], [0, 2]]
    # no logprobs: the cluster with the earliest complete sample (sample 0 was cut at max_tokens)
    cut = [Ballot(None, complete=False), Ballot(None), Ballot(None), Ballot(None)]
    assert clusters_of([("a",), ("b",), ("a",), ("b",)], cut) == [[1, 3], [0, 2]]
    # without inputs every program is one cluster, not an abstention
    assert clusters_of([(), (), ()]) == [[0, 1, 2]]


async def test_configuration_errors_come_before_any_call() -> None:
    m = sampler(ABS)
    with pytest.raises(ConfigError, match="filter_and_cluster needs a verifier"):
        await filter_and_cluster()(TASK, Context({"default": m}))
    with pytest.raises(ConfigError, match="no model named 'tests'"):
        await filter_and_cluster(input_model="tests", filter_by="examples")(TASK, Context({"default": m}))
    assert m.calls == 0


@pytest.mark.slow
async def test_end_to_end_on_smollm2() -> None:
    from forkpath import humaneval_task
    from forkpath.models import get_model

    m = get_model("local/smollm2-135m")
    task = humaneval_task(0)
    result = await filter_and_cluster(n=3, max_tokens=48, filter_by="examples", inputs=3, input_tokens=48)(
        task, Context({"default": m}, make_verifier("python_tests"))
    )
    assert len(result.candidates) == 3
    assert all(c.verdict is not None for c in result.candidates)  # every sample met the examples
    assert sum(result.info["clusters"]) == (result.info["survivors"] or 3)
    assert result.usage[m.id].calls in (3, 4)  # the input request only when there is something to cluster
