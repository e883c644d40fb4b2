"""Running flows on the fake model: routing, bounded loops, parallel joins, traces, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from forkpath import Task
from forkpath._trace import read_trace
from forkpath.flows import Flow
from forkpath.flows._compile import graph_structure
from forkpath.flows._nodes import FlowRuntime
from forkpath.strategies import Strategy, StrategyResult, strategies

TASK = Task(id="m/0", prompt="What is 6*7?", kind="math", answer="42")

LOOP = """\
name: ask-check-retry
models:
  default: {model: fake/m, options: {script: {"6*7": ["The answer is 41."]}}}
nodes:
  ask:
    model: default
    prompt: "{{ prompt }} Attempt {{ visits.ask + 1 }}."
    max_visits: 3
  check:
    verifier: math_answer
edges:
  - {from: ask, to: check}
  - {from: check, to: end, when: passed}
  - {from: check, to: ask}
"""


async def test_a_bounded_loop_runs_to_its_bound(tmp_path: Path) -> None:
    result = await Flow.from_yaml_text(LOOP).run(TASK, runs_dir=tmp_path)
    assert [s["node"] for s in result.steps] == ["ask", "check"] * 3
    assert result.passed is False and result.answer == "The answer is 41."
    assert result.usage["fake/m"].calls == 3


async def test_the_loop_exits_when_the_check_passes(tmp_path: Path) -> None:
    text = LOOP.replace("41", "42")
    result = await Flow.from_yaml_text(text).run(TASK, runs_dir=tmp_path)
    assert [s["node"] for s in result.steps] == ["ask", "check"]
    assert result.passed is True and result.score == 1.0


PARALLEL = """\
name: two-models-join
models:
  small: {model: fake/small, options: {script: {"6*7": ["The answer is 41.", "The answer is 40."]}}}
  large: {model: fake/large, options: {script: {"6*7": ["The answer is 42."]}}}
verifier: math_answer
nodes:
  frame:
    prompt: "Question: {{ prompt }}"
  try_small:
    strategy: best_of_n
    params: {n: 2, temperature: 1.0, early_stop: false}
    models: {default: small}
  try_large:
    strategy: best_of_n
    params: {n: 1}
    models: {default: large}
  pick:
    join: best
edges:
  - {from: frame, to: [try_small, try_large]}
  - {from: try_small, to: pick}
  - {from: try_large, to: pick}
  - {from: pick, to: end}
"""


async def test_parallel_branches_join_on_the_best(tmp_path: Path) -> None:
    result = await Flow.from_yaml_text(PARALLEL).run(TASK, runs_dir=tmp_path)
    nodes = [s["node"] for s in result.steps]
    assert nodes[0] == "frame" and set(nodes[1:3]) == {"try_small", "try_large"} and nodes[3:] == ["pick"]
    assert result.answer == "The answer is 42." and result.passed is True
    assert sorted(c["node"] for c in result.candidates) == ["try_large", "try_small", "try_small"]
    assert result.usage["fake/small"].calls == 2 and result.usage["fake/large"].calls == 1


def sdk_parallel() -> Flow:
    flow = Flow(
        "two-models-join",
        models={
            "small": {
                "model": "fake/small",
                "options": {"script": {"6*7": ["The answer is 41.", "The answer is 40."]}},
            },
            "large": {"model": "fake/large", "options": {"script": {"6*7": ["The answer is 42."]}}},
        },
        verifier="math_answer",
    )
    flow.node("frame", prompt="Question: {{ prompt }}")
    flow.node(
        "try_small", strategy="best_of_n", models={"default": "small"}, n=2, temperature=1.0, early_stop=False
    )
    flow.node("try_large", strategy="best_of_n", models={"default": "large"}, n=1)
    flow.node("pick", join="best")
    flow.edge("frame", ["try_small", "try_large"]).edge("try_small", "pick").edge("try_large", "pick").edge(
        "pick", "end"
    )
    return flow


def test_yaml_and_sdk_build_the_same_flow_and_graph() -> None:
    from_yaml = Flow.from_yaml_text(PARALLEL)
    from_sdk = sdk_parallel().validate()
    assert from_sdk.spec == from_yaml.spec
    structure = graph_structure(FlowRuntime(from_yaml.spec, Path.cwd()))
    assert structure == graph_structure(FlowRuntime(from_sdk.spec, Path.cwd()))
    nodes, edges = structure
    assert nodes == ["__end__", "__start__", "frame", "pick", "try_large", "try_small"]
    assert ("__start__", "frame", False) in edges and ("frame", "try_small", True) in edges


def test_to_yaml_round_trips() -> None:
    for text in (LOOP, PARALLEL):
        flow = Flow.from_yaml_text(text)
        again = Flow.from_yaml_text(flow.to_yaml())
        assert again.spec == flow.spec
        assert again.to_yaml() == flow.to_yaml()


async def test_trace_is_written_and_read_back(tmp_path: Path) -> None:
    result = await Flow.from_yaml_text(LOOP.replace("41", "42")).run(TASK, runs_dir=tmp_path, run_id="r1")
    assert result.trace_path == str(tmp_path / "r1" / "trace.jsonl")
    events = list(read_trace(result.trace_path))
    assert [e.type for e in events] == [e.type for e in result.trace]
    assert [(e.node, e.phase) for e in events if e.type == "node"] == [
        ("ask", "start"),
        ("ask", "end"),
        ("check", "start"),
        ("check", "end"),
    ]
    calls = [e for e in events if e.type == "model_call"]
    assert len(calls) == 1 and calls[0].span == "ask" and calls[0].model == "fake/m"


async def test_stream_yields_each_node_as_it_finishes(tmp_path: Path) -> None:
    seen = [node async for node, _ in Flow.from_yaml_text(LOOP).stream(TASK, runs_dir=tmp_path)]
    assert seen == ["ask", "check"] * 3 + ["__result__"]


class Flaky:
    """A strategy that fails on its first call in the process, then answers."""

    calls = 0


@strategies.register("flaky_for_tests")
def flaky_for_tests() -> Strategy:
    async def run(task: Task, context: object) -> StrategyResult:
        Flaky.calls += 1
        if Flaky.calls == 1:
            raise RuntimeError("simulated crash")
        return StrategyResult(answer="The answer is 42.")

    return Strategy(run)  # type: ignore[arg-type]


RESUME = """\
name: resume
models:
  default: {model: fake/m, options: {script: {"6*7": ["The answer is 42."]}}}
