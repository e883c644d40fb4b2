"""Fixtures of the verifier tests: one sandbox for the session, short limits, data paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from forkpath.verifiers import Limits, Sandbox

REPO = Path(__file__).resolve().parents[2]
GSM8K = next(
    (
        p
        for p in (REPO / "forkpath/data/gsm8k/test.jsonl", Path("/work/shared/data/gsm8k/test.jsonl"))
        if p.exists()
    ),
    None,
)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A sandbox shared by the session (its fork server starts once)."""
    box = Sandbox(Limits(timeout_s=5))
    yield box
    box.close()


@pytest.fixture
def limits() -> Limits:
    """Short limits: hostile candidates should not cost the suite much time."""
    return Limits(timeout_s=3)
