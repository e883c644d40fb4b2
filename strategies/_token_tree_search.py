"""token_tree_search: token-level tree search for code with test feedback (PG-TD, Seed-CTS).

The tree's nodes are prefixes of the answer. Evaluating a node completes it greedily (one model
call, a *rollout*) and scores the program by the fraction of tests passed; expanding it adds a
child per top-k token at its branch point, with the token's probability as its prior. Selection
is P-UCB (``var_p_uct``, PG-TD's rule) by default; the search stops at the first program that
passes all tests, or at the budget, and returns the best program found.

Branch points (``step.branch_at``): at every token (``token``, PG-TD), at the first token of each
line (``line``), or where the model is unsure, its top-1 probability below ``step.uncertainty``
(``uncertain``). A child adds the greedy tokens up to its branch point plus its own token, so
coarser branching gives shallower trees and fewer calls. ``auto`` is ``token`` on a local model
and ``line`` over an API (the algorithms note's line-level actions).

The trajectory cache (``sharing.reuse``, on by default): a rollout gives the greedy tokens *and* the top-k
alternatives at every position of its completion. The child that takes the greedy token lies on
that rollout, so it is evaluated and expanded from it with no model call (PG-TD's sequence and
top-k caches). Rollouts live on the nodes in the store, so a rerun or another worker reuses
them too. Every rollout is a "generation" in Seed-CTS's count, reported as ``info.generations``.

Over a local model (:class:`TokenModel`) the tree is over token ids and rollouts continue token
prefixes; over an API with top logprobs and prefix continuation it is over text.

Example:
    >>> search = strategies.create("token_tree_search", step={"top_k": 3}, max_generations=16)
    >>> result = await search(humaneval_task(0), Context({"default": model}, verifier=python_tests()))
    >>> result.info["generations"], result.passed
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from forkpath._errors import CapabilityError
from forkpath._params import Count, NonNegative
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, Message, Model, ModelCapabilities, TokenModel
from forkpath.store import NewChild, TrajectoryNode
from forkpath.strategies._base import Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._search import (
    Found,
    OutOfBudget,
    SearchCounters,
    SearchTree,
    SelectionRule,
    record_of,
    search_namespace,
    search_store,
    solved_status,
)
from forkpath.strategies._search_params import (
    TOKEN_SEARCH_MOVED,
    Positive,
    SharingParams,
    TokenStep,
    TokenStepParams,
    TokenValue,
    TokenValueParams,
    group,
)
from forkpath.strategies._search_setup import answer_prefix as answer_prefix_of
from forkpath.strategies._search_values import Verification

PrefixMode = Literal["auto", "tokens", "text"]


@strategies.register("token_tree_search", moved=TOKEN_SEARCH_MOVED)
def token_tree_search(
    model: str = "default",
    selection: SelectionRule = "var_p_uct",
    c: NonNegative = 4.0,
    c_base: Positive = 10.0,
    max_generations: Count = 16,
    max_rollouts: Count = 128,
    stop: tuple[str, ...] = (),
    early_stop: bool = True,
    prefix: PrefixMode = "auto",
    prompt: PromptTemplate | None = None,
    answer_prefix: PromptTemplate | None = None,
    step: TokenStep = TokenStepParams(),
    value: TokenValue = TokenValueParams(),
    sharing: SharingParams = SharingParams(),
) -> Strategy:
    """Token-level MCTS over a code answer, rewarded by the fraction of tests passed.

    Args:
        model: the context's model role.
        selection: ``var_p_uct`` (PG-TD), ``puct`` or ``uct``.
        c: exploration constant (PG-TD: 4).
        c_base: ``var_p_uct``'s base (PG-TD: 10).
        max_generations: rollouts that reach the model, by this worker (the budget PG-TD and
            Seed-CTS count).
        max_rollouts: simulations by this worker, reused rollouts included.
        stop: stop strings of rollouts.
        early_stop: stop at the first program that passes all tests.
        prefix: ``tokens`` (token-id prefixes, a local model), ``text`` (prefix continuation of
            text) or ``auto``.
        prompt: a template for the user message.
        answer_prefix: the start of the answer, continued by the search (a template with the
            task's fields, e.g. ``"```python\\n{prompt}"`` to search only a function's body).
        step: where the tree branches and how widely (:class:`TokenStepParams`: ``top_k``,
            ``branch_at``, ``uncertainty``; see the module doc).
        value: the rollout (:class:`TokenValueParams`: ``max_tokens``, the most tokens of an answer).
        sharing: the tree's namespace, claims, and the trajectory cache (:class:`SharingParams`;
            ``reuse``: evaluate and expand greedy children from known rollouts).
    """
    steps = group(TokenStepParams, step, "step")
    values = group(TokenValueParams, value, "value")
    shared = group(SharingParams, sharing, "sharing")
    shaping = {
        "model": model,
        "step": steps.model_dump(mode="json"),
        "value": values.model_dump(mode="json"),
        "stop": list(stop),
        "reuse": shared.reuse,
        "prefix": prefix,
        "prompt": prompt,
        "answer_prefix": answer_prefix,
    }

    async def run(task: Task, context: Context) -> StrategyResult:
        writer = context.model(model)
        mode = _prefix_mode(writer, prefix, made.name)
        counters = SearchCounters()
        ns = shared.namespace or search_namespace(made.name, task, writer.id, shaping)
        async with search_store(context.store) as store:
            tree = SearchTree(
                store, ns, worker=shared.worker, counters=counters, claim_ttl_s=shared.claim_ttl_s
            )
            branch_at = steps.branch_at
            search = _TokenSearch(
                tree,
                writer,
                task,
                context,
                mode=mode,
                branch_at=("token" if mode == "tokens" else "line") if branch_at == "auto" else branch_at,
                uncertainty=steps.uncertainty,
                top_k=steps.top_k,
                max_tokens=values.max_tokens,
                stop=tuple(stop),
                reuse=shared.reuse,
                max_generations=max_generations,
                prompt=prompt,
                prefix=answer_prefix_of(answer_prefix, task),
            )
            root = await search.start()
            stopped: Stopped = "done"
            if early_stop and root.rollout is not None and await search.found(root):
                stopped = "early_stop"  # an earlier run or another worker found it
            try:
                while stopped == "done" and counters.iterations < max_rollouts:
                    if await search.solved(root):
                        break  # every way on is known (MCTS-Solver): nothing left to learn
                    leaf = await search.simulate(root, selection, c, c_base)
                    if leaf is None:
                        continue
                    counters.iterations += 1
                    if early_stop and search.record(leaf).get("passed"):
                        stopped = "early_stop"
            except OutOfBudget:
                stopped = "budget"
            return await search.result(root, stopped, made.name)

    needs = ModelCapabilities(top_logprobs=steps.top_k, prefix_continuation=True)
    made = Strategy(run, needs={model: needs}, needs_verifier=True)
    return made


def _prefix_mode(model: Model, prefix: PrefixMode, strategy: str) -> Literal["tokens", "text"]:
    if prefix == "tokens" and not isinstance(model, TokenModel):
        raise CapabilityError(f"{strategy} with prefix='tokens' needs token access; {model.id} has none")
    if prefix == "auto":
        return "tokens" if isinstance(model, TokenModel) else "text"
    return prefix


class _TokenSearch:
    """One worker's view of a token tree: rollouts, branch points, selection."""

    def __init__(
        self,
        tree: SearchTree,
        model: Model,
        task: Task,
        context: Context,
        *,
        mode: Literal["tokens", "text"],
        branch_at: str,
        uncertainty: float,
        top_k: int,
        max_tokens: int,
        stop: tuple[str, ...],
        reuse: bool,
        max_generations: int,
        prompt: str | None,
        prefix: str = "",
    ) -> None:
        self.tree = tree
        self.model = model
        self.task = task
        self.context = context
        self.mode = mode
        self.branch_at = branch_at
        self.uncertainty = uncertainty
        self.top_k = top_k
        self.max_tokens = max_tokens
        self.stop = stop
        self.reuse = reuse
        self.max_generations = max_generations
        self.messages = task_messages(task, prompt)
        self.prefix = prefix
        self.verify = Verification(context.verifier, task, tree.counters)
        self._records: dict[str, dict[str, Any]] = {}
        self._prompt_ids: tuple[int, ...] = ()

    async def start(self) -> TrajectoryNode:
        if self.mode == "tokens":
            assert isinstance(self.model, TokenModel)
            prefill = (Message(role="assistant", content=self.prefix),) if self.prefix else ()
            self._prompt_ids = tuple(self.model.chat_prefix(self.messages + prefill))
            return await self.tree.root(tokens=self._prompt_ids)
        return await self.tree.root(text="")

    record = staticmethod(record_of)

    def finished(self, node: TrajectoryNode) -> bool:
        """Evaluated, with no branch point left: its rollout is the only way on."""
        return node.rollout is not None and not self.record(node).get("branches")

    # -- one simulation ---------------------------------------------------------------------------
    async def simulate(
        self, root: TrajectoryNode, selection: SelectionRule, c: float, c_base: float
    ) -> TrajectoryNode | None:
        """Select, evaluate and expand a leaf, backpropagate; None when another worker held it."""
        tree = self.tree
        node = await tree.get(root.key)
        path = [node]
        while node.rollout is not None:
            record = self.record(node)
            if not record.get("branches"):
                break  # finished: its rollout is the only way on (only the root gets here)
            if len(node.children) < record["branches"]:
                # A worker stopped between recording the rollout and adding the children.
                await tree.add_children(node, await self._children(node, record))
                node = await tree.get(node.key)
            chosen = await tree.select(selection, node, finished=self.finished, c=c, c_base=c_base)
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
                    return await tree.evaluate_visited(path, lambda: self.evaluate(node, path))
        assert node.rollout is not None
        await tree.backpropagate(path, node.rollout.value)
        return node

    # -- evaluation and expansion ---------------------------------------------------------------
    async def evaluate(self, node: TrajectoryNode, path: Sequence[TrajectoryNode]) -> TrajectoryNode:
        """Roll ``node`` out (or reuse a rollout through it), score it, add its children."""
        counters = self.tree.counters
        source = node.meta.get("src") if self.reuse else None
        if source is not None:
            own = await self._own_record(source)
            record = {
                "own": False,
                "src": source,
                "off": node.meta["off"],
                **{k: own.get(k) for k in ("answer", "passed", "verdict")},
            }
            value = float(own["value"])
            counters.reused += 1
        else:
            record, value = await self._rollout(node, path)
        children = await self._children(node, record)
        record["branches"] = len(children)
        counters.evaluations += 1
        node = await self.tree.set_rollout(node, value, record)
        if children:
            await self.tree.add_children(node, children)
            node = await self.tree.get(node.key)
        return node

    async def _rollout(
        self, node: TrajectoryNode, path: Sequence[TrajectoryNode]
    ) -> tuple[dict[str, Any], float]:
        used = sum(int(n.meta.get("n", 0)) for n in path[1:])
        remaining = self.max_tokens - used
        ids: list[int] = []
        pieces: list[str] = []
        top: list[list[list[Any]]] = []
        if remaining > 0:
            result = await self._call(self._request(path, remaining))
            for info in result.tokens:
                ids.append(info.token_id if info.token_id is not None else -1)
                pieces.append(info.token)
                alternatives = [[t.token_id, t.token, t.logprob] for t in info.top]
                if not any(self._same(a, info.token_id, info.token) for a in alternatives):
                    alternatives.insert(0, [info.token_id, info.token, info.logprob or 0.0])
                top.append(alternatives)
        answer = self._answer(path, ids, pieces)
        evaluation = await self.verify(answer)
        record = {
            "own": True,
            "ids": ids if self.mode == "tokens" else [],
            "pieces": pieces,
            "top": top,
            "line0": node.parent is None or bool(node.meta.get("line_end")),
            "value": evaluation.value,
            "answer": answer,
            "passed": evaluation.passed,
            "verdict": evaluation.verdict,
        }
        self._records[node.key] = record
        return record, evaluation.value

    def _request(self, path: Sequence[TrajectoryNode], max_tokens: int) -> GenerateRequest:
        options: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "top_logprobs": self.top_k,
            "stop": self.stop,
        }
        if self.mode == "tokens":
            ids = self._prompt_ids + tuple(t for n in path[1:] for t in n.tokens)
            return GenerateRequest(prompt_tokens=ids, **options)
        partial = self.prefix + "".join(n.text for n in path[1:])
        messages = self.messages + ((Message(role="assistant", content=partial),) if partial else ())
        return GenerateRequest(messages=messages, **options)

    async def _call(self, request: GenerateRequest) -> Any:
        counters = self.tree.counters
        if counters.generations >= self.max_generations or self.context.budget.exhausted():
            raise OutOfBudget
        result = await self.model.generate(request)
        counters.count_call(result.cached)
        return result

    def _answer(self, path: Sequence[TrajectoryNode], ids: list[int], pieces: list[str]) -> str:
        if self.mode == "tokens":
            assert isinstance(self.model, TokenModel)
            return self.prefix + self.model.detokenize([t for n in path[1:] for t in n.tokens] + ids)
        return self.prefix + "".join(n.text for n in path[1:]) + "".join(pieces)

    async def _own_record(self, key: str) -> dict[str, Any]:
        if key not in self._records:
            owner = await self.tree.get(key)
            self._records[key] = self.record(owner)
        return self._records[key]

    def _same(self, alternative: list[Any], token_id: int | None, piece: str) -> bool:
        if self.mode == "tokens" and token_id is not None and alternative[0] is not None:
            return bool(alternative[0] == token_id)
        return bool(alternative[1] == piece)

    async def _children(self, node: TrajectoryNode, record: dict[str, Any]) -> list[NewChild]:
        """The children at the node's branch point (none: the rollout is the only way on)."""
        if record.get("own", False):
            own, owner, offset = record, node.key, 0
        else:
            owner, offset = record["src"], int(record["off"])
            own = await self._own_record(owner)
        ids, pieces, top = own["ids"], own["pieces"], own["top"]
        branch = self._branch_point(own, offset)
        if branch is None:
            return []
        children: dict[tuple[Any, ...], NewChild] = {}
        for token_id, piece, logprob in top[branch][: self.top_k]:
            if not piece:
                continue  # the end of the answer: the rollout already covers it
            greedy = self._same([token_id, piece, logprob], ids[branch] if ids else None, pieces[branch])
            added = [*pieces[offset:branch], piece]
            meta: dict[str, Any] = {"n": len(added), "line_end": "\n" in piece}
            if greedy and self.reuse:
                meta.update(src=owner, off=branch + 1)
            if self.mode == "tokens":
                tokens = (*ids[offset:branch], token_id)
                child = NewChild(
                    tokens=tokens,
                    text="".join(added),
                    logprobs=(logprob,),
                    prior=math.exp(logprob),
                    meta=meta,
                )
                children.setdefault(tokens, child)
            else:
                text = "".join(added)
                child = NewChild(text=text, logprobs=(logprob,), prior=math.exp(logprob), meta=meta)
                children.setdefault((text,), child)
        return list(children.values())

    def _branch_point(self, own: dict[str, Any], offset: int) -> int | None:
        pieces, top = own["pieces"], own["top"]
        for i in range(offset, len(pieces)):
            if self.branch_at == "token":
                return i
            if self.branch_at == "line":
                if (i == 0 and own.get("line0")) or (i > 0 and "\n" in pieces[i - 1]):
                    return i
            elif top[i] and math.exp(max(a[2] for a in top[i])) < self.uncertainty:
                return i
        return None

    # -- the answer -------------------------------------------------------------------------------
    async def solved(self, root: TrajectoryNode) -> bool:
        """The whole tree is solved (see :mod:`forkpath.strategies._search`)."""
        node = await self.tree.get(root.key)
        return solved_status(node, finished=self.finished(node)) is not None

    async def found(self, root: TrajectoryNode) -> bool:
        """The tree holds a program that passed."""
        candidates, chosen, _, _ = await self._candidates(root)
        return chosen is not None and bool(candidates[chosen].passed)

    async def _candidates(self, root: TrajectoryNode) -> Found:
        # Reused rollouts add no answer of their own: the node that rolled out has it.
        return await self.tree.collect(
            root,
            self.model.id,
            lambda node: self.record(node)["answer"] if self.record(node).get("own") else None,
        )

    async def result(self, root: TrajectoryNode, stopped: Stopped, strategy: str) -> StrategyResult:
        candidates, chosen, path, nodes = await self._candidates(root)
        await self.tree.snapshot(root, path, strategy=strategy, nodes=nodes)
        counters = self.tree.counters
        return StrategyResult(
            answer=candidates[chosen].text if chosen is not None else None,
            chosen=chosen,
            candidates=candidates,
            stopped=stopped,
            info={
                **counters.model_dump(),
                "rollouts": counters.iterations,
                "namespace": self.tree.ns,
                "root": root.key,
                "nodes": len(nodes),
                "root_visits": nodes[0].visits if nodes else 0,
                "depth": max((n.depth for n in nodes), default=0),
                "branch_at": self.branch_at,
                "prefix": self.mode,
                "path": path,
            },
        )
