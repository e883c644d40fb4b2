"""Parameter types with their real ranges, for factory signatures.

A factory's parameters are its configuration, and the registry validates a call against the
signature (pydantic), so a range written in the signature is a ``file:line`` error in a flow
instead of a crash deep inside a run::

    @strategies.register("best_of_n")
    def best_of_n(n: Count = 8, temperature: Temperature = 0.8, max_tokens: Tokens = 512): ...

Numbers here refuse booleans (YAML reads ``yes``/``on``/``true`` as booleans, and pydantic
would otherwise read ``n: true`` as 1) and floats refuse ``.nan`` and ``.inf``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

MAX_TOKENS = 1_048_576
"""The most tokens any one answer, step or reply may ask for (the largest context a model loads)."""
MAX_SAMPLES = 10_000
"""The most samples, candidates or rounds one parameter may ask for: far beyond any useful
setting, low enough that a typo cannot ask for a billion model calls or futures."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


_Number = BeforeValidator(_not_bool)

Int = Annotated[int, _Number]
"""An integer that is not a boolean; add the range: ``Annotated[Int, Field(ge=2, le=100)]``."""
Float = Annotated[float, _Number, Field(allow_inf_nan=False)]
"""A finite number that is not a boolean; add the range: ``Annotated[Float, Field(gt=0)]``."""
Count = Annotated[int, _Number, Field(ge=1, le=MAX_SAMPLES)]
"""How many of something, at least one (samples, rounds, candidates, attempts)."""
CountOrZero = Annotated[int, _Number, Field(ge=0, le=MAX_SAMPLES)]
"""How many of something, where 0 means none (AI tests, fix calls, retries, hold tokens)."""
Tokens = Annotated[int, _Number, Field(ge=1, le=MAX_TOKENS)]
"""A number of tokens, at least one."""
Temperature = Annotated[float, _Number, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
"""A sampling temperature: 0 is greedy."""
Probability = Annotated[float, _Number, Field(ge=0.0, le=1.0)]
"""A probability or a fraction, in [0, 1]."""
TopP = Annotated[float, _Number, Field(gt=0.0, le=1.0)]
"""Nucleus sampling mass, in (0, 1] (1: off)."""
TopK = Annotated[int, _Number, Field(ge=0, le=100)]
"""Alternatives per token to return (0: none; local models return at most 100)."""
Seed = Annotated[int, _Number, Field(ge=0)]
"""A sampling seed: any non-negative integer (a flow adds its visit count to it)."""
NonNegative = Annotated[float, _Number, Field(ge=0.0, allow_inf_nan=False)]
"""A finite number at least 0 (an entropy in nats, a tolerance)."""
Finite = Annotated[float, _Number, Field(allow_inf_nan=False)]
"""Any finite number (a log-probability threshold)."""
Seconds = Annotated[float, _Number, Field(gt=0.0, le=86_400.0, allow_inf_nan=False)]
"""A positive duration in seconds, at most a day."""


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise ValueError("expected a number, got .nan")
    return value


Threshold = Annotated[float, _Number, AfterValidator(_not_nan)]
"""A threshold a score is compared with: any number but NaN. Out-of-range values are meaningful
(an entropy threshold of -1 always triggers, ``.inf`` never does)."""

__all__ = [
    "MAX_SAMPLES",
    "MAX_TOKENS",
    "Count",
    "CountOrZero",
    "Finite",
    "Float",
    "Int",
    "NonNegative",
    "Probability",
    "Seconds",
    "Seed",
    "Temperature",
    "Threshold",
    "Tokens",
    "TopK",
    "TopP",
]
