"""mcts: Monte Carlo tree search over steps, with the model's probabilities as priors.

One simulation: from the root, **select** children by UCT or PUCT down to a node that has not
been evaluated (or ends the answer); **expand** evaluated nodes on the way that have no children
yet (``expansion_width`` drafted next steps, sampled or from the top-k first tokens, with their
sequence probabilities as priors); **evaluate** the leaf (by default: complete it greedily and
score the completion with the verifier); **backpropagate** the value along the path. The first
simulation evaluates the root, that is the greedy answer, so mcts never does worse than greedy
decoding when a verifier decides.

Returns the best verified completion found: one that passed, else the highest score.

Example:
    >>> search = strategies.create("mcts", max_simulations=16, expansion_width=3, step="statement")
    >>> result = await search(task, Context({"default": model}, verifier=make_verifier("python_tests")))
"""

from __future__ import annotations

import logging

from forkpath._types import Task
from forkpath.store import TrajectoryNode
from forkpath.strategies._base import Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._search import OutOfBudget, SelectionRule, solved_status
from forkpath.strategies._search_setup import StepSearchParams, finish_candidates, open_step_search
from forkpath.strategies._search_steps import StepKind
from forkpath.strategies._search_stepwise import ExpandMode, StepSearch
from forkpath.strategies._search_values import ValueKind

logger = logging.getLogger("forkpath.strategies.mcts")


@strategies.register("mcts")
def mcts(
    model: str = "default",
    max_simulations: int = 32,
    max_generations: int = 32,
    expansion_width: int = 3,
    expand: ExpandMode = "sample",
    temperature: float = 0.8,
    selection: SelectionRule = "puct",
    c: float = 1.0,
    c_base: float = 10.0,
    step: StepKind = "line",
    step_pattern: str | None = None,
    max_step_tokens: int = 96,
    value: ValueKind = "verifier",
    value_model: str | None = None,
    value_prompt: str | None = None,
    max_depth: int = 24,
    max_tokens: int = 512,
    early_stop: bool = True,
    reuse: bool = True,
    seed: int = 0,
    prompt: str | None = None,
    answer_prefix: str | None = None,
    namespace: str | None = None,
    worker: str | None = None,
    claim_ttl_s: float = 30.0,
) -> Strategy:
    """Monte Carlo tree search over steps.

    Args:
        model: the context's model role that writes steps and rollouts.
        max_simulations: simulations by this worker (select, expand, evaluate, backpropagate).
        max_generations: model calls by this worker that reach a model (cache hits are free).
        expansion_width: children drafted per expanded node.
        expand: ``sample``: ``expansion_width`` sampled steps; ``top_k``: the greedy step and
            the steps that start with the other top-k first tokens.
        temperature: sampling temperature of ``sample`` expansion.
        selection: ``puct`` (priors from the model), ``uct``, or ``var_p_uct`` (PG-TD).
        c: exploration constant.
        c_base: ``var_p_uct``'s base.
        step: where a step ends: ``line``, ``paragraph``, ``statement`` (a Python logical line)
            or ``regex``.
        step_pattern: the regular expression of ``step="regex"``: a step ends after a match.
        max_step_tokens: most tokens of one step.
        value: ``verifier`` (greedy rollout, verifier score), ``self_eval`` (the model's P(yes)
            that the partial answer is on track), or ``prm`` (a process reward model's P(yes)).
        value_model: the model role of ``self_eval``/``prm`` (default: ``model`` / ``prm``).
        value_prompt: the judge's prompt, with ``{problem}`` and ``{partial}``.
        max_depth: steps below the root; deeper nodes are evaluated, never expanded.
        max_tokens: most tokens of a rollout.
        early_stop: stop at the first completion that passes the verifier.
        reuse: evaluate the greedy-step child from its parent's rollout (no model call).
        seed: sampling seed.
        prompt: a template for the user message (``{prompt}`` and the task's fields).
        answer_prefix: the start of the answer, continued by the search (a template with the
            task's fields, e.g. ``"```python\\n{prompt}"`` to search only a function's body).
        namespace: the store namespace of the tree (default: derived from the task, the model
            and the settings, so a rerun resumes the same tree and workers share it).
        worker: this worker's id in claims (default: host, pid and a random suffix).
        claim_ttl_s: how long a crashed worker's claim blocks others.
    """
    params = StepSearchParams(
        model=model,
        step=step,
        step_pattern=step_pattern,
        max_step_tokens=max_step_tokens,
        expand=expand,
        expansion_width=expansion_width,
        temperature=temperature,
        value=value,
        value_model=value_model,
        value_prompt=value_prompt,
        max_depth=max_depth,
        max_tokens=max_tokens,
        max_generations=max_generations,
        reuse=reuse,
        seed=seed,
        prompt=prompt,
        answer_prefix=answer_prefix,
        namespace=namespace,
        worker=worker,
        claim_ttl_s=claim_ttl_s,
    )
    params.check("mcts")

    async def run(task: Task, context: Context) -> StrategyResult:
        async with open_step_search("mcts", params, task, context) as (search, root):
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
                        continue  # another worker holds the node: choose again
                    counters.iterations += 1
                    if early_stop and search.record(leaf).get("passed"):
                        stopped = "early_stop"
            except OutOfBudget:
                stopped = "budget"
            return await finish_candidates(search, root, "mcts", stopped, params)

    return Strategy(run, needs=params.needs(), needs_verifier=value == "verifier")


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
