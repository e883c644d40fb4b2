"""The Redis backend: the shared store for many workers on many machines.

Keys of a namespace share the hash tag ``forkpath:{<ns>}:`` (so a namespace lives on one
cluster slot and ``SCAN MATCH`` finds exactly its keys)::

    forkpath:{ns}:cache:<key>        generation cache entry (string, PX = its ttl)
    forkpath:{ns}:lru                zset: cache key -> last use (eviction order)
    forkpath:{ns}:expires            zset: cache key -> expiry time, for entries with a TTL
    forkpath:{ns}:node:<key>         hash: parent, kind, length, depth, body, visits, value_sum, rollout
    forkpath:{ns}:children:<key>     list of child keys, in the order they were added
    forkpath:{ns}:lengths:<kind>     set of prefix lengths that have a node (longest-prefix lookup)
    forkpath:{ns}:claim:<key>        hash: owner, expires (an expansion claim)
    forkpath:{ns}:results            hash: task id -> result (the namespace is the run id)
    forkpath:{ns}:stats              hash: nodes, corrupt, evictions
    forkpath:namespaces              set of namespaces that hold something
    forkpath:meta                    hash: format (the layout version)

Every multi-step update is one Lua script (:mod:`forkpath.store._redis_lua`), so it is atomic
against every other client. Expired cache entries leave ``lru`` and ``expires`` in the next put
or stats call on the namespace, so the sets stay the size of the live cache. Calls
that are safe to repeat (reads, puts, set-if-absent) are retried a few times on a connection
error; counter increments are not, since a reply lost after the server applied one would
count it twice: they fail with :class:`StoreError` and the caller decides.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from forkpath._errors import ConfigError, StoreError
from forkpath.store._base import FORMAT_VERSION, ClearWhat, NodeRecord, StoreBackend, StoreStats
from forkpath.store._redis_lua import PURGE_LIMIT, SCRIPTS

logger = logging.getLogger("forkpath.store")

T = TypeVar("T")

NAMESPACES = "forkpath:namespaces"
META = "forkpath:meta"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


# What each clear removes: key patterns to scan, fixed keys, and fields of the stats hash.
_CLEARED: dict[ClearWhat, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "cache": (("cache:*",), ("lru", "expires"), ("evictions",)),
    "trajectories": (("node:*", "children:*", "lengths:*", "claim:*"), (), ("nodes",)),
    "results": ((), ("results",), ()),
    "all": (("*",), (), ()),
}


def _prefix(ns: str) -> str:
    return f"forkpath:{{{ns}}}:"


def _reason(error: BaseException) -> str:
    cause: BaseException | None = error
    while cause is not None:  # the OS reason, when there is one, says it best: "Connection refused"
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    text = str(error).strip() or type(error).__name__
    # redis-py says "Error 111 connecting to host:port. Connection refused."; keep the reason.
    if text.startswith("Error ") and ". " in text:
        text = text.split(". ", 1)[1]
    return text.rstrip(".")


class RedisBackend(StoreBackend):
    """A store in a Redis server (``redis://``, ``rediss://`` or ``unix://`` URL).

    Opening pings the server and checks the layout version, so an unreachable server fails
    here, at start, with :class:`StoreError`.

    Args:
        url: the server, e.g. ``redis://127.0.0.1:6379/0``.
        connect_timeout_s: how long to wait for a connection.
        socket_timeout_s: how long to wait for a reply.
        retries: extra attempts of a repeatable call after a connection error.
    """

    def __init__(
        self, url: str, *, connect_timeout_s: float = 2.0, socket_timeout_s: float = 10.0, retries: int = 2
    ):
        self._target = url
        self.url = redact(url)
        self.connect_timeout_s = connect_timeout_s
        self.socket_timeout_s = socket_timeout_s
        self.retries = retries
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._pid = os.getpid()
        self._closed = False
        self._check_server()

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r})"

    # -- plumbing -----------------------------------------------------------------------------
    def _options(self, *, for_asyncio: bool) -> dict[str, Any]:
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return {
            "socket_connect_timeout": self.connect_timeout_s,
            "socket_timeout": self.socket_timeout_s,
            "decode_responses": True,
            # Retries are ours (_call): only repeatable calls may be repeated.
            "retry": AsyncRetry(NoBackoff(), 0) if for_asyncio else Retry(NoBackoff(), 0),
        }

    def _check_url(self) -> None:
        # redis-py quietly uses db 0 for "redis://host/notadb": refuse instead.
        parts = urlsplit(self._target)
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError as e:
            raise ConfigError(f"bad Redis URL {self.url}: {e}") from None
        if parts.scheme in ("redis", "rediss"):
            db = parts.path.strip("/")
            if db and not db.isdigit():
                raise ConfigError(f"bad Redis URL {self.url}: database {db!r} is not a number")

    def _check_server(self) -> None:
        import redis

        self._check_url()
        try:
            client = redis.Redis.from_url(self._target, **self._options(for_asyncio=False))
        except ValueError as e:
            raise ConfigError(f"bad Redis URL {self.url}: {e}") from e
        try:
            client.ping()
            client.hsetnx(META, "format", FORMAT_VERSION)
            found = client.hget(META, "format")
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise StoreError(f"{self.url} unreachable: {_reason(e)}") from e
        except redis.RedisError as e:
            raise StoreError(f"{self.url}: {_reason(e)}") from e
        finally:
            client.close()
        if str(found) != str(FORMAT_VERSION):
            raise StoreError(
                f"{self.url}: store of format version {found}; this forkpath reads {FORMAT_VERSION}"
            )

    def _client(self) -> tuple[Any, dict[str, Any]]:
        """This event loop's client (a redis.asyncio client is bound to the loop that made it)."""
        import redis.asyncio as aioredis

        if self._closed:
            raise StoreError(f"{self.url}: store is closed")
        if os.getpid() != self._pid:  # forked: never share the parent's sockets
            self._clients = weakref.WeakKeyDictionary()
            self._pid = os.getpid()
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            client = aioredis.Redis.from_url(self._target, **self._options(for_asyncio=True))
            scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}
            self._clients[loop] = (client, scripts)
        return self._clients[loop]

    async def _call(self, fn: Callable[[Any, dict[str, Any]], Awaitable[T]], *, repeatable: bool = True) -> T:
        import redis

        client, scripts = self._client()
        attempts = 1 + (self.retries if repeatable else 0)
        for attempt in range(attempts):
            try:
                return await fn(client, scripts)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                if attempt + 1 < attempts:
                    logger.info("%s: %s; retrying", self.url, _reason(e))
                    await asyncio.sleep(0.1 * 2**attempt)
                    continue
                raise StoreError(f"{self.url} unreachable: {_reason(e)}") from e
            except redis.RedisError as e:
                raise StoreError(f"{self.url}: {_reason(e)}") from e
        raise AssertionError("unreachable")  # the loop returns or raises

    async def aclose(self) -> None:
        self._closed = True
        clients, self._clients = self._clients, weakref.WeakKeyDictionary()
        loop = asyncio.get_running_loop()
        for client_loop, (client, _) in list(clients.items()):
            if client_loop is loop and os.getpid() == self._pid:
                await client.aclose()

    # -- generation cache ---------------------------------------------------------------------
    async def cache_get(self, ns: str, key: str, now: float) -> str | None:
        p = _prefix(ns)
        keys = [p + "cache:" + key, p + "lru", p + "expires"]
        return await self._call(lambda c, s: s["cache_get"](keys=keys, args=[repr(now), key]))

    async def cache_put(
        self, ns: str, key: str, body: str, *, now: float, ttl_s: float | None, max_entries: int | None
    ) -> int:
        p = _prefix(ns)
        ttl_ms = max(1, math.ceil(ttl_s * 1000)) if ttl_s is not None else 0
        keys = [p + "cache:" + key, p + "lru", p + "expires", p + "stats", NAMESPACES]
        expires_at = repr(now + ttl_s) if ttl_s is not None else ""
        args = [body, repr(now), key, ttl_ms, max_entries or 0, p + "cache:", ns, expires_at, PURGE_LIMIT]
        return int(await self._call(lambda c, s: s["cache_put"](keys=keys, args=args)))

    # -- trajectory nodes ---------------------------------------------------------------------
    async def node_add(self, ns: str, parent: str | None, nodes: Sequence[NodeRecord]) -> list[str]:
        p = _prefix(ns)
        kinds = {r.kind for r in nodes}
        if len(kinds) > 1:
            raise StoreError(f"{self.url}: nodes of one call must be of one kind, got {sorted(kinds)}")
        kind = kinds.pop() if kinds else "tokens"
        keys = [
            p + "node:" + (parent or ""),
            p + "children:" + (parent or ""),
            p + "lengths:" + kind,
            p + "stats",
            NAMESPACES,
        ]
        args: list[Any] = ["1" if parent is not None else "0", p, ns, parent or ""]
        for r in nodes:
            args += [r.key, r.kind, r.length, r.depth, r.body]
        try:
            added = await self._call(lambda c, s: s["node_add"](keys=keys, args=args))
        except StoreError as e:
            if "no parent node" in str(e):
                raise StoreError(
                    f"{self.url}: no node {parent} in namespace {ns!r} to add children to"
                ) from e
            raise
        return [str(k) for k in added]

    async def node_get_many(self, ns: str, keys: Sequence[str]) -> dict[str, NodeRecord]:
        p = _prefix(ns)

        async def fetch(c: Any, s: dict[str, Any]) -> list[Any]:
            pipe = c.pipeline(transaction=True)  # one snapshot for the nodes and their children
            for key in keys:
                pipe.hgetall(p + "node:" + key)
                pipe.lrange(p + "children:" + key, 0, -1)
            return list(await pipe.execute())

        replies = await self._call(fetch) if keys else []
        out: dict[str, NodeRecord] = {}
        for key, fields, children in zip(keys, replies[::2], replies[1::2], strict=True):
            if not fields:
                continue
            out[key] = NodeRecord(
                key=key,
                parent=fields.get("parent") or None,
                kind=fields.get("kind", ""),
                length=int(fields.get("length", 0)),
                depth=int(fields.get("depth", 0)),
                body=fields.get("body", ""),
                visits=int(fields.get("visits", 0)),
                value_sum=float(fields.get("value_sum", 0.0)),
                rollout=fields.get("rollout"),
                children=tuple(children),
            )
        return out

    async def node_update(self, ns: str, deltas: Sequence[tuple[str, int, float]]) -> list[tuple[int, float]]:
        p = _prefix(ns)
        keys = [p + "node:" + key for key, _, _ in deltas]
        args: list[Any] = []
        for _, visits, value in deltas:
            args += [int(visits), repr(float(value))]
        try:
            replies = await self._call(lambda c, s: s["node_update"](keys=keys, args=args), repeatable=False)
        except StoreError as e:
            if "no node #" in str(e):
                index = int(str(e).split("no node #", 1)[1].split(" ", 1)[0])
                missing = deltas[index - 1][0]
                raise StoreError(f"{self.url}: no node {missing} in namespace {ns!r} to update") from e
            raise
        return [(int(v), float(s)) for v, s in replies]

    async def node_set_rollout(self, ns: str, key: str, body: str) -> bool:
        node = _prefix(ns) + "node:" + key
        return bool(await self._call(lambda c, s: s["node_set_rollout"](keys=[node], args=[body])))

    async def node_lengths(self, ns: str, kind: str, max_length: int) -> list[int]:
        members = await self._call(lambda c, s: c.smembers(_prefix(ns) + "lengths:" + kind))
        return sorted((int(m) for m in members if int(m) <= max_length), reverse=True)

    async def claim(self, ns: str, key: str, owner: str, *, now: float, ttl_s: float) -> bool:
        keys = [_prefix(ns) + "claim:" + key]
        # The key itself lives a little longer than the claim; expiry is decided on `now`.
        args = [owner, repr(now), repr(now + ttl_s), max(1, math.ceil(ttl_s * 1000)) + 60_000]
        return bool(await self._call(lambda c, s: s["claim"](keys=keys, args=args)))

    async def release(self, ns: str, key: str, owner: str) -> bool:
        keys = [_prefix(ns) + "claim:" + key]
        return bool(await self._call(lambda c, s: s["release"](keys=keys, args=[owner])))

    # -- batch results ------------------------------------------------------------------------
    async def result_put(self, run: str, task: str, body: str) -> None:
        async def put(c: Any, s: dict[str, Any]) -> None:
            pipe = c.pipeline(transaction=True)
            pipe.hset(_prefix(run) + "results", task, body)
            pipe.sadd(NAMESPACES, run)
            await pipe.execute()

        await self._call(put)

    async def result_get(self, run: str, task: str) -> str | None:
        body = await self._call(lambda c, s: c.hget(_prefix(run) + "results", task))
        return None if body is None else str(body)

    async def result_scan(self, run: str) -> AsyncIterator[tuple[str, str]]:
        key, cursor = _prefix(run) + "results", 0
        while True:

            async def page_at(c: Any, s: dict[str, Any], cursor: int = cursor) -> tuple[int, dict[str, str]]:
                found, page = await c.hscan(key, cursor, count=500)
                return int(found), page

            cursor, page = await self._call(page_at)
            for task, body in page.items():
                yield str(task), str(body)
            if int(cursor) == 0:
                return

    # -- bookkeeping --------------------------------------------------------------------------
    async def count(self, ns: str, name: Literal["corrupt", "evictions"], n: int = 1) -> None:
        async def bump(c: Any, s: dict[str, Any]) -> None:
            pipe = c.pipeline(transaction=True)
            pipe.hincrby(_prefix(ns) + "stats", name, n)
            pipe.sadd(NAMESPACES, ns)
            await pipe.execute()

        await self._call(bump, repeatable=False)

    async def stats(self, ns: str, now: float) -> StoreStats:
        p = _prefix(ns)
        keys = [p + "lru", p + "expires", p + "stats", p + "results"]
        args = [repr(now), p + "cache:", PURGE_LIMIT]
        entries, flat, results = await self._call(lambda c, s: s["stats"](keys=keys, args=args))
        counters = dict(zip(flat[::2], flat[1::2], strict=True))
        return StoreStats(
            namespace=ns,
            cache_entries=int(entries),
            cache_bytes=None,
            nodes=int(counters.get("nodes", 0)),
            results=int(results),
            corrupt=int(counters.get("corrupt", 0)),
            evictions=int(counters.get("evictions", 0)),
        )

    async def clear(self, ns: str, what: ClearWhat) -> int:
        p = _prefix(ns)
        patterns, keys, fields = _CLEARED[what]

        async def remove(c: Any, s: dict[str, Any]) -> int:
            removed, batch = 0, [p + key for key in keys]
            for pattern in patterns:
                async for key in c.scan_iter(match=p + pattern, count=500):
                    batch.append(key)
                    if len(batch) >= 500:
                        removed += await c.unlink(*batch)
                        batch = []
            if batch:
                removed += await c.unlink(*batch)
            # Forget the namespace only if nothing is left, checked atomically against puts.
            present = ["lru", "expires", "results", "stats", "lengths:tokens", "lengths:text"]
            await s["clear_done"](keys=[NAMESPACES, *(p + k for k in present)], args=[ns, *fields])
            return int(removed)

        return await self._call(remove)

    async def namespaces(self) -> list[str]:
        return sorted(str(m) for m in await self._call(lambda c, s: c.smembers(NAMESPACES)))
