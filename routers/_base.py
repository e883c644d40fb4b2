"""The router protocol: features of the generation state in, a decision out.

A router looks at named features of where generation stands (the small model's uncertainty at
one token, over a window, or over a whole answer) and decides whether the small model keeps
going or hands something to the large model: one token, a segment, or the whole request::

    router = make_router({"name": "entropy", "threshold": 0.6})
    decision = await router.route({"entropy": 1.2, "top1": 0.41})
    decision.routed, decision.handover   # True, "token"

Every router here is a score and a threshold, so it can be calibrated to a target rate
(:mod:`forkpath.routers._calibrate`), saved as a small JSON file and loaded back
(:func:`save_router`, :func:`load_router`). Factories are registered by name in
:data:`routers`; a strategy's ``router`` parameter takes a name, a mapping with ``name`` and
parameters, a path to a saved router, or a router object (:func:`make_router`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from forkpath._errors import ConfigError
from forkpath._registry import Registry

Handover = Literal["keep", "token", "segment", "request"]
"""What a decision hands to the large model: nothing (``keep``), one token, a segment, the request."""

Direction = Literal["above", "below"]
"""``above``: route when the score is at or above the threshold; ``below``: when it is under it."""


@dataclass(frozen=True)
class Decision:
    """One routing decision.

    Attributes:
        handover: ``keep`` (the small model goes on) or what goes to the large model.
        score: the router's score for these features (entropy, probability, log-probability...).
        threshold: the threshold the score was compared with.
    """

    handover: Handover
    score: float
    threshold: float

    @property
    def routed(self) -> bool:
        """True when something goes to the large model."""
        return self.handover != "keep"


@runtime_checkable
class Router(Protocol):
    """Decides, from named features, whether the large model takes over.

    Attributes:
        name: the router's name (its registry name or ``logistic``), used in trace events.
        handover: what a positive decision hands over (``token``, ``segment`` or ``request``).
        threshold: the calibrated threshold of :meth:`score`.
        direction: whether high (``above``) or low (``below``) scores route.
    """

    name: str
    handover: Handover
    threshold: float
    direction: Direction

    @property
    def features(self) -> tuple[str, ...]:
        """The feature names :meth:`score` reads."""
        ...

    def score(self, features: Mapping[str, float]) -> float:
        """The number compared with the threshold (pure; used for calibration)."""
        ...

    def with_threshold(self, threshold: float, **calibration: Any) -> Router:
        """A copy with a new threshold, recording how it was calibrated."""
        ...

    def decide(self, features: Mapping[str, float]) -> Decision:
        """The decision, synchronously (for calibration over many rows)."""
        ...

    async def route(self, features: Mapping[str, float]) -> Decision:
        """Decide for one position, window or answer (the method strategies call)."""
        ...


routers: Registry[Router] = Registry("routers", noun="router")
"""Router factories by name: ``entropy``, ``top1``, ``margin``, ``window_entropy``, ``chow_sum``,
``chow_mean``, ``chow_quantile``, ``verdict``, ``threshold`` and ``file`` (a saved router)."""

RouterSpec = str | Mapping[str, Any] | Router
"""A registry name, a path to a saved router (``.json``), ``{"name": ..., **params}``, or a router."""


def make_router(spec: RouterSpec) -> Router:
    """Build a router from a spec.

    Example:
        >>> make_router("entropy")
        >>> make_router({"name": "top1", "threshold": 0.4})
        >>> make_router("runs/router.json")
    """
    if isinstance(spec, str) and (spec.endswith(".json") or Path(spec).is_file()):
        return load_router(spec)
    return routers.make(spec, base=Router)


def save_router(router: Router, path: str | Path) -> Path:
    """Write ``router`` as a small JSON file (threshold, weights, how it was calibrated)."""
    from forkpath.routers._learned import router_file_adapter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        body = router_file_adapter.dump_python(router, mode="json")  # type: ignore[arg-type]
    except Exception as e:  # pydantic raises its own types for objects it cannot serialise
        raise ConfigError(f"cannot save router {router!r}: only the built-in router types are saved") from e
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


def load_router(path: str | Path) -> Router:
    """Read a router saved by :func:`save_router`; raise :class:`ConfigError` naming the file."""
    from pydantic import ValidationError

    from forkpath.routers._learned import router_file_adapter

    path = Path(path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: router file not found") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a router file ({e})") from None
    try:
        router: Router = router_file_adapter.validate_python(body)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{path}: not a valid router file: {problems}") from None
    return router
