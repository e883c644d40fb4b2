"""The ranges of the CLI's real-number options.

Every number option declares what it accepts, so a value out of range is a one-line usage error
before the command does anything. Whole numbers use typer's ``min=``/``max=`` (click prints the
range in ``--help``); real numbers use :func:`real_option`, which also refuses ``nan`` and
``inf`` (click's float range lets ``nan`` through every bound) and shows its range in the help.
"""

from __future__ import annotations

import math
from typing import Any

import typer


def real_option(
    default: float | None,
    *names: str,
    help: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A ``typer.Option`` for a finite real number within the bounds (``None`` passes)."""
    above_low = "<" if low_open else "<="
    below_high = "<" if high_open else "<="
    if low is not None and high is not None:
        described = f"{low:g}{above_low}x{below_high}{high:g}"
    elif low is not None:
        described = f"x{'>' if low_open else '>='}{low:g}"
    elif high is not None:
        described = f"x{below_high}{high:g}"
    else:
        described = "finite numbers"

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise typer.BadParameter(f"{value:g} is not in the range {described}.")
        return value

    return typer.Option(default, *names, callback=check, help=f"{help}  [{described}]")
