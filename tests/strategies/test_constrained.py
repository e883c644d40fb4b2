"""Strategies under a constraint, on SmolLM2: best-of-N candidates all parse, token tree search
branches only on allowed tokens, speculative decoding drafts and verifies under the same mask."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from forkpath import Task, task_messages
from forkpath.models import Constraint, constrained, get_model
from forkpath.store import open_store, prefix_key
from forkpath.strategies import Context, strategies
from forkpath.strategies._search import SearchTree

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 16},
        "people": {"type": "integer", "maximum": 10**9},
    },
    "required": ["city", "people"],
    "additionalProperties": False,
}
TASK = Task(id="t/0", prompt="Name a city and how many people live there, as JSON.", kind="text")
CODE = Task(id="c/0", prompt="Write a function f that returns a small number.", kind="code")
CODE_SHAPE = r"def f\(\):\n    return [0-9]{1,3}\n"


class Verdict(BaseModel):
    passed: bool
    score: float


class Records:
    """A stand-in verifier that records every candidate and passes none (so searches go on)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def verify(self, task: Task, candidate: str) -> Verdict:
        self.seen.append(candidate)
        return Verdict(passed=False, score=len(self.seen) % 3 / 3)


async def test_best_of_n_candidates_all_parse() -> None:
    model = constrained(get_model("local/smollm2-135m"), {"json_schema": SCHEMA})
    verifier = Records()
    best = strategies.create("best_of_n", n=4, temperature=1.0, max_tokens=48)
    result = await best(TASK, Context({"default": model}, verifier))
    assert len(result.candidates) == 4 and len(verifier.seen) == 4
    for candidate in result.candidates:
        value = json.loads(candidate.text)
        assert set(value) == {"city", "people"} and isinstance(value["people"], int)


async def test_token_tree_search_branches_only_on_allowed_tokens(tmp_path: Path) -> None:
    constraint = Constraint(regex=CODE_SHAPE)
    model = constrained(get_model("local/smollm2-135m"), constraint)
    store = open_store(str(tmp_path / "s.db"))
    search = strategies.create(
        "token_tree_search",
        step={"top_k": 3, "branch_at": "token"},
        max_generations=4,
        value={"max_tokens": 24},
    )
    result = await search(CODE, Context({"default": model}, Records(), store=store))
    assert result.candidates and all(constraint.accepts(c.text) for c in result.candidates)
    tree = SearchTree(store, result.info["namespace"])
    root = model.chat_prefix(task_messages(CODE))  # type: ignore[attr-defined]
    nodes = await tree.walk(await tree.get(prefix_key(root)))
    texts = {n.key: (n.parent, n.text) for n in nodes}

    def answer(key: str | None) -> str:
        out = ""
        while key is not None and texts[key][0] is not None:
            out, key = texts[key][1] + out, texts[key][0]
        return out

    branches = [answer(n.key) for n in nodes if n.parent is not None]
    assert len(branches) >= 3  # it did branch
    assert all(constraint.accepts_prefix(b) for b in branches), branches
    await store.aclose()


async def test_speculative_decoding_drafts_and_verifies_under_the_mask() -> None:
    prompts: set[tuple[int, ...]] = set()
    small = constrained(get_model("local/smollm2-135m"), {"json_schema": SCHEMA}, prompts=prompts)
    large = constrained(
        get_model("local/smollm2-135m", batch_invariant=True), {"json_schema": SCHEMA}, prompts=prompts
    )
    for temperature in (0.0, 0.9):
        spec = strategies.create(
            "speculative_decoding", draft_tokens=3, max_tokens=48, temperature=temperature
        )
        result = await spec(TASK, Context({"small": small, "large": large}))
        assert result.answer is not None and Constraint(json_schema=SCHEMA).accepts(result.answer), (
            result.answer
        )
