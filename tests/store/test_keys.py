"""Prefix keys are canonical: one prefix, one key, however it was chunked or reached."""

from __future__ import annotations

import pytest

from forkpath import ConfigError
from forkpath.store import extend_key, prefix_key


def test_a_key_depends_only_on_the_prefix() -> None:
    whole = prefix_key([5, 6, 7, 8])
    assert (
        whole
        == extend_key(prefix_key([5]), tokens=[6, 7, 8])
        == extend_key(prefix_key([5, 6]), tokens=[7, 8])
    )
    assert whole == extend_key(extend_key(prefix_key([]), tokens=[5, 6]), tokens=[7, 8])
    assert prefix_key(text="héllo wörld") == extend_key(prefix_key(text="hél"), text="lo wörld")
    assert len(whole) == 32 and int(whole, 16) >= 0


def test_different_prefixes_have_different_keys() -> None:
    keys = {
        prefix_key([1, 2]),
        prefix_key([2, 1]),
        prefix_key([12]),
        prefix_key([1, 2, 0]),
        prefix_key([]),
        prefix_key(text=""),
        prefix_key(text="12"),
        prefix_key([-1]),
        prefix_key([2**40]),
    }
    assert len(keys) == 9


def test_bad_prefixes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one of tokens and text"):
        prefix_key()
    with pytest.raises(ConfigError, match="64-bit"):
        prefix_key([2**70])
    with pytest.raises(ConfigError, match="not a prefix key"):
        extend_key("xyz", tokens=[1])
