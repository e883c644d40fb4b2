"""The store users hold: :func:`open_store` and :class:`Store`.

Which store is chosen by a URL (from flow config, a CLI flag or ``FORKPATH_STORE``)::

    sqlite:///abs/path/store.db   SQLite file (``sqlite://rel/path.db`` is relative; ``sqlite:////abs`` works too)
    path/to/store.db              SQLite file
    redis://host:6379/0           Redis (also rediss:// and unix://)
    (nothing)                     $FORKPATH_STORE, else .forkpath/store.db in the current directory

Example:
    >>> async with open_store("redis://127.0.0.1:6379/0") as store:
    ...     model = get_model("local/smollm2-135m", cache=store.generation_cache("my-project"))
    ...     done = await store.finished_ids("run-7")
    ...     await store.put_result("run-7", "gsm8k/12", {"answer": "42", "correct": True})
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from forkpath._errors import ConfigError, StoreError
from forkpath.store._base import (
    CLEAR_WHAT,
    ClearWhat,
    CorruptEntry,
    StoreBackend,
    StoreStats,
    check_namespace,
    decode,
    encode,
    report_corrupt,
)
from forkpath.store._cache import CacheConfig, StoreGenerationCache
from forkpath.store._trajectory import TrajectoryStore

logger = logging.getLogger("forkpath.store")

ENV_VAR = "FORKPATH_STORE"
DEFAULT_PATH = os.path.join(".forkpath", "store.db")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class Store:
    """A generation cache, search-tree nodes and batch results in one backend.

    Args:
        backend: where things are kept (:class:`SQLiteBackend`, :class:`RedisBackend`, ...).
        clock: seconds now; every TTL and LRU decision uses it (tests move it by hand).
    """

    def __init__(self, backend: StoreBackend, *, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.clock = clock
        self.trajectories = TrajectoryStore(backend, clock)
        """Search-tree nodes (:class:`TrajectoryStore`)."""

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def url(self) -> str:
        """Where the store lives (password removed)."""
        return self.backend.url

    def generation_cache(
        self, namespace: str = "default", *, ttl_s: float | None = None, max_entries: int | None = None
    ) -> StoreGenerationCache:
        """A generation cache over ``namespace``, to pass as a model's ``cache``."""
        return StoreGenerationCache(
            self.backend, namespace, ttl_s=ttl_s, max_entries=max_entries, clock=self.clock
        )

    # -- batch results ------------------------------------------------------------------------
    async def put_result(self, run_id: str, task_id: str, result: Mapping[str, Any] | BaseModel) -> None:
        """Record the finished result of ``task_id`` in run ``run_id`` (replacing an earlier one)."""
        data = result.model_dump(mode="json") if isinstance(result, BaseModel) else dict(result)
        await self.backend.result_put(check_namespace(run_id), _check_task(task_id), encode("result", data))

    async def get_result(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """The result of ``task_id`` in ``run_id``, or None (not finished, or unreadable)."""
        raw = await self.backend.result_get(check_namespace(run_id), _check_task(task_id))
        return None if raw is None else await self._decode_result(run_id, task_id, raw)

    async def finished_ids(self, run_id: str) -> set[str]:
        """Task ids with a readable result in ``run_id``: a rerun skips these.

        A corrupt result is not finished: it is logged, counted, and the task runs again.
        """
        return {task async for task, _ in self.results(run_id)}

    async def results(self, run_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every readable ``(task_id, result)`` of ``run_id``, in no particular order."""
        async for task, raw in self.backend.result_scan(check_namespace(run_id)):
            data = await self._decode_result(run_id, task, raw)
            if data is not None:
                yield task, data

    async def _decode_result(self, run_id: str, task_id: str, raw: str) -> dict[str, Any] | None:
        try:
            data = decode(raw, "result").data
            if not isinstance(data, dict):
                raise CorruptEntry(f"result is a {type(data).__name__}, not an object")
        except CorruptEntry as e:
            await report_corrupt(self.backend, run_id, f"result of task {task_id!r}", e)
            return None
        return data

    # -- bookkeeping --------------------------------------------------------------------------
    async def stats(self, namespace: str) -> StoreStats:
        """What ``namespace`` holds: live cache entries, nodes, results, corrupt entries met, evictions."""
        return await self.backend.stats(check_namespace(namespace), self.clock())

    async def clear(self, namespace: str, what: ClearWhat) -> int:
        """Remove one area of ``namespace``; return how many records (or Redis keys) went.

        A cache namespace and a batch run id share one name, so say which area you mean:
        ``cache`` (entries, eviction count), ``trajectories`` (nodes, claims), ``results``
        (batch results of the run of that name) or ``all`` (those and every counter).

        Example:
            >>> await store.clear("default", what="cache")  # results of a run named "default" stay
        """
        if what not in CLEAR_WHAT:
            raise ConfigError(f"cannot clear {what!r}: choose one of {', '.join(CLEAR_WHAT)}")
        removed = await self.backend.clear(check_namespace(namespace), what)
        logger.info("%s: cleared %s of namespace %r (%d records)", self.url, what, namespace, removed)
        return removed

    async def namespaces(self) -> list[str]:
        """Namespaces that hold something."""
        return await self.backend.namespaces()

    async def aclose(self) -> None:
        """Close connections and threads; the store cannot be used afterwards."""
        await self.backend.aclose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _check_task(task_id: str) -> str:
    if not isinstance(task_id, str) or not task_id or len(task_id) > 1000:
        raise ConfigError(f"a task id is a non-empty string of at most 1000 characters, got {task_id!r:.80}")
    return task_id


def resolve_store_url(url: str | None = None) -> str:
    """The store URL to use: ``url``, else ``$FORKPATH_STORE``, else the default SQLite file."""
    if url:
        return url
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return from_env
    return f"sqlite://{Path(DEFAULT_PATH).absolute()}"


def _backend(url: str) -> StoreBackend:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _REDIS_SCHEMES:
        from forkpath.store._redis import RedisBackend

        return RedisBackend(url)
    if scheme == "sqlite" or not scheme:
        from forkpath.store._sqlite import SQLiteBackend

        path = url[len("sqlite://") :] if scheme else url
        if path.startswith("//"):  # SQLAlchemy's absolute form, sqlite:////abs/path
            path = "/" + path.lstrip("/")
        if not path.strip():
            raise ConfigError(f"store URL {url!r} names no file; use sqlite:///abs/path.db or a path")
        return SQLiteBackend(os.path.expanduser(path))
    raise ConfigError(
        f"unknown store URL scheme {scheme!r} in {url!r}; use sqlite:///path/file.db, a file path or redis://host:port/db"
    )


def open_store(
    url: str | None = None, *, fallback: str | None = None, clock: Callable[[], float] = time.time
) -> Store:
    """Open the store at ``url`` (see the module doc for the forms and the default).

    Args:
        url: store URL or SQLite path; None: ``$FORKPATH_STORE`` or ``.forkpath/store.db``.
        fallback: if the store at ``url`` cannot be reached at start, open this one instead
            (``"sqlite"``: the default SQLite file; or any store URL) and log a warning.
            Without it an unreachable store raises. Only the start falls back: a store that
            fails later raises :class:`StoreError`.
        clock: seconds now, for TTLs and LRU order.

    Raises:
        StoreError: the store cannot be reached, created or read (one line naming it).
        ConfigError: the URL is malformed.
    """
    target = resolve_store_url(url)
    try:
        return Store(_backend(target), clock=clock)
    except StoreError as e:
        if fallback is None:
            raise
        other = f"sqlite://{Path(DEFAULT_PATH).absolute()}" if fallback == "sqlite" else fallback
        logger.warning("%s; falling back to %s as asked", e, other)
        return Store(_backend(other), clock=clock)


class StoreConfig(BaseModel):
    """The ``store:`` block of a flow: where to keep things and how to cache."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    """Store URL or SQLite path; None: ``$FORKPATH_STORE`` or ``.forkpath/store.db``."""
    fallback: str | None = None
    """Store to use if ``url`` is unreachable at start (``sqlite`` or a URL); None: fail instead."""
    cache: CacheConfig | None = Field(default_factory=CacheConfig)
    """Generation cache settings; null turns the cache off for this flow."""

    def open(self, *, clock: Callable[[], float] = time.time) -> Store:
        """Open the configured store."""
        return open_store(self.url, fallback=self.fallback, clock=clock)

    def generation_cache(self, store: Store) -> StoreGenerationCache | None:
        """The configured cache over ``store``, or None when the flow opts out."""
        if self.cache is None:
            return None
        c = self.cache
        return store.generation_cache(c.namespace, ttl_s=c.ttl_s, max_entries=c.max_entries)
