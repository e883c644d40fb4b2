"""The registry recipe: names, validated parameters, provenance, close-match hints."""

from __future__ import annotations

import pytest

from forkpath import ConfigError, Registry, UnknownNameError


class Thing:
    def __init__(self, n: int, label: str) -> None:
        self.n, self.label = n, label


def make_registry() -> Registry[Thing]:
    things: Registry[Thing] = Registry("things")

    @things.register("widget")
    def widget(n: int = 2, label: str = "w") -> Thing:
        return Thing(n, label)

    return things


def test_create_validates_and_records_provenance() -> None:
    things = make_registry()
    made = things.create("widget", n=5)
    assert (made.n, made.label) == (5, "w")
    assert made.registered.name == "widget" and made.registered.params == {"n": 5}  # type: ignore[attr-defined]
    assert things.create("widget", n="7").n == 7  # coerced by the signature's type


def test_wrong_parameters_are_config_errors() -> None:
    things = make_registry()
    with pytest.raises(ConfigError, match="things 'widget': n: Input should be a valid integer"):
        things.create("widget", n="many")
    with pytest.raises(ConfigError, match="things 'widget': colour: Extra inputs are not permitted"):
        things.create("widget", colour="red")


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown things 'widgit'; did you mean widget"):
        make_registry().get("widgit")
    with pytest.raises(ConfigError, match="registered twice"):
        things = make_registry()

        @things.register("widget")
        def other() -> Thing:
            return Thing(0, "")
