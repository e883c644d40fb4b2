"""The verifier registry, and building a verifier from what a flow YAML or a caller gives.

A spec is a registry name (``"python_tests"``), a mapping with ``name`` and the factory's
parameters (``{"name": "python_tests", "limits": {"timeout_s": 5}}``) or a ready
:class:`Verifier`.
"""

from collections.abc import Mapping
from typing import Any, TypeAlias

from forkpath._registry import Registry
from forkpath.verifiers._types import Verifier

verifiers: Registry[Verifier] = Registry("verifiers", noun="verifier")
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
    return verifiers.make(spec, base=Verifier)


def verifier_name(verifier: Verifier) -> str:
    """The registry name a verifier was created under, else its class name."""
    registered = getattr(verifier, "registered", None)
    return registered.name if registered is not None else type(verifier).__name__
