"""One registry recipe for every kind of component.

A component is a *factory*: a function whose parameters are its configuration and whose return
value is the object that does the work. Registering it records its name; creating it records
the arguments, so a YAML node, a trace line and a Python call all name it the same way::

    @strategies.register("best_of_n")
    def best_of_n(n: int = 8, verifier: str | None = None) -> Strategy: ...

    strategies.create("best_of_n", n=4)          # validated against the signature

A factory whose parameters were renamed or regrouped registers the old names with their new
place (``register("mcts", moved={"max_depth": "step.max_depth"})``): an old name is then refused
with a one-line error naming where it went, in a flow, through :meth:`create` and in a direct call.

Third-party packages add components through the entry-point group ``forkpath.<kind>``
(e.g. ``forkpath.strategies``); entry points are loaded the first time a name is missed.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Annotated, Any, Generic, TypeVar, get_type_hints

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, create_model

from forkpath._errors import ConfigError, UnknownNameError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registered(BaseModel):
    """How a component was made: the registry name and the arguments given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str
    params: dict[str, Any]


class Registry(Generic[T]):
    """Factories of one kind, by name."""

    def __init__(self, kind: str, *, noun: str | None = None) -> None:
        self.kind = kind
        self.noun = noun or kind
        """How one of them is called in messages (``verifier`` for the ``verifiers`` registry)."""
        self._factories: dict[str, Callable[..., T]] = {}
        self._moved: dict[str, dict[str, str]] = {}
        self._entry_points_loaded = False

    def register(
        self, name: str | None = None, *, moved: Mapping[str, str] | None = None
    ) -> Callable[[F], F]:
        """Decorator: register a factory under ``name`` (default: its function name).

        A factory function is wrapped so that what it makes records its name and arguments
        (:class:`Registered`) however it is called: through :meth:`create`, or directly.
        ``moved`` maps parameter names the factory no longer takes to their new place.
        """

        def decorate(factory: F) -> F:
            key = name or factory.__name__
            if key in self._factories and self._factories[key] is not factory:
                raise ConfigError(f"{self.kind} {key!r} is registered twice")
            self._moved[key] = dict(moved or {})
            made = self._recording(key, factory) if inspect.isfunction(factory) else factory
            self._factories[key] = made
            return made  # type: ignore[return-value]

        return decorate

    def moved(self, name: str) -> dict[str, str]:
        """Old parameter name -> its new place, for the factory registered as ``name``."""
        self.get(name)
        return dict(self._moved.get(name, {}))

    def _recording(self, key: str, factory: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def make(*args: Any, **kwargs: Any) -> T:
            moved = self._moved.get(key, {})
            for old in kwargs:
                if old in moved and old not in signature.parameters:
                    raise ConfigError(f"{self.kind} {key!r}: {_moved_message(old, moved[old])}")
            made = factory(*args, **kwargs)
            params = dict(signature.bind(*args, **kwargs).arguments)
            # Plain functions and frozen objects cannot carry it; they are still valid components.
            with contextlib.suppress(AttributeError, TypeError):
                made.registered = Registered(kind=self.kind, name=key, params=params)  # type: ignore[attr-defined]
            return made

        return make

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; raises :class:`UnknownNameError` naming close matches."""
        if name not in self._factories:
            self._load_entry_points()
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def params_model(self, name: str) -> type[BaseModel]:
        """A pydantic model of the factory's parameters (``extra="forbid"``), for validation and docs."""
        factory = self.get(name)
        fields: dict[str, Any] = {}
        # Resolves string annotations (from __future__ import annotations); keeps Annotated ranges.
        hints = get_type_hints(factory, include_extras=True)
        for pname, param in inspect.signature(factory).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = hints.get(pname, Any)
            default = param.default if param.default is not inspect.Parameter.empty else ...
            fields[pname] = (annotation, default)
        for old, new in self._moved.get(name, {}).items():
            if old not in fields:
                # Accepted only to be refused with its new place (not an "unknown parameter").
                fields[old] = (Annotated[Any, AfterValidator(_refuse(old, new))], None)
        model: type[BaseModel] = create_model(
            f"{name}_params",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        return model

    def validate(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Check ``params`` against the factory's signature; raise :class:`ConfigError` if wrong."""
        try:
            validated = self.params_model(name).model_validate(params)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
            raise ConfigError(f"{self.kind} {name!r}: {problems}") from None
        return {k: getattr(validated, k) for k in params}

    def create(self, name: str, **params: Any) -> T:
        """Validate ``params`` and call the factory."""
        factory = self.get(name)
        validated = self.validate(name, params)
        made = factory(**validated)
        # Record the arguments as given (the factory saw them validated); objects that cannot
        # carry it are still valid components.
        with contextlib.suppress(AttributeError, TypeError):
            made.registered = Registered(kind=self.kind, name=name, params=params)  # type: ignore[attr-defined]
        return made

    def make(self, spec: Any, *, base: type | None = None) -> T:
        """Build a component from a spec: a registry name, a mapping ``{"name": ..., **params}``,
        or (when ``base`` is given) an object that already is one.

        Example:
            >>> verifiers.make({"name": "python_tests", "limits": {"timeout_s": 5}})
        """
        if isinstance(spec, str):
            return self.create(spec)
        if isinstance(spec, Mapping):
            params = dict(spec)
            name = params.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(
                    f"a {self.kind} spec needs a 'name' naming a registered one; got {dict(spec)!r}"
                )
            return self.create(name, **params)
        if base is not None and isinstance(spec, base):
            return spec  # type: ignore[return-value]
        raise ConfigError(f"not a {self.noun} spec: {spec!r:.200} (give a name or a mapping with 'name')")

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=f"forkpath.{self.kind}"):
            if ep.name not in self._factories:
                self._factories[ep.name] = ep.load()

    def _unknown_message(self, name: str) -> str:
        import difflib

        known = sorted(self._factories)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known) or 'none'}"
        return f"unknown {self.kind} {name!r}{hint}"


def _moved_message(old: str, new: str) -> str:
    return f"`{old}` moved to `{new}`"


def _refuse(old: str, new: str) -> Callable[[Any], Any]:
    def refuse(value: Any) -> Any:
        raise ValueError(_moved_message(old, new))

    return refuse
