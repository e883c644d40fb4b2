"""Partial trajectories: the nodes of a search over token or text prefixes.

A node stands for one prefix (the root: the prompt; a child: its parent's prefix plus the
tokens or text it adds). Its key is a chain hash of the prefix's elements (token ids, or
characters), so the same prefix has the same key however it was reached or chunked, and a
child's key follows from its parent's key and what it adds::

    root = await tree.add_root("run-1", tokens=prompt_ids)
    added = await tree.add_children("run-1", root.key, [NewChild(tokens=(42,), logprobs=(-0.1,))])
    if await tree.claim("run-1", added[0].key, owner="worker-3"):
        ...  # expand it; nobody else will
    await tree.backpropagate("run-1", [n.key for n in path], value=1.0)
    match = await tree.longest_prefix("run-1", tokens=prompt_ids + generated)

Updates are atomic in the backend: two workers adding children to one node both see their
children kept (each child once), and concurrent visit/value increments are never lost.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forkpath._errors import ConfigError, StoreError
from forkpath.store._base import (
    CorruptEntry,
    NodeRecord,
    StoreBackend,
    check_namespace,
    decode,
    encode,
    report_corrupt,
)

PrefixKind = Literal["tokens", "text"]

_KEY = re.compile(r"[0-9a-f]{32}")
_SEEDS = {
    kind: hashlib.blake2b(f"forkpath.prefix.v1/{kind}".encode(), digest_size=16).digest()
    for kind in ("tokens", "text")
}
_LOOKUP_CHUNK = 16  # candidate prefixes fetched per round trip, longest first


def _elements(tokens: Sequence[int] | None, text: str | None) -> tuple[PrefixKind, list[bytes]]:
    if (tokens is None) == (text is None):
        raise ConfigError("give exactly one of tokens and text for a prefix")
    if tokens is not None:
        try:
            return "tokens", [int(t).to_bytes(8, "little", signed=True) for t in tokens]
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"token ids must be 64-bit integers: {e}") from None
    return "text", [c.encode("utf-8", "surrogatepass") for c in text or ""]


def _chain(digest: bytes, elements: Sequence[bytes]) -> bytes:
    for element in elements:
        digest = hashlib.blake2b(digest + element, digest_size=16).digest()
    return digest


def prefix_key(tokens: Sequence[int] | None = None, *, text: str | None = None) -> str:
    """The canonical key of a token-id or text prefix (32 hex characters).

    Example:
        >>> prefix_key([1, 2, 3]) == extend_key(prefix_key([1]), tokens=[2, 3])
        True
    """
    kind, elements = _elements(tokens, text)
    return _chain(_SEEDS[kind], elements).hex()


def extend_key(key: str, *, tokens: Sequence[int] | None = None, text: str | None = None) -> str:
    """The key of the prefix ``key`` stands for, extended by ``tokens`` or ``text``."""
    _, elements = _elements(tokens, text)
    return _chain(bytes.fromhex(_check_key(key)), elements).hex()


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ConfigError(f"not a prefix key: {key!r} (use prefix_key() or a node's key)")
    return key


class NewChild(BaseModel):
    """What a child adds to its parent's prefix, and what the search knows about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: tuple[int, ...] = ()
    """Token ids added (the key of a child in a token tree is computed over these)."""
    text: str = ""
    """Text added (the key of a child in a text tree is computed over this)."""
    logprobs: tuple[float, ...] = ()
    """Logprobs of the added tokens, or of the step."""
    prior: float | None = None
    """Prior probability of this child (e.g. for PUCT)."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Anything else JSON-serialisable the search wants to keep."""


class Rollout(BaseModel):
    """The outcome of a rollout completed from a node."""

    model_config = ConfigDict(extra="forbid")

    value: float
    """Reward or value of the completed rollout."""
    verdict: dict[str, Any] | None = None
    """The verifier's verdict, as JSON."""


class TrajectoryNode(BaseModel):
    """One node of a search tree, as read from the store."""

    model_config = ConfigDict(extra="forbid")

    key: str
    parent: str | None
    kind: PrefixKind
    depth: int
    """0 for the root."""
    length: int
    """Tokens or characters in the whole prefix, root included."""
    tokens: tuple[int, ...] = ()
    """What this node added to its parent (the root: the whole prompt)."""
    text: str = ""
    logprobs: tuple[float, ...] = ()
    prior: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    visits: int = 0
    value_sum: float = 0.0
    rollout: Rollout | None = None
    children: tuple[str, ...] = ()
    """Child keys, in the order they were added."""

    @property
    def mean_value(self) -> float | None:
        """``value_sum / visits``, or None before the first visit."""
        return self.value_sum / self.visits if self.visits else None


