"""Choosing a store: URL forms, FORKPATH_STORE, the default file, and the flow config block."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from forkpath import ConfigError
from forkpath.models import FakeModel, GenerateRequest
from forkpath.store import RedisBackend, SQLiteBackend, StoreConfig, open_store, resolve_store_url

from .conftest import REDIS_URL, redis_unavailable


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORKPATH_STORE", raising=False)
    return tmp_path


async def test_no_url_and_no_env_means_the_default_file_here(in_tmp: Path) -> None:
    assert resolve_store_url(None) == f"sqlite://{in_tmp}/.forkpath/store.db"
    async with open_store() as store:
        assert isinstance(store.backend, SQLiteBackend)
        assert store.url == f"sqlite://{in_tmp}/.forkpath/store.db"
    assert (in_tmp / ".forkpath" / "store.db").is_file()


async def test_the_env_var_is_used_when_no_url_is_given(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORKPATH_STORE", str(in_tmp / "from-env.db"))
    assert resolve_store_url(None) == str(in_tmp / "from-env.db")
    assert resolve_store_url("explicit.db") == "explicit.db", "an explicit URL wins over the env var"
    async with open_store() as store:
        assert store.url == f"sqlite://{in_tmp}/from-env.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://{tmp}/a.db", "{tmp}/a.db"),
        ("sqlite:///{tmp}/sqlalchemy-style.db", "{tmp}/sqlalchemy-style.db"),
        ("sqlite://rel/b.db", "{tmp}/rel/b.db"),
        ("plain.db", "{tmp}/plain.db"),
        ("{tmp}/dir/c.db", "{tmp}/dir/c.db"),
    ],
)
async def test_sqlite_url_forms(in_tmp: Path, url: str, expected: str) -> None:
    async with open_store(url.format(tmp=in_tmp)) as store:
        assert isinstance(store.backend, SQLiteBackend)
        assert store.backend.path == Path(expected.format(tmp=in_tmp))
        assert Path(expected.format(tmp=in_tmp)).is_file()


@pytest.mark.redis
async def test_redis_urls_open_redis() -> None:
    if redis_unavailable():
        pytest.skip(str(redis_unavailable()))
    async with open_store(REDIS_URL) as store:
        assert isinstance(store.backend, RedisBackend) and store.url == REDIS_URL


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://localhost/db", "unknown store URL scheme 'postgres'"),
        ("sqlite://", "names no file"),
        ("redis://127.0.0.1:6379/notadb", "bad Redis URL"),
    ],
)
def test_malformed_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)


async def test_store_config_opens_and_makes_the_cache(in_tmp: Path) -> None:
    config = StoreConfig.model_validate({"url": "flow.db", "cache": {"namespace": "proj", "max_entries": 10}})
    async with config.open() as store:
        cache = config.generation_cache(store)
        assert cache is not None and (cache.namespace, cache.max_entries, cache.ttl_s) == ("proj", 10, None)
        model = FakeModel(cache=cache)
        await model.generate(GenerateRequest(prompt="hi", max_tokens=4))
        assert (await model.generate(GenerateRequest(prompt="hi", max_tokens=4))).cached
        assert config.model_copy(update={"cache": None}).generation_cache(store) is None, "per-flow opt-out"


def test_store_config_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        StoreConfig.model_validate({"url": "x.db", "cahce": {}})
    with pytest.raises(ValidationError, match="greater than 0"):
        StoreConfig.model_validate({"cache": {"max_entries": 0}})
