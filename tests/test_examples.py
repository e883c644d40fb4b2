"""Every example flow validates as shipped and runs end to end on a real local model.

To keep the suite's time bounded on CI's two cores, the run uses SmolLM2-135M for every model
role (it shares its tokenizer with itself, so token-level flows still mix two models) and caps
samples and tokens; the flow's structure, strategies, verifiers and store are as shipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from forkpath import load_tasks
from forkpath.flows import Flow, FlowSpec

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
SMALL = "local/smollm2-135m"


def shrink(data: dict[str, Any], store: Path) -> dict[str, Any]:
    agents = {node["agent"]["model"] for node in data["nodes"].values() if "agent" in node}
    data["models"] = {  # the same model everywhere, with the example's options (batch_invariant)
        name: {"model": SMALL, "options": spec.get("options", {})} if isinstance(spec, dict) else SMALL
        for name, spec in data["models"].items()
        if name not in agents  # an agent keeps its model: SmolLM2's template has no tool calls
    } | {name: data["models"][name] for name in agents}
    for node in data["nodes"].values():
        if "agent" in node:
            node["agent"]["max_steps"] = min(node["agent"].get("max_steps", 8), 2)
            node["agent"]["max_tokens"] = min(node["agent"].get("max_tokens", 512), 160)
    for node in data["nodes"].values():
        params = node.get("params", {})
        for key, cap in (
            ("max_tokens", 48),
            ("n", 2),
            ("outline_tokens", 24),
            ("max_generations", 3),
            ("top_k", 2),
        ):
            if key in params:
                params[key] = min(params[key], cap)
    if "store" in data:
        data["store"] = {"url": f"sqlite:///{store}"}
    return data


def test_there_are_examples() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {
        "quickstart",
        "best_of_n",
        "cascade",
        "token_routing",
        "cothink",
        "tree_search_code",
        "self_consistency_math",
        "speculative",
        "agent_math",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
async def test_example_runs(path: Path, tmp_path: Path) -> None:
    Flow.from_yaml(path)  # validates as shipped, with its real models
    data = shrink(yaml.safe_load(path.read_text()), tmp_path / "store.db")
    flow = Flow.from_spec(FlowSpec.model_validate(data), base_dir=path.parent).validate()
    assert flow.spec.dataset is not None
    task = load_tasks(flow.spec.dataset.model_copy(update={"limit": 1}))[0]
    result = await flow.run(task, runs_dir=tmp_path / "runs")
    assert result.steps and all(step["node"] in flow.spec.nodes for step in result.steps)
    assert result.answer is not None
    assert sum(u.calls + u.cached_calls for u in result.usage.values()) > 0
    assert result.passed is not None  # every example ends with a verdict on its answer
