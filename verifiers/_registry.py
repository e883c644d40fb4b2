"""The verifier registry, and building a verifier from what a flow YAML or a caller gives.

A spec is a registry name (``"python_tests"``), a mapping with ``name`` and the factory's
parameters (``{"name": "python_tests", "limits": {"timeout_s": 5}}``) or a ready
:class:`Verifier`.
"""

from collections.abc import Mapping
from typing import Any, TypeAlias

from forkpath._errors import ConfigError
from forkpath._registry import Registry
from forkpath.verifiers._types import Verifier

verifiers: Registry[Verifier] = Registry("verifiers")
"""Verifier factories by name: ``python_tests``, ``math_answer``, ``model_judge``, ``ai_tests``,
``all_of``, ``weighted``, ``first_failure``."""

VerifierSpec: TypeAlias = str | Mapping[str, Any] | Verifier
"""A registry name, ``{"name": ..., **params}``, or a verifier object."""


def make_verifier(spec: VerifierSpec) -> Verifier:
    """Build a verifier from a spec.

    Example:
        >>> make_verifier({"name": "python_tests", "limits": {"timeout_s": 5}})
        >>> make_verifier({"name": "math_answer", "timeout_s": 2})
    """
    if isinstance(spec, str):
        return verifiers.create(spec)
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(
                f"a verifier spec needs a 'name' naming a registered verifier; got {dict(spec)!r}"
            )
        return verifiers.create(name, **params)
    if isinstance(spec, Verifier):
        return spec
    raise ConfigError(f"not a verifier spec: {spec!r} (give a name, a mapping with 'name', or a Verifier)")


def verifier_name(verifier: Verifier) -> str:
    """The registry name a verifier was created under, else its class name."""
    registered = getattr(verifier, "registered", None)
    return registered.name if registered is not None else type(verifier).__name__
