"""mcts: Monte Carlo tree search over steps, with the model's probabilities as priors.

One simulation: from the root, **select** children by UCT or PUCT down to a node that has not
been evaluated, never into a solved one (a finished answer, or a node whose children are all
solved: see :mod:`forkpath.strategies._search`); **expand** evaluated nodes on the way that have
no children yet (``step.expansion_width`` drafted next steps, sampled or from the top-k first tokens, with their
sequence probabilities as priors); **evaluate** the leaf (by default: complete it greedily and
score the completion with the verifier); **backpropagate** the value along the path. The first
simulation evaluates the root, that is the greedy answer, so mcts never does worse than greedy
decoding when a verifier decides.

Returns the best verified completion found: one that passed, else the highest score. The search
ends at ``max_simulations``, at the budget, at a passing answer (``early_stop``) or when its root
is solved (every way on is known).

Example:
    >>> search = strategies.create("mcts", max_simulations=16, step={"kind": "statement", "expansion_width": 3})
    >>> result = await search(task, Context({"default": model}, verifier=make_verifier("python_tests")))
"""

from __future__ import annotations

import logging

from forkpath._params import Count, NonNegative, Seed
from forkpath._prompts import PromptTemplate
from forkpath._types import Task
from forkpath.store import TrajectoryNode
from forkpath.strategies._base import Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._search import OutOfBudget, SelectionRule, solved_status
from forkpath.strategies._search_params import (
    STEP_SEARCH_MOVED,
    Positive,
    SharingParams,
    Step,
    StepParams,
    Value,
    ValueParams,
    group,
)
from forkpath.strategies._search_setup import StepSearchParams, finish_candidates, open_step_search
from forkpath.strategies._search_stepwise import StepSearch

logger = logging.getLogger("forkpath.strategies.mcts")


@strategies.register("mcts", moved=STEP_SEARCH_MOVED)
def mcts(
    model: str = "default",
    max_simulations: Count = 32,
    max_generations: Count = 32,
    selection: SelectionRule = "puct",
    c: NonNegative = 1.0,
    c_base: Positive = 10.0,
    early_stop: bool = True,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
    answer_prefix: PromptTemplate | None = None,
    step: Step = StepParams(),
    value: Value = ValueParams(),
    sharing: SharingParams = SharingParams(),
) -> Strategy:
    """Monte Carlo tree search over steps.

    Args:
        model: the context's model role that writes steps and rollouts.
        max_simulations: simulations by this worker (select, expand, evaluate, backpropagate).
        max_generations: model calls by this worker that reach a model (cache hits are free).
        selection: ``puct`` (priors from the model), ``uct``, or ``var_p_uct`` (PG-TD).
        c: exploration constant.
        c_base: ``var_p_uct``'s base.
        early_stop: stop at the first completion that passes the verifier.
        seed: sampling seed.
        prompt: a template for the user message (``{prompt}`` and the task's fields).
        answer_prefix: the start of the answer, continued by the search (a template with the
            task's fields, e.g. ``"```python\\n{prompt}"`` to search only a function's body).
        step: where steps end and how the next ones are drafted (:class:`StepParams`).
        value: how a node is scored (:class:`ValueParams`): by default a greedy rollout, verified.
        sharing: the tree's namespace, claims, and the trajectory cache (:class:`SharingParams`).
    """
    params = StepSearchParams(
        model=model,
        step=group(StepParams, step, "step"),
        value=group(ValueParams, value, "value"),
        sharing=group(SharingParams, sharing, "sharing"),
        max_generations=max_generations,
        seed=seed,
        prompt=prompt,
        answer_prefix=answer_prefix,
    )

    async def run(task: Task, context: Context) -> StrategyResult:
        name = made.name
        async with open_step_search(name, params, task, context) as (search, root):
            counters = search.tree.counters
            stopped: Stopped = "done"
            if early_stop and root.rollout is not None:
                found, chosen, _, _ = await search.candidates(root)
                if chosen is not None and found[chosen].passed:
                    stopped = "early_stop"  # an earlier run (or another worker) solved it
            try:
                while stopped == "done" and counters.iterations < max_simulations:
                    top = await search.tree.get(root.key)
                    if solved_status(top, finished=search.terminal(top)) is not None:
                        break  # every way on is known (MCTS-Solver): nothing left to learn
                    if not search.writer.budget_left():
                        stopped = "budget"
                        break
                    leaf = await simulate(search, root, selection, c, c_base)
                    if leaf is None:
                        continue  # another worker holds the node, or a node was solved: choose again
                    counters.iterations += 1
                    if early_stop and search.record(leaf).get("passed"):
                        stopped = "early_stop"
            except OutOfBudget:
                stopped = "budget"
            return await finish_candidates(search, root, name, stopped)

    made = Strategy(run, needs=params.needs(), needs_verifier=params.value.kind == "verifier")
    return made


async def simulate(
    search: StepSearch, root: TrajectoryNode, selection: SelectionRule, c: float, c_base: float
) -> TrajectoryNode | None:
    """One simulation; the evaluated leaf, or None when it chose nothing to evaluate (a node was
    held by another worker, or every child of a node turned out solved)."""
    tree = search.tree
    node = await tree.get(root.key)
    path = [node]
    while node.rollout is not None and not search.terminal(node):
        if not node.children:
            if not await tree.claim(node):
                await tree.wait()
                return None
            async with tree.holding(node):
                node = await tree.get(node.key)
                if not node.children and not search.terminal(node):
                    await search.expand(node, path)
            node = await tree.get(node.key)
            if search.terminal(node) or not node.children:
                break
        chosen = await tree.select(selection, node, finished=search.terminal, c=c, c_base=c_base)
        if chosen is None:
            return None  # every child is solved, and now so is this node: choose again
        node = chosen
        path.append(node)
    if node.rollout is None:
        if not await tree.claim(node):
            await tree.wait()
            return None
        async with tree.holding(node):
            node = await tree.get(node.key)
            if node.rollout is None:
                return await tree.evaluate_visited(path, lambda: search.evaluate(node, path))
    assert node.rollout is not None
    await tree.backpropagate(path, node.rollout.value)
    return node
