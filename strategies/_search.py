"""The search core shared by ``beam_search``, ``mcts`` and ``token_tree_search``.

A search is a tree of prefixes kept in the store's trajectory cache (:attr:`Store.trajectories`):
the root is the prompt (token ids) or the empty answer (text), and a child adds tokens or a
text step to its parent. Because a node's key is a hash of its whole prefix, and every write
is atomic in the store, a search that is interrupted resumes where it stopped, and several
workers can grow one tree together:

- **claims**: a node is evaluated or expanded by one worker at a time (:meth:`SearchTree.claim`,
  renewed while the work runs, so a crashed worker's claim lapses after ``claim_ttl_s``);
- **virtual loss**: a worker adds the visit of its path *before* it evaluates the leaf
  (:meth:`SearchTree.visit`) and the value after (:meth:`SearchTree.credit`), so a second
  worker's selection sees the first one's path as visited and tends elsewhere, and the visit
  counts equal the number of simulations however the workers interleave.

Selection rules (``Q`` is the mean value of a child, ``P`` its prior, ``n`` its visits, ``N``
its parent's visits):

- ``uct``: ``Q + c * sqrt(ln N / n)``; unvisited children first;
- ``puct``: ``Q + c * P * sqrt(N) / (1 + n)`` (AlphaZero);
- ``var_p_uct``: ``Q + (ln((N + c_base + 1) / c_base) + c) * P * sqrt(ln N) / (1 + n)`` (PG-TD).

Solved nodes (MCTS-Solver): a *finished* node (its answer is complete, or it cannot be expanded)
has an exact value, so a second visit learns nothing. It is solved: ``passed`` or ``failed``
by its verdict. Selection (:meth:`SearchTree.select`) only chooses among unsolved children;
when every child of a node is solved, the node is solved too (``passed`` if one of them
passed, else ``failed``), recorded on it in the store so other workers and reruns skip it; a
search whose root is solved is over.

Trace: every node created or evaluated is an :class:`ExpansionEvent` whose ``node`` is
``<search id>:<key>``; when a search ends, :meth:`SearchTree.snapshot` emits each node once
more with its final visits and value, then a :class:`SearchPathEvent` with the chosen
path. :func:`forkpath.strategies._tree_view.render_tree` draws a picture from these events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from forkpath._errors import ConfigError
from forkpath._trace import ExpansionEvent, SearchPathEvent, emit
from forkpath._types import Task
from forkpath.store import NewChild, Store, TrajectoryNode, open_store
from forkpath.strategies._base import Candidate

logger = logging.getLogger("forkpath.strategies.search")

SelectionRule = Literal["uct", "puct", "var_p_uct"]
Solved = Literal["passed", "failed"]

_NS_SAFE = re.compile(r"[^A-Za-z0-9_.\-/:@=+]")


class SearchCounters(BaseModel):
    """What one worker did in one search run (reported in ``StrategyResult.info``)."""

    model_config = ConfigDict(extra="forbid")

    iterations: int = 0
    """Simulations (MCTS), depths (beam search) or rollouts (token tree search) completed."""
    generations: int = 0
    """Model calls that reached a model (cache hits not counted): Seed-CTS's "generations"."""
    cached_generations: int = 0
    """Model calls answered from the generation cache."""
    expansions: int = 0
    """Nodes this worker expanded (added children to)."""
    evaluations: int = 0
    """Nodes this worker evaluated (a rollout, a judge call or a terminal check)."""
    reused: int = 0
    """Evaluations answered from the trajectory cache (a rollout through the node was known)."""
    verifications: int = 0
    """Verifier runs (reward-cache hits not counted)."""
    waits: int = 0
    """Times this worker found a node claimed by another and waited or chose again."""

    def count_call(self, cached: bool) -> None:
        if cached:
            self.cached_generations += 1
        else:
            self.generations += 1


class OutOfBudget(Exception):
    """Raised inside a search when a limit is reached before a model call; caught by the search."""


def search_namespace(strategy: str, task: Task, model_id: str, params: dict[str, Any]) -> str:
    """The store namespace of one search: strategy, model and task, plus a hash of everything
    that shapes the tree (prompt, tests, parameters), so a rerun with the same settings finds
    its tree again and a run with other settings starts a new one.

    Budget parameters must not be in ``params``: a resumed run may be given more budget.
    """
    digest = hashlib.blake2b(
        json.dumps(
            {"task": task.model_dump(mode="json"), "model": model_id, "params": params},
            sort_keys=True,
            default=str,
        ).encode(),
        digest_size=6,
    ).hexdigest()
    name = _NS_SAFE.sub("_", f"search/{strategy}/{model_id}/{task.id}")
    return f"{name[:180]}/{digest}"