nodes:
  first:
    model: default
    prompt: "{{ prompt }}"
  second:
    strategy: flaky_for_tests
edges:
  - {from: first, to: second}
  - {from: second, to: end}
"""


async def test_a_crashed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    flow = Flow.from_yaml_text(RESUME)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await flow.run(TASK, runs_dir=tmp_path, run_id="crash")
    resumed = await flow.run(TASK, runs_dir=tmp_path, run_id="crash", resume=True)
    assert [s["node"] for s in resumed.steps] == ["first", "second"]
    assert resumed.answer == "The answer is 42."
    assert "first" not in [e.node for e in resumed.trace if e.type == "node"]  # not run again
    assert resumed.usage == {}  # the model call was made before the crash


async def test_flow_budget_is_shared_by_its_nodes(tmp_path: Path) -> None:
    text = PARALLEL.replace("verifier: math_answer\n", "verifier: math_answer\nbudget: {max_calls: 1}\n")
    result = await Flow.from_yaml_text(text).run(TASK, runs_dir=tmp_path)
    total_calls = sum(u.calls for u in result.usage.values())
    assert total_calls <= 2  # one branch may start its call before the other sees the limit
    stopped = [s.get("stopped") for s in result.steps if s["kind"] == "strategy"]
    assert "budget" in stopped


async def test_each_visit_of_a_looping_strategy_draws_fresh_samples(tmp_path: Path) -> None:
    text = """\
name: fresh-samples
models:
  default: {model: fake/m, options: {script: {"6*7": ["The answer is 40.", "The answer is 41.", "The answer is 42."]}}}
verifier: math_answer
nodes:
  try:
    strategy: best_of_n
    params: {n: 1, temperature: 1.0}
    max_visits: 3
edges:
  - {from: try, to: end, when: passed}
  - {from: try, to: try}
"""
    result = await Flow.from_yaml_text(text).run(TASK, runs_dir=tmp_path)
    # The fake model ignores seeds (it never passes here), so the node runs three times; each
    # visit must create the strategy with a new seed.
    seeds = [e.params.get("seed", 0) for e in result.trace if e.type == "strategy" and e.phase == "start"]
    assert seeds == [0, 1, 2]


async def test_rerunning_a_run_id_starts_clean(tmp_path: Path) -> None:
    flow = Flow.from_yaml_text(PARALLEL)
    first = await flow.run(TASK, runs_dir=tmp_path, run_id="same")
    again = await flow.run(TASK, runs_dir=tmp_path, run_id="same")
    assert len(again.candidates) == len(first.candidates) == 3
    assert [s["node"] for s in again.steps] == [s["node"] for s in first.steps]


async def test_running_past_max_steps_is_one_clear_error(tmp_path: Path) -> None:
    from forkpath import FlowError

    text = LOOP.replace("max_visits: 3", "max_visits: 30") + "max_steps: 5\n"
    with pytest.raises(FlowError, match="ran more than max_steps=5 node executions; raise max_steps"):
        await Flow.from_yaml_text(text).run(TASK, runs_dir=tmp_path)
