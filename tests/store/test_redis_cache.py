"""The Redis cache's bookkeeping: expired entries leave the ``lru`` and ``expires`` sorted sets.

Redis drops an entry's string at its ``PX`` on its own but never a sorted-set member; these
tests look at the sets directly, on a real server, so a leak shows as a member count.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from forkpath.store import RedisBackend, Store

from .conftest import REDIS_URL, FakeClock, redis_unavailable

pytestmark = pytest.mark.redis

VALUE = {"text": "Paris", "finish_reason": "stop"}


@pytest.fixture
async def raw() -> AsyncIterator[Any]:
    """A plain client on the test database, to look at the backend's keys."""
    reason = redis_unavailable()
    if reason:
        pytest.skip(reason)
    import redis.asyncio as aioredis

    client: Any = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def books(raw: Any, ns: str) -> tuple[int, int, int]:
    """(entry keys, lru members, expires members) of a namespace's cache."""
    p = f"forkpath:{{{ns}}}:"
    entries = [k async for k in raw.scan_iter(match=p + "cache:*", count=500)]
    return len(entries), await raw.zcard(p + "lru"), await raw.zcard(p + "expires")


async def test_a_ttl_only_cache_does_not_leak_lru_members_after_real_expiry(raw: Any, ns: str) -> None:
    store = Store(RedisBackend(REDIS_URL))  # the real clock: Redis's own PX expiry is what is tested
    try:
        cache = store.generation_cache(ns, ttl_s=0.05)
        for i in range(50):
            await cache.put(f"k{i}", VALUE)
        for _ in range(200):  # wait (at most ~10 s) until Redis has dropped every entry
            if (await books(raw, ns))[0] == 0:
                break
            await asyncio.sleep(0.05)
        assert (await books(raw, ns))[0] == 0, "Redis did not expire the entries"
        assert (await store.stats(ns)).cache_entries == 0
        assert await books(raw, ns) == (0, 0, 0), "stats purged the expired members"
        await store.generation_cache(ns, ttl_s=60).put("fresh", VALUE)
        assert await books(raw, ns) == (1, 1, 1)
        assert (await store.stats(ns)).cache_entries == 1
    finally:
        await store.clear(ns, "all")
        await store.aclose()


async def test_a_put_purges_entries_expired_on_the_callers_clock(raw: Any, ns: str) -> None:
    clock = FakeClock()
    store = Store(RedisBackend(REDIS_URL), clock=clock)
    try:
        cache = store.generation_cache(ns, ttl_s=1000)
        for i in range(3):
            await cache.put(f"k{i}", VALUE)
        await store.generation_cache(ns).put("forever", VALUE)
        assert await books(raw, ns) == (4, 4, 3)
        clock.advance(1001)
        await cache.put("new", VALUE)
        # The expired strings go too, though their PX (real seconds) has not passed yet.
        assert await books(raw, ns) == (2, 2, 1)
        clock.advance(1001)
        await store.generation_cache(ns).put("forever", VALUE)
        assert await books(raw, ns) == (1, 1, 0)
    finally:
        await store.clear(ns, "all")
        await store.aclose()


async def test_misses_and_evictions_drop_both_members(raw: Any, ns: str) -> None:
    clock = FakeClock()
    store = Store(RedisBackend(REDIS_URL), clock=clock)
    p = f"forkpath:{{{ns}}}:"
    try:
        cache = store.generation_cache(ns, ttl_s=1000, max_entries=2)
        for key in ("a", "b", "c"):
            await cache.put(key, VALUE)
            clock.advance(1)
        assert await books(raw, ns) == (2, 2, 2)
        assert await raw.zscore(p + "expires", "a") is None, "the evicted entry left expires too"
        await raw.delete(p + "cache:b")  # as Redis does at the entry's PX
        assert await cache.get("b") is None
        assert await books(raw, ns) == (1, 1, 1)
        assert await raw.zrange(p + "lru", 0, -1) == await raw.zrange(p + "expires", 0, -1) == ["c"]
    finally:
        await store.clear(ns, "all")
        await store.aclose()


async def test_clearing_the_cache_leaves_no_cache_keys_and_keeps_results(raw: Any, ns: str) -> None:
    store = Store(RedisBackend(REDIS_URL), clock=FakeClock())
    p = f"forkpath:{{{ns}}}:"
    try:
        cache = store.generation_cache(ns, ttl_s=1000)
        for i in range(3):
            await cache.put(f"k{i}", VALUE)
        await store.put_result(ns, "t1", {"ok": True})
        assert await store.clear(ns, what="cache") == 3 + 2  # three entries, lru, expires
        assert await books(raw, ns) == (0, 0, 0)
        assert await raw.hkeys(p + "results") == ["t1"]
    finally:
        await store.clear(ns, "all")
        await store.aclose()
