"""forkpath.store: the generation cache, search-tree nodes and batch results, in SQLite or Redis.

Example:
    >>> from forkpath.store import open_store, NewChild, prefix_key
    >>> store = open_store()                      # $FORKPATH_STORE or .forkpath/store.db
    >>> model = FakeModel(cache=store.generation_cache("my-project"))
    >>> root = await store.trajectories.add_root("search-1", tokens=[1, 2, 3])
    >>> await store.put_result("run-1", "task-1", {"ok": True})
    >>> await store.finished_ids("run-1")
    {'task-1'}
    >>> await store.clear("my-project", what="cache")  # results of a run of that name stay

Backends implement :class:`StoreBackend` and pass ``tests/store/conformance.py``.
"""

from forkpath.store._base import (
    FORMAT_VERSION,
    ClearWhat,
    NodeRecord,
    StoreBackend,
    StoreStats,
    check_namespace,
)
from forkpath.store._cache import CacheConfig, CacheCounters, StoreGenerationCache
from forkpath.store._redis import RedisBackend
from forkpath.store._sqlite import SQLiteBackend
from forkpath.store._store import DEFAULT_PATH, ENV_VAR, Store, StoreConfig, open_store, resolve_store_url
from forkpath.store._trajectory import (
    NewChild,
    PrefixMatch,
    Rollout,
    TrajectoryNode,
    TrajectoryStore,
    extend_key,
    prefix_key,
)

__all__ = [
    "DEFAULT_PATH",
    "ENV_VAR",
    "FORMAT_VERSION",
    "CacheConfig",
    "CacheCounters",
    "ClearWhat",
    "NewChild",
    "NodeRecord",
    "PrefixMatch",
    "RedisBackend",
    "Rollout",
    "SQLiteBackend",
    "Store",
    "StoreBackend",
    "StoreConfig",
    "StoreGenerationCache",
    "StoreStats",
    "TrajectoryNode",
    "TrajectoryStore",
    "check_namespace",
    "extend_key",
    "open_store",
    "prefix_key",
    "resolve_store_url",
]
