"""beam_search: keep the ``beam_width`` best partial answers, one step at a time.

At each depth every beam is expanded into ``expansion_width`` drafted next steps (sampled, or
from the top-k first tokens); every new child is scored by the value source (by default:
completed greedily and scored by the verifier); children that end the answer are finished
candidates, and the best ``beam_width`` of the others are the next beams. Stops when no beam is
left, at ``max_depth``, at the budget, or (``early_stop``) at the first completion that passes.

Nodes, values and rollouts live in the store, so a rerun resumes without redoing a drafted step
or an evaluation, and workers sharing the tree wait for each other's work instead of repeating it.

Example:
    >>> search = strategies.create("beam_search", beam_width=2, expansion_width=3, step="statement")
    >>> result = await search(task, Context({"default": model}, verifier=make_verifier("python_tests")))
"""

from __future__ import annotations

from forkpath._types import Task
from forkpath.store import TrajectoryNode
from forkpath.strategies._base import Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._search import OutOfBudget
from forkpath.strategies._search_setup import StepSearchParams, finish_candidates, open_step_search
from forkpath.strategies._search_steps import StepKind
from forkpath.strategies._search_stepwise import ExpandMode, StepSearch
from forkpath.strategies._search_values import ValueKind


@strategies.register("beam_search")
def beam_search(
    model: str = "default",
    beam_width: int = 2,
    expansion_width: int = 3,
    expand: ExpandMode = "sample",
    temperature: float = 0.8,
    max_generations: int = 64,
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
    """Beam search over steps with a value function.

    Args:
        model: the context's model role that writes steps and rollouts.
        beam_width: partial answers kept at each depth.
        expansion_width: next steps drafted per beam.
        expand: ``sample`` (``expansion_width`` sampled steps) or ``top_k`` (the greedy step and
            the steps that start with the other top-k first tokens).
        temperature: sampling temperature of ``sample`` expansion.
        max_generations: model calls by this worker that reach a model (cache hits are free).
        step: where a step ends: ``line``, ``paragraph``, ``statement`` or ``regex``.
        step_pattern: the regular expression of ``step="regex"``.
        max_step_tokens: most tokens of one step.
        value: ``verifier`` (greedy rollout scored by the verifier), ``self_eval`` or ``prm``.
        value_model: the model role of ``self_eval``/``prm`` (default: ``model`` / ``prm``).
        value_prompt: the judge's prompt, with ``{problem}`` and ``{partial}``.
        max_depth: most steps.
        max_tokens: most tokens of a rollout.
        early_stop: stop at the first completion that passes the verifier.
        reuse: evaluate the greedy-step child from its parent's rollout (no model call).
        seed: sampling seed.
        prompt: a template for the user message.
        answer_prefix: the start of the answer, continued by the search (a template with the
            task's fields, e.g. ``"```python\\n{prompt}"`` to search only a function's body).
        namespace: the store namespace of the tree (default: derived from task, model, settings).
        worker: this worker's id in claims.
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
    params.check("beam_search")
    if beam_width < 1:
        from forkpath._errors import ConfigError

        raise ConfigError(f"beam_search: beam_width must be at least 1, got {beam_width}")

    async def run(task: Task, context: Context) -> StrategyResult:
        async with open_step_search("beam_search", params, task, context) as (search, root):
            stopped: Stopped = "done"
            try:
                stopped = await _search(search, root, beam_width, max_depth, early_stop)
            except OutOfBudget:
                stopped = "budget"
            return await finish_candidates(search, root, "beam_search", stopped, params)

    return Strategy(run, needs=params.needs(), needs_verifier=value == "verifier")


async def _search(
    search: StepSearch, root: TrajectoryNode, beam_width: int, max_depth: int, early_stop: bool
) -> Stopped:
    counters = search.tree.counters
    beams: list[list[TrajectoryNode]] = [[root]]
    for _ in range(max_depth):
        scored: list[tuple[TrajectoryNode, list[TrajectoryNode]]] = []
        for path in beams:
            for child in await search.expand_once(path[-1], path):
                child_path = [*path, child]
                child = await search.evaluate_once(child, child_path)
                child_path[-1] = child
                scored.append((child, child_path))
                if early_stop and search.record(child).get("passed"):
                    counters.iterations += 1
                    return "early_stop"
        counters.iterations += 1
        open_paths = [(node, path) for node, path in scored if not search.terminal(node)]
        # Highest value first; ties keep the drafting order (most likely first).
        open_paths.sort(key=lambda item: -(item[0].rollout.value if item[0].rollout else 0.0))
        beams = [path for _, path in open_paths[:beam_width]]
        if not beams:
            break
    return "done"
