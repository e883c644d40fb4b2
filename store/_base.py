"""The store backend protocol, the entry envelope and the names shared by every backend.

A backend is one :class:`StoreBackend`: a handful of atomic primitives over opaque strings
(generation cache entries, trajectory nodes, batch results, counters). Everything that does not
need the backend's own atomicity lives above it, in :mod:`forkpath.store._store` and friends:
the envelope, keys, validation, clocks and stats. A new backend implements these primitives and
passes the conformance suite in ``tests/store/conformance.py``.

Every stored value is wrapped in a versioned JSON envelope::

    {"forkpath_store": 1, "kind": "generation", "expires_at": null, "data": {...}}

An entry that does not decode (truncated, foreign, another format version, wrong kind) raises
:class:`CorruptEntry` inside the package; the facades log it, count it in the namespace's
``corrupt`` counter and treat it as a miss. It never reaches a caller.
"""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from forkpath._errors import ConfigError, StoreError

logger = logging.getLogger("forkpath.store")

FORMAT_VERSION = 1
"""Version of the envelope and of the backends' layouts; a store of another version is refused."""

EntryKind = Literal["generation", "node", "rollout", "result"]

ClearWhat = Literal["cache", "trajectories", "results", "all"]
"""What :meth:`Store.clear` removes from a namespace.

A cache namespace and a batch run id share one name space, so clearing must say which area it
means: ``cache`` (entries and the eviction counter), ``trajectories`` (nodes and claims),
``results`` (batch results of the run of that name) or ``all`` (those and every counter).
"""

CLEAR_WHAT: tuple[ClearWhat, ...] = get_args(ClearWhat)

_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/:@=+]{0,199}")


class CorruptEntry(StoreError):
    """An entry that does not decode; internal: facades turn it into a counted, logged miss."""


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is a valid namespace (or run id), else raise :class:`ConfigError`.

    Namespaces are at most 200 characters of letters, digits and ``_ . - / : @ = +``; braces,
    glob characters and spaces are refused so that a namespace can never match another's keys.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ConfigError(
            f"invalid store namespace {namespace!r}: use 1-200 letters, digits or _ . - / : @ = + "
            "(not starting with a symbol)"
        )
    return namespace


def encode(kind: EntryKind, data: Any, *, expires_at: float | None = None) -> str:
    """Wrap ``data`` (JSON-serialisable) in the versioned envelope."""
    envelope = {"forkpath_store": FORMAT_VERSION, "kind": kind, "expires_at": expires_at, "data": data}
    try:
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StoreError(f"cannot store {kind} entry: not JSON-serialisable ({e})") from e


@dataclass(frozen=True)
class Envelope:
    """A decoded entry."""

    kind: EntryKind
    data: Any
    expires_at: float | None


def decode(raw: str | bytes, kind: EntryKind) -> Envelope:
    """Unwrap an envelope of ``kind``; raise :class:`CorruptEntry` saying what is wrong with it."""
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptEntry(f"not valid JSON, probably truncated ({len(raw)} bytes): {e}") from None
    if not isinstance(envelope, dict) or "forkpath_store" not in envelope:
        raise CorruptEntry("foreign entry: no forkpath_store envelope")
    version = envelope.get("forkpath_store")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"entry of format version {version!r}; this forkpath reads {FORMAT_VERSION}")
    if envelope.get("kind") != kind:
        raise CorruptEntry(f"{envelope.get('kind')!r} entry where a {kind!r} entry was expected")
    expires_at = envelope.get("expires_at")
    if expires_at is not None and not isinstance(expires_at, int | float):
        raise CorruptEntry(f"bad expires_at {expires_at!r}")
    return Envelope(kind=kind, data=envelope.get("data"), expires_at=expires_at)


@dataclass(frozen=True)
class NodeRecord:
    """A trajectory node as a backend stores it: structure and counters, payload still encoded."""

    key: str
    parent: str | None
    kind: str
    """``tokens`` or ``text``: what the prefix key is computed over."""
    length: int
    """Tokens or characters in the whole prefix, root included."""
    depth: int
    body: str
    """Envelope of the node's payload (what it added, logprobs, prior, meta)."""
    visits: int = 0
    value_sum: float = 0.0
    rollout: str | None = None
    """Envelope of the rollout verdict, once one completed from here."""
    children: tuple[str, ...] = ()
    """Child keys in the order they were added."""