def default_worker() -> str:
    """A worker id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def child_score(
    rule: SelectionRule,
    *,
    q: float,
    prior: float,
    visits: int,
    parent_visits: int,
    c: float,
    c_base: float = 10.0,
) -> float:
    """The selection score of one child under ``rule`` (see the module doc for the formulas)."""
    if rule == "uct":
        if visits == 0:
            return math.inf
        return q + c * math.sqrt(math.log(max(parent_visits, 1)) / visits)
    if rule == "puct":
        return q + c * prior * math.sqrt(parent_visits) / (1 + visits)
    beta = math.log((parent_visits + c_base + 1) / c_base) + c
    return q + beta * prior * math.sqrt(math.log(max(parent_visits, 1))) / (1 + visits)


def select_child(
    rule: SelectionRule,
    parent: TrajectoryNode,
    children: Sequence[TrajectoryNode],
    *,
    c: float,
    c_base: float = 10.0,
) -> TrajectoryNode:
    """The child with the highest score; ties go to the earliest child (the most likely one,
    since children are stored in prior order). An unvisited child's ``Q`` is 0."""
    if not children:
        raise ValueError("select_child needs at least one child")
    priors = [ch.prior if ch.prior is not None else 1.0 / len(children) for ch in children]
    best, best_score = children[0], -math.inf
    for child, prior in zip(children, priors, strict=True):
        score = child_score(
            rule,
            q=child.mean_value or 0.0,
            prior=prior,
            visits=child.visits,
            parent_visits=parent.visits,
            c=c,
            c_base=c_base,
        )
        if score > best_score:
            best, best_score = child, score
    return best


def record_of(node: TrajectoryNode) -> dict[str, Any]:
    """What a search kept on a node when it evaluated it (empty before)."""
    return (node.rollout.verdict or {}) if node.rollout is not None else {}


def solved_status(node: TrajectoryNode, *, finished: bool) -> Solved | None:
    """``passed``/``failed`` when ``node`` is solved (see the module doc), else None.

    ``finished``: the search's own test that the node is evaluated and ends there.
    """
    record = record_of(node)
    marked = record.get("solved")
    if marked in ("passed", "failed"):
        return "passed" if marked == "passed" else "failed"
    if not finished:
        return None
    return "passed" if record.get("passed") else "failed"


def best_index(candidates: Sequence[Candidate]) -> int | None:
    """Passed first, then the highest score, then the earliest."""
    if not candidates:
        return None

    def key(i: int) -> tuple[bool, float, int]:
        c = candidates[i]
        return (bool(c.passed), c.score if c.score is not None else -math.inf, -i)

    return max(range(len(candidates)), key=key)


Found = tuple[list[Candidate], int | None, list[str], list[TrajectoryNode]]
"""Every complete answer of a tree, the chosen one's index, the keys of its path, all nodes."""


def normalise(weights: Sequence[float]) -> list[float]:
    """Weights scaled to sum to one (uniform when they sum to zero)."""
    total = sum(weights)
    if total <= 0:
        return [1.0 / len(weights)] * len(weights) if weights else []
    return [w / total for w in weights]


