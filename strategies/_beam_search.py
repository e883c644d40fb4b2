"""beam_search: keep the ``beam_width`` best partial answers, one step at a time.

At each depth every beam is expanded into ``expansion_width`` drafted next steps (sampled, or
from the top-k first tokens); every new child is scored by the value source (by default:
completed greedily and scored by the verifier); children that end the answer are finished
candidates, and the best ``beam_width`` of the others are the next beams. Stops when no beam is
left, at ``step.max_depth``, at the budget, or (``early_stop``) at the first completion that passes.

Nodes, values and rollouts live in the store, so a rerun resumes without redoing a drafted step
or an evaluation, and workers sharing the tree wait for each other's work instead of repeating it.

Example:
    >>> search = strategies.create("beam_search", beam_width=2, step={"kind": "statement", "expansion_width": 3})
    >>> result = await search(task, Context({"default": model}, verifier=make_verifier("python_tests")))
"""

from __future__ import annotations

from forkpath._errors import ConfigError
from forkpath._params import Count, Seed
from forkpath._prompts import PromptTemplate
from forkpath._types import Task
from forkpath.store import TrajectoryNode
from forkpath.strategies._base import Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._search import OutOfBudget
from forkpath.strategies._search_params import (
    STEP_SEARCH_MOVED,
    SharingParams,
    Step,
    StepParams,
    Value,
    ValueParams,
    group,
)
from forkpath.strategies._search_setup import StepSearchParams, finish_candidates, open_step_search
from forkpath.strategies._search_stepwise import StepSearch


@strategies.register("beam_search", moved=STEP_SEARCH_MOVED)
def beam_search(
    model: str = "default",
    beam_width: Count = 2,
    max_generations: Count = 64,
    early_stop: bool = True,
    seed: Seed = 0,
    prompt: PromptTemplate | None = None,
    answer_prefix: PromptTemplate | None = None,
    step: Step = StepParams(),
    value: Value = ValueParams(),
    sharing: SharingParams = SharingParams(),
) -> Strategy:
    """Beam search over steps with a value function.

    Args:
        model: the context's model role that writes steps and rollouts.
        beam_width: partial answers kept at each depth.
        max_generations: model calls by this worker that reach a model (cache hits are free).
        early_stop: stop at the first completion that passes the verifier.
        seed: sampling seed.
        prompt: a template for the user message.
        answer_prefix: the start of the answer, continued by the search (a template with the
            task's fields, e.g. ``"```python\\n{prompt}"`` to search only a function's body).
        step: where steps end and how the next ones are drafted (:class:`StepParams`;
            ``step.max_depth`` is the most steps, ``step.expansion_width`` next steps per beam).
        value: how a node is scored (:class:`ValueParams`): by default a greedy rollout, verified.
        sharing: the tree's namespace, claims, and the trajectory cache (:class:`SharingParams`).
    """
    if beam_width < 1:  # a direct call is not validated against the signature's ranges
        raise ConfigError(f"beam_width must be at least 1, got {beam_width}")
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
            stopped: Stopped = "done"
            try:
                stopped = await _search(search, root, beam_width, params.step.max_depth, early_stop)
            except OutOfBudget:
                stopped = "budget"
            return await finish_candidates(search, root, name, stopped)

    made = Strategy(run, needs=params.needs(), needs_verifier=params.value.kind == "verifier")
    return made


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