class StoreStats(BaseModel):
    """What one namespace holds (``forkpath store stats``)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str
    cache_entries: int = 0
    """Live generation cache entries (expired ones are not counted)."""
    cache_bytes: int | None = None
    """Bytes of cache entries where the backend can tell cheaply (SQLite), else None."""
    nodes: int = 0
    """Trajectory nodes."""
    results: int = 0
    """Batch results stored under this namespace as run id."""
    corrupt: int = 0
    """Corrupt or foreign entries met (and skipped) so far."""
    evictions: int = 0
    """Cache entries evicted by the size cap."""


class StoreBackend(ABC):
    """The primitives a store backend provides; each call is atomic on its own.

    Times (``now``, ``expires_at``) are seconds on the caller's clock, passed in so that every
    process agrees on one clock and tests can move it. Namespaces are already validated.
    """

    url: str
    """Where the store lives, with any password removed; used in every error message."""

    # -- generation cache ---------------------------------------------------------------------
    @abstractmethod
    async def cache_get(self, ns: str, key: str, now: float) -> str | None:
        """The entry under ``key``, noting it as used at ``now`` (for LRU eviction)."""

    @abstractmethod
    async def cache_put(
        self, ns: str, key: str, body: str, *, now: float, ttl_s: float | None, max_entries: int | None
    ) -> int:
        """Store an entry; purge expired ones and evict least-recently-used ones over
        ``max_entries``; return how many were evicted."""

    # -- trajectory nodes ---------------------------------------------------------------------
    @abstractmethod
    async def node_add(self, ns: str, parent: str | None, nodes: Sequence[NodeRecord]) -> list[str]:
        """Create the nodes that do not exist yet (under ``parent``, which must exist);
        return the keys actually created, in order."""

    @abstractmethod
    async def node_get_many(self, ns: str, keys: Sequence[str]) -> dict[str, NodeRecord]:
        """The nodes that exist among ``keys``, with their children."""

    @abstractmethod
    async def node_update(self, ns: str, deltas: Sequence[tuple[str, int, float]]) -> list[tuple[int, float]]:
        """Add ``(key, visits_delta, value_delta)`` to each node in one transaction; return the new
        ``(visits, value_sum)`` of each. Raises :class:`StoreError` (changing nothing) if a node is missing."""

    @abstractmethod
    async def node_set_rollout(self, ns: str, key: str, body: str) -> bool:
        """Record a rollout verdict on a node; False if the node does not exist."""

    @abstractmethod
    async def node_lengths(self, ns: str, kind: str, max_length: int) -> list[int]:
        """Distinct prefix lengths at which nodes of ``kind`` exist, up to ``max_length``."""

    @abstractmethod
    async def claim(self, ns: str, key: str, owner: str, *, now: float, ttl_s: float) -> bool:
        """Set-if-absent: take (or renew) the claim on ``key`` for ``owner`` until ``now + ttl_s``.
        True if ``owner`` holds it afterwards."""

    @abstractmethod
    async def release(self, ns: str, key: str, owner: str) -> bool:
        """Drop the claim on ``key`` if ``owner`` holds it."""

    # -- batch results ------------------------------------------------------------------------
    @abstractmethod
    async def result_put(self, run: str, task: str, body: str) -> None:
        """Store (or replace) the result of ``task`` in ``run``."""

    @abstractmethod
    async def result_get(self, run: str, task: str) -> str | None:
        """The stored result of ``task`` in ``run``."""

    @abstractmethod
    def result_scan(self, run: str) -> AsyncIterator[tuple[str, str]]:
        """Every ``(task, body)`` of ``run``, in batches under the hood."""

    # -- bookkeeping --------------------------------------------------------------------------
    @abstractmethod
    async def count(self, ns: str, name: Literal["corrupt", "evictions"], n: int = 1) -> None:
        """Add ``n`` to a persistent counter of the namespace."""

    @abstractmethod
    async def stats(self, ns: str, now: float) -> StoreStats:
        """Counts of what the namespace holds; cache entries expired at ``now`` are not counted
        (a backend may purge them on the way)."""

    @abstractmethod
    async def clear(self, ns: str, what: ClearWhat) -> int:
        """Remove one area of the namespace (see :data:`ClearWhat`); return how many records
        (or keys) went. Only ``all`` resets the ``corrupt`` counter."""

    @abstractmethod
    async def namespaces(self) -> list[str]:
        """Namespaces that hold something, sorted."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections and threads."""


async def report_corrupt(backend: StoreBackend, ns: str, what: str, error: Exception) -> None:
    """Log a corrupt entry and count it in the namespace's stats; the caller then skips it."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    logger.warning("%s: skipping corrupt %s in namespace %r: %s", backend.url, what, ns, reason)
    await backend.count(ns, "corrupt", 1)
