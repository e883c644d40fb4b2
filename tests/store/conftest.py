"""Fixtures of the store tests: a store per backend, a movable clock, a private namespace."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from functools import cache

import pytest

from forkpath.store import RedisBackend, SQLiteBackend, Store

REDIS_URL = os.environ.get("FORKPATH_TEST_REDIS", "redis://127.0.0.1:6379/15")


@cache
def redis_unavailable() -> str | None:
    """Why the test Redis cannot be used, or None if it can."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as e:
        return f"no Redis at {REDIS_URL}: {e}"
    return None


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ns() -> str:
    """A namespace no other test (or other user of the test Redis db) uses."""
    return f"fptest-{uuid.uuid4().hex[:12]}"


def make_backend(kind: str, tmp_path: os.PathLike[str]) -> SQLiteBackend | RedisBackend:
    if kind == "sqlite":
        return SQLiteBackend(os.path.join(tmp_path, "store.db"))
    reason = redis_unavailable()
    if reason:
        pytest.skip(reason)
    return RedisBackend(REDIS_URL)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    backend_kind: str, tmp_path: os.PathLike[str], clock: FakeClock, ns: str
) -> AsyncIterator[Store]:
    """A store on each backend; on teardown the test's namespaces (``ns`` and ``ns-*``) are cleared."""
    s = Store(make_backend(backend_kind, tmp_path), clock=clock)
    try:
        yield s
    finally:
        for name in {ns, *await s.namespaces()}:
            if name == ns or name.startswith(ns + "-"):
                await s.clear(name, "all")
        await s.aclose()
