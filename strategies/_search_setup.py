"""Building a step search from the parameters ``beam_search`` and ``mcts`` share, and its result."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from forkpath._errors import ConfigError
from forkpath._prompts import task_messages
from forkpath._types import Task
from forkpath.models import ModelCapabilities
from forkpath.store import TrajectoryNode
from forkpath.strategies._base import Context, Stopped, StrategyResult
from forkpath.strategies._search import (
    OutOfBudget,
    SearchCounters,
    SearchTree,
    search_namespace,
    search_store,
)
from forkpath.strategies._search_params import SharingParams, StepParams, ValueParams
from forkpath.strategies._search_steps import StepSplitter, StepWriter
from forkpath.strategies._search_stepwise import StepSearch, StepSearchConfig
from forkpath.strategies._search_values import JudgeValue, RolloutValue, ValueSource, Verification


def answer_prefix(template: str | None, task: Task) -> str:
    """The start of the answer the search continues: ``template`` filled with the task's fields
    (``{prompt}``, ``{entry_point}``, ...), e.g. ``"```python\\n{prompt}"`` for HumanEval."""
    if not template:
        return ""
    try:
        return template.format(**task.model_dump())
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"answer_prefix {template!r} cannot be filled from the task: {e}") from None


@dataclass
class StepSearchParams:
    """The parameters ``beam_search`` and ``mcts`` share (the factories' arguments)."""

    model: str
    step: StepParams
    value: ValueParams
    sharing: SharingParams
    max_generations: int
    seed: int
    prompt: str | None
    answer_prefix: str | None

    def needs(self) -> dict[str, ModelCapabilities]:
        """Capabilities per model role: continuing a partial answer, top-k for ``top_k``."""
        needs = {self.model: ModelCapabilities(prefix_continuation=True, top_logprobs=self.top_logprobs())}
        judge = self.judge_role()
        if judge is not None:
            needs.setdefault(judge, ModelCapabilities())
        return needs

    def top_logprobs(self) -> int:
        return self.step.expansion_width if self.step.expand == "top_k" else 0

    def judge_role(self) -> str | None:
        if self.value.kind == "verifier":
            return None
        return self.value.model or (self.model if self.value.kind == "self_eval" else "prm")

    def tree_params(self) -> dict[str, Any]:
        """What shapes the tree (the namespace hash); budgets are left out so a rerun resumes."""
        return {
            "model": self.model,
            "step": self.step.model_dump(mode="json"),
            "value": self.value.model_dump(mode="json"),
            "reuse": self.sharing.reuse,
            "seed": self.seed,
            "prompt": self.prompt,
            "answer_prefix": self.answer_prefix,
        }


@contextlib.asynccontextmanager
async def open_step_search(
    strategy: str, params: StepSearchParams, task: Task, context: Context
) -> AsyncIterator[tuple[StepSearch, TrajectoryNode]]:
    """The step search of ``task`` in the context's store (or a private one), and its root."""
    writer_model = context.model(params.model)
    counters = SearchCounters()
    generations_left = params.max_generations

    def budget_left() -> bool:
        return counters.generations < generations_left and not context.budget.exhausted()

    messages = task_messages(task, params.prompt)
    writer = StepWriter(
        writer_model,
        messages,
        StepSplitter(params.step.kind, params.step.pattern),
        task,
        counters,
        budget_left,
        max_step_tokens=params.step.max_tokens,
        seed=params.seed,
    )
    verify = Verification(context.verifier, task, counters) if context.verifier is not None else None
    value: ValueSource
    if params.value.kind == "verifier":
        if verify is None:
            raise ConfigError(f"{strategy} with value.kind 'verifier' needs a verifier, and none was given")
        value = RolloutValue(
            writer, verify, max_tokens=params.value.max_tokens, top_logprobs=params.top_logprobs()
        )
    else:
        role = params.judge_role()
        assert role is not None
        value = JudgeValue(
            context.model(role), task, counters, budget_left, prompt=params.value.prompt, verify=verify
        )
    sharing = params.sharing
    namespace = sharing.namespace or search_namespace(strategy, task, writer_model.id, params.tree_params())
    async with search_store(context.store) as store:
        tree = SearchTree(
            store, namespace, worker=sharing.worker, counters=counters, claim_ttl_s=sharing.claim_ttl_s
        )
        config = StepSearchConfig(
            expansion_width=params.step.expansion_width,
            expand=params.step.expand,
            temperature=params.step.temperature,
            max_depth=params.step.max_depth,
            reuse=sharing.reuse,
        )
        search = StepSearch(
            tree,
            writer,
            value,
            task,
            config,
            max_tokens=params.value.max_tokens,
            prefix=answer_prefix(params.answer_prefix, task),
        )
        yield search, await tree.root(text="")


async def finish_candidates(
    search: StepSearch, root: TrajectoryNode, strategy: str, stopped: Stopped
) -> StrategyResult:
    """The result of a step search: every complete answer in the tree and the chosen one.

    When the tree holds no complete answer (a judge-valued search that stopped early), the most
    promising open node is completed greedily, if the budget allows one more call.
    """
    candidates, chosen, path, nodes = await search.candidates(root)
    if chosen is None:
        with contextlib.suppress(OutOfBudget):
            if await search.complete_best(root):
                candidates, chosen, path, nodes = await search.candidates(root)
    await search.tree.snapshot(root, path, strategy=strategy, nodes=nodes)
    counters = search.tree.counters
    top = nodes[0] if nodes else root
    return StrategyResult(
        strategy=strategy,
        answer=candidates[chosen].text if chosen is not None else None,
        chosen=chosen,
        candidates=candidates,
        stopped=stopped,
        info={
            **counters.model_dump(),
            "namespace": search.tree.ns,
            "root": root.key,
            "nodes": len(nodes),
            "root_visits": top.visits,
            "depth": max((n.depth for n in nodes), default=0),
            "path": path,
        },
    )
