"""Core types shared by every role: the task a flow works on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class IOCase(BaseModel):
    """One stdin/stdout test case of a competitive-programming task."""

    model_config = ConfigDict(extra="forbid")

    input: str
    output: str


class Task(BaseModel):
    """One problem: what to ask, and what a verifier checks the answer against.

    Code tasks carry tests in one of three shapes: a HumanEval ``test`` (a ``check(candidate)``
    function, with ``entry_point``), MBPP-style ``asserts``, or stdin/stdout ``io_cases``.
    Math tasks carry a reference ``answer``.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    """Stable id, e.g. ``HumanEval/0`` or ``gsm8k/12``."""
    prompt: str
    """The problem statement (for HumanEval: the function signature and docstring)."""
    kind: Literal["code", "math", "text"] = "text"
    entry_point: str | None = None
    """Name of the function under test (HumanEval style)."""
    test: str | None = None
    """HumanEval-style test code defining ``check(candidate)``."""
    asserts: list[str] = Field(default_factory=list)
    """MBPP-style assert statements, each run after the candidate code."""
    io_cases: list[IOCase] = Field(default_factory=list)
    """stdin/stdout cases; the candidate is run as a program once per case."""
    answer: str | None = None
    """Reference answer for math and text tasks."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything else the dataset carries (canonical solution, difficulty, ...)."""
