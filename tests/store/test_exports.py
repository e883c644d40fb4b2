"""The public API of forkpath.store, pinned: changing it is a deliberate act."""

from __future__ import annotations

from typing import get_args, get_origin

import forkpath.store


def test_public_names_are_pinned() -> None:
    assert sorted(forkpath.store.__all__) == [
        "CacheConfig",
        "CacheCounters",
        "ClearWhat",
        "DEFAULT_PATH",
        "ENV_VAR",
        "FORMAT_VERSION",
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


def test_every_public_name_exists_and_is_documented() -> None:
    for name in forkpath.store.__all__:
        obj = getattr(forkpath.store, name)
        if callable(obj) and get_origin(obj) is None:  # type aliases are documented in _base
            assert obj.__doc__, f"{name} has no docstring"


def test_the_cache_satisfies_the_model_layers_protocol(tmp_path: object) -> None:
    from forkpath.models import GenerationCache

    store = forkpath.store.open_store(f"{tmp_path}/s.db")
    assert isinstance(store.generation_cache("ns"), GenerationCache)


def test_the_cli_offers_exactly_the_clear_areas_of_the_api() -> None:
    from forkpath._cli._store import Area

    assert get_args(forkpath.store.ClearWhat) == ("cache", "trajectories", "results", "all")
    assert tuple(a.value for a in Area) == get_args(forkpath.store.ClearWhat)
