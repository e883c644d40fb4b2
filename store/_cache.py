"""The generation cache: model results by canonical request key, in one store namespace.

:class:`StoreGenerationCache` satisfies :class:`forkpath.models.GenerationCache`, so a model
consults it transparently::

    store = open_store()
    model = get_model("local/smollm2-135m", cache=store.generation_cache("my-project"))

The key is :meth:`GenerateRequest.cache_key` (model id, input, sampling parameters, sample
index; never credentials, timeouts or retry counts): N samples at temperature > 0 are N
entries, all greedy calls of one request share one. Entries older than ``ttl_s`` are misses;
past ``max_entries`` the least recently used go. An entry that does not decode, or that is not
a generation result, is logged, counted and treated as a miss (the model is called again and
the entry rewritten).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forkpath._errors import ConfigError
from forkpath.models import GenerateResult
from forkpath.store._base import CorruptEntry, StoreBackend, check_namespace, decode, encode, report_corrupt


class CacheConfig(BaseModel):
    """How a flow's generation cache behaves (the ``cache:`` block of a flow's store config)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = "default"
    """Cache namespace: one per project keeps projects apart; equal namespaces share results."""
    ttl_s: float | None = Field(default=None, gt=0)
    """Entries older than this many seconds are misses (None: they never expire)."""
    max_entries: int | None = Field(default=None, gt=0)
    """Size cap; past it the least recently used entries are evicted (None: no cap)."""


class CacheCounters(BaseModel):
    """What one cache object saw in this process (persistent counts are in ``Store.stats``)."""

    model_config = ConfigDict(extra="forbid")

    hits: int = 0
    misses: int = 0
    """Every lookup that returned nothing, expired and corrupt ones included."""
    expired: int = 0
    corrupt: int = 0
    puts: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float | None:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


class StoreGenerationCache:
    """A :class:`~forkpath.models.GenerationCache` over one namespace of a store.

    Made by :meth:`Store.generation_cache`; ``counters`` tells what it saw.
    """

    def __init__(
        self,
        backend: StoreBackend,
        namespace: str = "default",
        *,
        ttl_s: float | None = None,
        max_entries: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s is not None and not ttl_s > 0:
            raise ConfigError(f"cache ttl_s must be positive, got {ttl_s}")
        if max_entries is not None and max_entries < 1:
            raise ConfigError(f"cache max_entries must be at least 1, got {max_entries}")
        self.namespace = check_namespace(namespace)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.counters = CacheCounters()
        self._backend = backend
        self._clock = clock

    def __repr__(self) -> str:
        return f"StoreGenerationCache({self._backend.url!r}, namespace={self.namespace!r})"

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached result for ``key``, or None (missing, expired or unreadable)."""
        now = self._clock()
        raw = await self._backend.cache_get(self.namespace, _check(key), now)
        if raw is None:
            self.counters.misses += 1
            return None
        try:
            envelope = decode(raw, "generation")
            GenerateResult.model_validate(envelope.data)
        except (CorruptEntry, ValidationError) as e:
            self.counters.corrupt += 1
            self.counters.misses += 1
            await report_corrupt(self._backend, self.namespace, f"cache entry {key}", e)
            return None
        if envelope.expires_at is not None and envelope.expires_at <= now:
            self.counters.expired += 1
            self.counters.misses += 1
            return None
        self.counters.hits += 1
        data: dict[str, Any] = envelope.data
        return data

    async def put(self, key: str, value: dict[str, Any]) -> None:
        """Store a result under ``key`` (replacing what was there)."""
        now = self._clock()
        expires_at = now + self.ttl_s if self.ttl_s is not None else None
        body = encode("generation", value, expires_at=expires_at)
        evicted = await self._backend.cache_put(
            self.namespace, _check(key), body, now=now, ttl_s=self.ttl_s, max_entries=self.max_entries
        )
        self.counters.puts += 1
        self.counters.evictions += evicted


def _check(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 512:
        raise ConfigError(f"a cache key is a non-empty string of at most 512 characters, got {key!r:.80}")
    return key