class PrefixMatch(BaseModel):
    """The deepest stored node whose prefix starts the query."""

    model_config = ConfigDict(extra="forbid")

    node: TrajectoryNode
    length: int
    """How many tokens or characters of the query the node covers; continue from there."""


class TrajectoryStore:
    """Search-tree nodes in a store, per namespace (one namespace per search or run).

    Get one from :attr:`Store.trajectories`.
    """

    def __init__(self, backend: StoreBackend, clock: Callable[[], float]) -> None:
        self._backend = backend
        self._clock = clock

    async def add_root(
        self,
        ns: str,
        *,
        tokens: Sequence[int] | None = None,
        text: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> TrajectoryNode:
        """Create the root for a prompt if it is not there; return the stored root either way."""
        kind, elements = _elements(tokens, text)
        key = _chain(_SEEDS[kind], elements).hex()
        payload = {
            "tokens": list(tokens or ()),
            "text": text or "",
            "logprobs": [],
            "prior": None,
            "meta": meta or {},
        }
        record = NodeRecord(
            key=key, parent=None, kind=kind, length=len(elements), depth=0, body=encode("node", payload)
        )
        await self._backend.node_add(check_namespace(ns), None, [record])
        root = await self.get_node(ns, key)
        if root is None:
            raise StoreError(f"{self._backend.url}: root {key} in namespace {ns!r} is unreadable")
        return root

    async def get_node(self, ns: str, key: str) -> TrajectoryNode | None:
        """The node under ``key``, or None if it is not there (or unreadable: logged and counted)."""
        return (await self.get_nodes(ns, [key])).get(key)

    async def get_nodes(self, ns: str, keys: Sequence[str]) -> dict[str, TrajectoryNode]:
        """The readable nodes among ``keys``, in one round trip."""
        records = await self._backend.node_get_many(check_namespace(ns), [_check_key(k) for k in keys])
        out = {}
        for key, record in records.items():
            node = await self._node(ns, record)
            if node is not None:
                out[key] = node
        return out

    async def children(self, ns: str, key: str) -> list[TrajectoryNode]:
        """The readable children of a node, in the order they were added."""
        parent = await self.get_node(ns, key)
        if parent is None:
            return []
        found = await self.get_nodes(ns, parent.children)
        return [found[k] for k in parent.children if k in found]

    async def add_children(
        self, ns: str, parent_key: str, children: Sequence[NewChild]
    ) -> list[TrajectoryNode]:
        """Add children under a node; return those actually added (a child key already there is skipped).

        Raises:
            StoreError: the parent is not in the store.
            ConfigError: a child adds nothing to the prefix the tree is keyed on.
        """
        check_namespace(ns)
        parent = (await self._backend.node_get_many(ns, [_check_key(parent_key)])).get(parent_key)
        if parent is None:
            raise StoreError(
                f"{self._backend.url}: no node {parent_key} in namespace {ns!r} to add children to"
            )
        kind: PrefixKind = "tokens" if parent.kind == "tokens" else "text"
        records: dict[str, NodeRecord] = {}
        nodes: dict[str, TrajectoryNode] = {}
        for child in children:
            if not isinstance(child, NewChild):
                raise ConfigError(f"children must be NewChild, got {type(child).__name__}")
            added = child.tokens if kind == "tokens" else child.text
            if not added:
                raise ConfigError(f"a child in a {kind} tree must add {kind}; got one that adds none")
            _, elements = _elements(
                child.tokens if kind == "tokens" else None, child.text if kind == "text" else None
            )
            key = _chain(bytes.fromhex(parent_key), elements).hex()
            if key in records:
                continue
            payload = child.model_dump(mode="json")
            records[key] = NodeRecord(
                key=key,
                parent=parent_key,
                kind=kind,
                length=parent.length + len(elements),
                depth=parent.depth + 1,
                body=encode("node", payload),
            )
            nodes[key] = TrajectoryNode(
                key=key,
                parent=parent_key,
                kind=kind,
                depth=parent.depth + 1,
                length=records[key].length,
                **payload,
            )
        added_keys = await self._backend.node_add(ns, parent_key, list(records.values()))
        return [nodes[k] for k in added_keys]

    async def update_stats(
        self, ns: str, key: str, visits_delta: int = 1, value_delta: float = 0.0
    ) -> tuple[int, float]:
        """Atomically add to a node's visit count and value sum; return the new ``(visits, value_sum)``.

        Negative deltas are allowed (e.g. to undo a virtual loss).
        """
        [stats] = await self._backend.node_update(
            check_namespace(ns), [(_check_key(key), visits_delta, value_delta)]
        )
        return stats

    async def backpropagate(
        self, ns: str, keys: Sequence[str], value: float, visits_delta: int = 1
    ) -> list[tuple[int, float]]:
        """Add ``visits_delta`` and ``value`` to every node of a path in one atomic update."""
        deltas = [(_check_key(k), visits_delta, value) for k in keys]
        return await self._backend.node_update(check_namespace(ns), deltas) if deltas else []

    async def set_rollout(
        self, ns: str, key: str, value: float, verdict: dict[str, Any] | BaseModel | None = None
    ) -> None:
        """Record the outcome of a rollout completed from a node (replacing an earlier one)."""
        if isinstance(verdict, BaseModel):
            verdict = verdict.model_dump(mode="json")
        body = encode("rollout", Rollout(value=value, verdict=verdict).model_dump(mode="json"))
        if not await self._backend.node_set_rollout(check_namespace(ns), _check_key(key), body):
            raise StoreError(f"{self._backend.url}: no node {key} in namespace {ns!r} to record a rollout on")

    async def longest_prefix(
        self, ns: str, *, tokens: Sequence[int] | None = None, text: str | None = None
    ) -> PrefixMatch | None:
        """The deepest stored node whose prefix is a prefix of the query, or None."""
        kind, elements = _elements(tokens, text)
        lengths = await self._backend.node_lengths(check_namespace(ns), kind, len(elements))
        if not lengths:
            return None
        wanted, keys_at, digest, done = set(lengths), {}, _SEEDS[kind], 0
        for length in sorted(wanted):
            digest = _chain(digest, elements[done:length])
            keys_at[length], done = digest.hex(), length
        ordered = sorted(wanted, reverse=True)
        for i in range(0, len(ordered), _LOOKUP_CHUNK):
            chunk = ordered[i : i + _LOOKUP_CHUNK]
            found = await self.get_nodes(ns, [keys_at[n] for n in chunk])
            for length in chunk:
                node = found.get(keys_at[length])
                if node is not None:
                    return PrefixMatch(node=node, length=length)
        return None

    async def path(self, ns: str, key: str) -> list[TrajectoryNode]:
        """The nodes from the root down to ``key`` (empty if ``key`` is not stored)."""
        out: list[TrajectoryNode] = []
        current: str | None = key
        while current is not None:
            node = await self.get_node(ns, current)
            if node is None:
                return []
            out.append(node)
            current = node.parent
        return out[::-1]

    async def claim(self, ns: str, key: str, owner: str, ttl_s: float = 60.0) -> bool:
        """Claim the expansion of a node: True for exactly one owner until it releases or ``ttl_s`` passes.

        Claiming again as the same owner renews the claim.
        """
        if not owner:
            raise ConfigError("a claim needs a non-empty owner")
        if not ttl_s > 0:
            raise ConfigError(f"claim ttl_s must be positive, got {ttl_s}")
        return await self._backend.claim(
            check_namespace(ns), _check_key(key), owner, now=self._clock(), ttl_s=ttl_s
        )

    async def release(self, ns: str, key: str, owner: str) -> bool:
        """Give a claim back; False if ``owner`` did not hold it."""
        return await self._backend.release(check_namespace(ns), _check_key(key), owner)

    async def _node(self, ns: str, record: NodeRecord) -> TrajectoryNode | None:
        try:
            payload = decode(record.body, "node").data
            rollout = None
            if record.rollout is not None:
                try:
                    rollout = Rollout.model_validate(decode(record.rollout, "rollout").data)
                except (CorruptEntry, ValueError) as e:
                    await report_corrupt(self._backend, ns, f"rollout of node {record.key}", e)
            return TrajectoryNode(
                key=record.key,
                parent=record.parent,
                kind="text" if record.kind == "text" else "tokens",
                depth=record.depth,
                length=record.length,
                visits=record.visits,
                value_sum=record.value_sum,
                rollout=rollout,
                children=record.children,
                **payload,
            )
        except (CorruptEntry, ValueError, TypeError) as e:
            await report_corrupt(self._backend, ns, f"node {record.key}", e)
            return None