class SearchTree:
    """One search's tree in a store namespace, as seen by one worker.

    Args:
        store: where the nodes live.
        namespace: the search's namespace (:func:`search_namespace`).
        worker: this worker's id, the owner of its claims.
        counters: where this worker's numbers are kept.
        claim_ttl_s: a claim lapses this long after its last renewal (a crashed worker's work
            is taken over after this).
        poll_s: how long to wait before looking again at a node another worker holds.
    """

    def __init__(
        self,
        store: Store,
        namespace: str,
        *,
        worker: str | None = None,
        counters: SearchCounters | None = None,
        claim_ttl_s: float = 30.0,
        poll_s: float = 0.05,
    ) -> None:
        self.store = store
        self.trajectories = store.trajectories
        self.ns = namespace
        self.worker = worker or default_worker()
        self.counters = counters or SearchCounters()
        self.claim_ttl_s = claim_ttl_s
        self.poll_s = poll_s
        self.tag = hashlib.blake2b(namespace.encode(), digest_size=4).hexdigest()
        """Short id of this search in trace events (``<tag>:<key>``)."""

    # -- reading ----------------------------------------------------------------------------------
    async def root(self, *, tokens: Sequence[int] | None = None, text: str | None = None) -> TrajectoryNode:
        """The root (created if this is the first worker of a new search)."""
        root = await self.trajectories.add_root(self.ns, tokens=tokens, text=text)
        if root.visits == 0 and root.rollout is None:
            self.event(root)
        return root

    async def get(self, key: str) -> TrajectoryNode:
        node = await self.trajectories.get_node(self.ns, key)
        if node is None:
            raise ConfigError(f"search node {key} is missing from namespace {self.ns!r}")
        return node

    async def children(self, node: TrajectoryNode) -> list[TrajectoryNode]:
        """A node's children in the order they were added (one round trip)."""
        if not node.children:
            return []
        found = await self.trajectories.get_nodes(self.ns, node.children)
        return [found[k] for k in node.children if k in found]

    async def walk(self, root: TrajectoryNode) -> list[TrajectoryNode]:
        """Every node under ``root`` (root included), breadth first, one round trip per level."""
        out, level = [root], [root]
        while level:
            keys = [k for node in level for k in node.children]
            found = await self.trajectories.get_nodes(self.ns, keys) if keys else {}
            level = [found[k] for k in keys if k in found]
            out.extend(level)
        return out

    # -- writing ----------------------------------------------------------------------------------
    async def add_children(self, node: TrajectoryNode, children: Sequence[NewChild]) -> list[TrajectoryNode]:
        """Add children (idempotent); return all of the node's children, in order."""
        added = await self.trajectories.add_children(self.ns, node.key, children)
        if added:
            self.counters.expansions += 1
        for child in added:
            self.event(child)
        return await self.children(await self.get(node.key))

    async def visit(self, path: Sequence[TrajectoryNode]) -> None:
        """Count a visit on every node of ``path`` now, before its value is known (virtual loss)."""
        await self.trajectories.backpropagate(self.ns, [n.key for n in path], 0.0, visits_delta=1)

    async def credit(self, path: Sequence[TrajectoryNode], value: float) -> None:
        """Add ``value`` to every node of a path whose visit :meth:`visit` already counted."""
        await self.trajectories.backpropagate(self.ns, [n.key for n in path], value, visits_delta=0)

    async def backpropagate(self, path: Sequence[TrajectoryNode], value: float) -> None:
        """One visit and ``value`` on every node of ``path``, atomically."""
        await self.trajectories.backpropagate(self.ns, [n.key for n in path], value)

    async def evaluate_visited(
        self, path: Sequence[TrajectoryNode], evaluate: Callable[[], Awaitable[TrajectoryNode]]
    ) -> TrajectoryNode:
        """Run ``evaluate`` (which returns the evaluated last node of ``path``) under a virtual
        loss: the visit is counted before, the value credited after; a failed or cancelled
        evaluation gives the visit back."""
        await self.visit(path)
        try:
            node = await evaluate()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.trajectories.backpropagate(self.ns, [n.key for n in path], 0.0, -1))
            raise
        assert node.rollout is not None
        await self.credit(path, node.rollout.value)
        return node

    async def select(
        self,
        rule: SelectionRule,
        node: TrajectoryNode,
        *,
        finished: Callable[[TrajectoryNode], bool],
        c: float,
        c_base: float = 10.0,
    ) -> TrajectoryNode | None:
        """The unsolved child of ``node`` that ``rule`` prefers; None when every child is solved,
        after recording ``node`` as solved (see the module doc)."""
        children = await self.children(node)
        status = [solved_status(ch, finished=finished(ch)) for ch in children]
        open_children = [ch for ch, s in zip(children, status, strict=True) if s is None]
        if open_children:
            return select_child(rule, node, open_children, c=c, c_base=c_base)
        if children:
            await self.mark_solved(node, "passed" if "passed" in status else "failed")
        return None

    async def mark_solved(self, node: TrajectoryNode, status: Solved) -> None:
        """Record on an evaluated node that it is solved."""
        if node.rollout is None:
            raise ValueError("only an evaluated node can be solved")
        await self.trajectories.set_rollout(
            self.ns, node.key, node.rollout.value, {**record_of(node), "solved": status}
        )

    async def collect(
        self, root: TrajectoryNode, model: str, answer_of: Callable[[TrajectoryNode], str | None]
    ) -> Found:
        """Every distinct complete answer in the tree as a candidate, the chosen one, its path,
        and all nodes. ``answer_of`` reads a node's own answer (None: the node has none to add).

        Chosen: passed first, then the highest value, then the earliest found (breadth first).
        """
        nodes = await self.walk(await self.get(root.key))
        by_key = {n.key: n for n in nodes}
        seen: set[str] = set()
        candidates: list[Candidate] = []
        where: list[str] = []
        for node in nodes:
            answer = answer_of(node)
            if answer is None or answer in seen or node.rollout is None:
                continue
            seen.add(answer)
            record = record_of(node)
            candidates.append(
                Candidate(
                    text=answer,
                    model=model,
                    score=node.rollout.value,
                    passed=record.get("passed"),
                    verdict=record.get("verdict"),
                )
            )
            where.append(node.key)
        chosen = best_index(candidates)
        path: list[str] = []
        key: str | None = where[chosen] if chosen is not None else None
        while key is not None:
            path.append(key)
            key = by_key[key].parent if key in by_key else None
        return candidates, chosen, path[::-1], nodes

    async def set_rollout(self, node: TrajectoryNode, value: float, record: dict[str, Any]) -> TrajectoryNode:
        """Record a node's evaluation (its value and what the search needs to reuse it)."""
        await self.trajectories.set_rollout(self.ns, node.key, value, record)
        self.event(node, value=value)
        return await self.get(node.key)

    # -- claims ------------------------------------------------------------------------------------
    async def claim(self, node: TrajectoryNode) -> bool:
        """Try to claim the work on ``node``; False (and counted) if another worker holds it."""
        if await self.trajectories.claim(self.ns, node.key, self.worker, ttl_s=self.claim_ttl_s):
            return True
        self.counters.waits += 1
        return False

    async def release(self, node: TrajectoryNode) -> None:
        await self.trajectories.release(self.ns, node.key, self.worker)

    @contextlib.asynccontextmanager
    async def holding(self, node: TrajectoryNode) -> AsyncIterator[None]:
        """Keep a claim on ``node`` renewed while the block runs; release it afterwards."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.claim_ttl_s / 3)
                await self.trajectories.claim(self.ns, node.key, self.worker, ttl_s=self.claim_ttl_s)

        renewer = asyncio.ensure_future(renew())
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await asyncio.shield(self.release(node))

    async def wait(self) -> None:
        await asyncio.sleep(self.poll_s)

    # -- trace ---------------------------------------------------------------------------------
    def event_id(self, key: str | None) -> str | None:
        return None if key is None else f"{self.tag}:{key}"

    def event(self, node: TrajectoryNode, *, value: float | None = None) -> None:
        emit(
            ExpansionEvent(
                node=f"{self.tag}:{node.key}",
                parent=self.event_id(node.parent),
                text=node_label(node),
                value=value if value is not None else node.mean_value,
                visits=node.visits,
            )
        )

    async def snapshot(
        self,
        root: TrajectoryNode,
        chosen: Sequence[str],
        *,
        strategy: str,
        nodes: Sequence[TrajectoryNode] | None = None,
    ) -> Sequence[TrajectoryNode]:
        """Emit every node with its final visits and value, then the chosen path; return the nodes."""
        if nodes is None:
            nodes = await self.walk(await self.get(root.key))
        for node in nodes:
            value = node.rollout.value if node.rollout is not None and node.visits == 0 else None
            self.event(node, value=value)
        emit(
            SearchPathEvent(
                search=self.tag,
                strategy=strategy,
                namespace=self.ns,
                path=[f"{self.tag}:{k}" for k in chosen],
                nodes=len(nodes),
            )
        )
        return nodes


def node_label(node: TrajectoryNode) -> str:
    """What a node adds, as text (the root of a token tree: ``<prompt>``)."""
    if node.parent is None:
        return "<prompt>" if node.kind == "tokens" else "<answer>"
    return node.text


@contextlib.asynccontextmanager
async def search_store(store: Store | None) -> AsyncIterator[Store]:
    """The context's store, or a private SQLite store for this run (deleted afterwards)."""
    if store is not None:
        yield store
        return
    folder = tempfile.mkdtemp(prefix="forkpath-search-")
    private = open_store(os.path.join(folder, "tree.db"))
    try:
        yield private
    finally:
        await private.aclose()
        shutil.rmtree(folder, ignore_errors=True)
