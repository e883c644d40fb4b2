"""What ``beam_search`` and ``mcts`` share: a text tree of steps, evaluated and expanded once.

Every node's evaluation is kept on it in the store (:meth:`TrajectoryStore.set_rollout`) as a
record: the value, the complete answer it rests on, the rollout's text after the node, whether
the node ends the answer. A node is evaluated and expanded by one worker (a claim); another
worker that reaches it waits for the record or the children instead of redoing the work.

Trajectory reuse (``reuse=True``): a node's greedy rollout starts with its greedy next step, so
the child that takes that step has the same rollout; it is evaluated from its parent's record,
without a model call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from forkpath._types import Task
from forkpath.store import NewChild, TrajectoryNode
from forkpath.strategies._search import Found, SearchTree, normalise, record_of
from forkpath.strategies._search_steps import StepDraft, StepWriter, answer_complete, step_priors
from forkpath.strategies._search_values import Evaluation, ValueSource

ExpandMode = Literal["sample", "top_k"]


@dataclass
class StepSearchConfig:
    """How a step search expands and evaluates nodes."""

    expansion_width: int = 3
    expand: ExpandMode = "sample"
    temperature: float = 0.8
    max_depth: int = 24
    reuse: bool = True


class StepSearch:
    """A step tree with one worker's writer and value source.

    Args:
        tree: the tree in the store.
        writer: drafts steps and rollouts.
        value: scores partial and complete answers.
        task: the task.
        config: expansion and evaluation settings.
    """

    def __init__(
        self,
        tree: SearchTree,
        writer: StepWriter,
        value: ValueSource,
        task: Task,
        config: StepSearchConfig,
        *,
        max_tokens: int = 512,
        prefix: str = "",
    ) -> None:
        self.tree = tree
        self.max_tokens = max_tokens
        self.prefix = prefix
        self.writer = writer
        self.value = value
        self.task = task
        self.config = config

    def partial(self, path: Sequence[TrajectoryNode]) -> str:
        """The answer so far at the end of ``path``: the answer prefix, then the steps."""
        return self.prefix + "".join(node.text for node in path[1:])

    record = staticmethod(record_of)

    def terminal(self, node: TrajectoryNode) -> bool:
        """Evaluated, and never to be expanded: it ends the answer or is at the depth limit."""
        record = self.record(node)
        return bool(record.get("final") or record.get("leaf"))

    # -- evaluation ---------------------------------------------------------------------------
    async def evaluate(self, node: TrajectoryNode, path: Sequence[TrajectoryNode]) -> TrajectoryNode:
        """Evaluate ``node`` (the caller holds its claim) and keep the record on it."""
        partial = self.partial(path)
        counters = self.tree.counters
        if node.meta.get("final") or answer_complete(self.task, partial):
            evaluation, extra = await self.value.complete(partial), {"final": True, "kind": "terminal"}
        else:
            source = await self._source(node)
            if source is not None:
                evaluation, extra = source, {"kind": "reused"}
                counters.reused += 1
            else:
                evaluation, extra = await self.value.partial(partial), {"kind": "rollout"}
            extra["leaf"] = node.depth >= self.config.max_depth
        counters.evaluations += 1
        return await self.tree.set_rollout(node, evaluation.value, evaluation.record(**extra))

    async def _source(self, node: TrajectoryNode) -> Evaluation | None:
        """The evaluation of a greedy-step child, from its parent's rollout."""
        if not self.config.reuse or "src" not in node.meta or node.parent is None:
            return None
        parent = await self.tree.get(node.parent)
        record = self.record(parent)
        completion = record.get("completion") or ""
        if record.get("answer") is None or not completion.startswith(node.text) or parent.rollout is None:
            return None
        return Evaluation(
            value=parent.rollout.value,
            answer=record["answer"],
            passed=record.get("passed"),
            verdict=record.get("verdict"),
            completion=completion[len(node.text) :],
            token_logprobs=drop_chars(record.get("token_logprobs"), len(node.text)),
        )

    async def evaluate_once(self, node: TrajectoryNode, path: list[TrajectoryNode]) -> TrajectoryNode:
        """``node`` evaluated: by this worker, or by the one holding its claim (waited for)."""
        while node.rollout is None:
            if await self.tree.claim(node):
                async with self.tree.holding(node):
                    node = await self.tree.get(node.key)
                    if node.rollout is None:
                        node = await self.evaluate(node, path)
            else:
                await self.tree.wait()
                node = await self.tree.get(node.key)
        return node

    # -- expansion ----------------------------------------------------------------------------
    async def expand(self, node: TrajectoryNode, path: Sequence[TrajectoryNode]) -> list[TrajectoryNode]:
        """Draft the next steps of an evaluated node and add them (the caller holds its claim).

        The greedy next step is always a child (read from the node's rollout when it has one,
        so it costs nothing); ``sample`` adds ``expansion_width - 1`` sampled steps, ``top_k``
        the steps that start with the other top-k first tokens. Returns the children; none
        when the model ends the answer at ``node`` (it is then marked final).
        """
        partial = self.partial(path)
        record = self.record(node)
        greedy = self._greedy_draft(record, partial)
        width = self.config.expansion_width
        if self.config.expand == "top_k":
            drafts, priors = await self._top_k(partial, record, greedy, width)
        else:
            if greedy is None:
                greedy = await self.writer.draft(partial)
            drafts = [greedy]
            for i in range(1, width):
                drafts.append(
                    await self.writer.draft(partial, temperature=self.config.temperature, sample_index=i)
                )
            drafts = _distinct(drafts)
            priors = step_priors(drafts)
        reusable = self.config.reuse and record.get("answer") is not None and greedy is not None
        children = [
            NewChild(
                text=draft.text,
                logprobs=() if draft.logprob is None else (draft.logprob,),
                prior=prior,
                meta={
                    "final": draft.final,
                    **({"src": True} if reusable and greedy and draft.text == greedy.text else {}),
                },
            )
            for draft, prior in zip(drafts, priors, strict=True)
        ]
        if not children:
            value = node.rollout.value if node.rollout is not None else 0.0
            await self.tree.set_rollout(node, value, {**record, "final": True})
            return []
        return await self.tree.add_children(node, children)

    def _greedy_draft(self, record: dict[str, Any], partial: str) -> StepDraft | None:
        """The greedy next step, read from the node's rollout; None when it has none.

        An empty step means the greedy answer ends at this node.
        """
        if record.get("answer") is None or "completion" not in record:
            return None
        completion = record["completion"] or ""
        step, last = self.writer.splitter.cut(completion, True, partial)
        if not step.strip():
            return StepDraft(text="", final=True)
        return StepDraft(
            text=step,
            final=last or answer_complete(self.task, partial + step),
            logprob=step_logprob(record.get("token_logprobs"), len(step)),
        )

    async def _top_k(
        self, partial: str, record: dict[str, Any], greedy: StepDraft | None, k: int
    ) -> tuple[list[StepDraft], list[float]]:
        first_top = record.get("first_top") or []
        if greedy is None or not greedy.text or not first_top:
            greedy = await self.writer.draft(partial, top_logprobs=k)
            first_top = [[t.token, t.logprob] for t in greedy.first_top]
        drafts, logprobs = [greedy], [first_top[0][1] if first_top else 0.0]
        for token, logprob in first_top:
            if len(drafts) >= k:
                break
            if not token or greedy.text.startswith(token) or token.isspace():
                continue  # the greedy step, the end of the answer, or a whitespace variant
            end = self.writer.splitter.first_end(token, partial)
            if end is not None:
                draft = StepDraft(text=token[:end], final=False)
            else:
                draft = await self.writer.draft(partial, lead=token)
            drafts.append(draft)
            logprobs.append(logprob)
        kept: dict[str, tuple[StepDraft, float]] = {}
        for draft, logprob in zip(drafts, logprobs, strict=True):
            if draft.text and draft.text not in kept:
                kept[draft.text] = (draft, logprob)
        return [d for d, _ in kept.values()], normalise([math.exp(lp) for _, lp in kept.values()])

    async def expand_once(self, node: TrajectoryNode, path: list[TrajectoryNode]) -> list[TrajectoryNode]:
        """The children of an evaluated node, drafted by this worker or waited for."""
        while not node.children and not self.terminal(node):
            if await self.tree.claim(node):
                async with self.tree.holding(node):
                    node = await self.tree.get(node.key)
                    if not node.children and not self.terminal(node):
                        return await self.expand(node, path)
            else:
                await self.tree.wait()
                node = await self.tree.get(node.key)
        return await self.tree.children(node)

    # -- the answer ---------------------------------------------------------------------------
    async def complete_best(self, root: TrajectoryNode) -> bool:
        """Complete greedily the open node reached by following the best mean values from the
        root, and keep the complete answer on it; False when the tree has nothing to complete."""
        node = await self.tree.get(root.key)
        path = [node]
        while node.children:
            children = [c for c in await self.tree.children(node) if c.rollout is not None]
            if not children:
                break
            node = max(children, key=lambda c: (c.rollout.value if c.rollout else 0.0, -c.depth))
            path.append(node)
        partial = self.partial(path)
        result = await self.writer.complete(partial, max_tokens=self.max_tokens)
        evaluation = await self.value.complete(partial + result.text)
        if evaluation.answer is None:
            evaluation.answer = partial + result.text
        record = {**self.record(node), **evaluation.record(kind="completed"), "completion": result.text}
        await self.tree.set_rollout(node, evaluation.value, record)
        return True

    async def candidates(self, root: TrajectoryNode) -> Found:
        """Every complete answer in the tree, the chosen one, its path, and all nodes
        (:meth:`SearchTree.collect`)."""
        return await self.tree.collect(
            root, self.writer.model.id, lambda node: self.record(node).get("answer")
        )


def step_logprob(token_logprobs: list[list[Any]] | None, length: int) -> float | None:
    """Sum of the logprobs of the tokens that start within the first ``length`` characters."""
    if not token_logprobs:
        return None
    total, seen = 0.0, 0
    for piece, logprob in token_logprobs:
        if seen >= length:
            break
        if logprob is None:
            return None
        total += logprob
        seen += len(piece)
    return total


def drop_chars(token_logprobs: list[list[Any]] | None, length: int) -> list[list[Any]] | None:
    """The ``[piece, logprob]`` list without the tokens that end within the first ``length`` characters."""
    if token_logprobs is None:
        return None
    seen = 0
    for i, (piece, _) in enumerate(token_logprobs):
        if seen + len(piece) > length:
            return token_logprobs[i:]
        seen += len(piece)
    return []


def _distinct(drafts: list[StepDraft]) -> list[StepDraft]:
    seen: set[str] = set()
    out = []
    for draft in drafts:
        if draft.text and draft.text not in seen:
            seen.add(draft.text)
            out.append(draft)
    return out
