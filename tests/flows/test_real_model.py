"""Validation and run-time safety on a real local model (SmolLM2): options and templates are
checked without loading it; a flow that validates runs through a condition on a value that is
still None and a strategy prompt template."""

from __future__ import annotations

from pathlib import Path

import pytest

from forkpath import ConfigError, Task
from forkpath.flows import Flow

REAL = """\
name: real-model
models:
  default: {model: local/smollm2-135m, options: {n_ctx: 1024}}
verifier: math_answer
nodes:
  ask:
    model: default
    prompt: "{{ prompt }}"
    params: {max_tokens: 12}
  draft:
    strategy: best_of_n
    params: {n: 2, max_tokens: 12, temperature: 0.7, early_stop: false, prompt: "Question: {prompt}\\nAnswer:"}
edges:
  - {from: ask, to: end, when: "score >= 0.5"}
  - {from: ask, to: draft}
"""


@pytest.mark.slow
async def test_a_validated_flow_runs_on_a_real_model(tmp_path: Path) -> None:
    task = Task(id="m/0", prompt="What is 6*7?", kind="math", answer="42")
    result = await Flow.from_yaml_text(REAL).run(task, runs_dir=tmp_path)
    # after the model call score is None: `score >= 0.5` is false, not a TypeError
    assert [s["node"] for s in result.steps] == ["ask", "draft"]
    draft = [c for c in result.candidates if c["node"] == "draft"]
    assert len(draft) == 2 and all(c["text"] for c in draft)
    assert all(c["passed"] is not None for c in draft)  # the verifier ran on each
    assert result.usage["local/smollm2-135m"].calls == 3


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("{n_ctx: 1024}", "{n_ctx: 8}", 3, "options.n_ctx: Input should be greater than or equal to 16"),
        ("{n_ctx: 1024}", "{n_ctx: 1024, n_batch: 8}", 3, "options.n_batch: unknown option"),
        ("local/smollm2-135m", "local/smollm2-136m", 3, "unknown local model 'local/smollm2-136m'"),
        ("Question: {prompt}", "Question: {question}", 12, "{question} is not a task field"),
        (
            "temperature: 0.7",
            "temperature: -0.7",
            12,
            "temperature: Input should be greater than or equal to 0",
        ),
        ("{max_tokens: 12}", "{max_tokens: 0}", 9, "nodes.ask.params.max_tokens"),
    ],
)
def test_real_model_flows_are_checked_without_loading_the_model(
    old: str, new: str, line: int, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml_text(REAL.replace(old, new), source="real.yaml")
    assert str(info.value).startswith(f"real.yaml:{line}: ") and fragment in str(info.value), str(info.value)


@pytest.mark.slow
async def test_a_models_sampling_option_reaches_every_sample_of_a_yaml_strategy(tmp_path: Path) -> None:
    """``options: {sampling: {top_k: 1}}`` on the model: a hot self-consistency vote's samples
    are all the greedy answer (only the likeliest token is left); without it they differ."""
    flow = """\
name: sampler
models:
  default: {model: local/smollm2-135m, options: {n_ctx: 1024, SAMPLING}}
verifier: math_answer
nodes:
  vote:
    strategy: self_consistency
    params: {n: 3, temperature: 1.5, max_tokens: 16, early_stop: false}
edges:
  - {from: vote, to: end}
"""
    task = Task(id="m/0", prompt="What is 6*7? Answer with a number.", kind="math", answer="42")
    greedy = await Flow.from_yaml_text(flow.replace(", SAMPLING", "").replace("1.5", "0.0")).run(
        task, runs_dir=tmp_path
    )
    texts = {}
    for name, sampling in (("top_k 1", ", sampling: {top_k: 1}"), ("free", "")):
        result = await Flow.from_yaml_text(flow.replace(", SAMPLING", sampling)).run(task, runs_dir=tmp_path)
        texts[name] = {c["text"] for c in result.candidates}
    assert texts["top_k 1"] == {greedy.candidates[0]["text"]}
    assert len(texts["free"]) > 1
