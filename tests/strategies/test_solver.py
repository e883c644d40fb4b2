"""MCTS-Solver: a finished node is solved; a failed one is never selected again, a passing one
ends the search, and a node whose children all failed has failed too. The same rule holds in
every search that selects among children (mcts and token_tree_search)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forkpath import Task
from forkpath._datasets import humaneval_task
from forkpath.models import FakeModel
from forkpath.store import open_store
from forkpath.strategies import Context
from forkpath.strategies._mcts import mcts
from forkpath.strategies._search import SearchTree
from forkpath.strategies._search_params import StepParams
from forkpath.verifiers import make_verifier

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

PREFIX = "```python\n{prompt}"


def _script(task: Task) -> dict[str, list[str]]:
    """HumanEval/1 as a model that wants to close the code block at once.

    Its greedy answer is the empty body (a finished answer that fails the tests, and a short
    one, so its step has by far the highest prior); sampled, it starts the canonical solution
    or ``return []``. Keys are matched in order, the most specific first.
    """
    solution: str = task.metadata["canonical_solution"]
    first, rest = solution.split("\n", 1)
    return {
        f"{first}\n": [rest + "```\n"],
        "    return []\n": ["```\n"],
        task.entry_point or "": ["```\n", solution + "```\n", "    return []\n```\n"],
    }


async def _nodes(store: Any, namespace: str) -> dict[str, tuple[int, bool | None]]:
    """The text a node adds -> (visits, passed) of every node under the root."""
    tree = SearchTree(store, namespace)
    nodes = await tree.walk(await tree.root(text=""))
    return {
        n.text: (n.visits, (n.rollout.verdict or {}).get("passed") if n.rollout else None) for n in nodes[1:]
    }


async def test_mcts_never_selects_a_failed_finished_child_again(tmp_path: Path) -> None:
    """The issue's run: PUCT, 8 simulations on HumanEval/1. The finished, failing ``"```"``
    child has a prior near 1; before the fix it took 7 of the 8 simulations and its siblings
    were never tried. Solved, it is visited once. Simulations now: 1 the root (greedy: fails);
    2 the ``"```"`` child (finished, fails: solved); 3 ``return []`` (the shorter sibling, so
    the higher prior: its rollout fails); 4 ``return []`` again (PUCT still prefers it), which
    expands into its one child ``"```"``: finished, fails, so ``return []`` has failed too;
    5 the canonical first line, whose rollout passes."""
    task = humaneval_task(1)
    model = FakeModel("fake/he1", script=_script(task), confidence=0.5)
    store = open_store(str(tmp_path / "s.db"))
    strategy = mcts(
        max_simulations=8,
        selection="puct",
        answer_prefix=PREFIX,
        step=StepParams(expansion_width=3, temperature=1.0),
    )
    result = await strategy(task, Context({"default": model}, make_verifier("python_tests"), store=store))
    nodes = await _nodes(store, result.info["namespace"])
    assert nodes["```\n"] == (1, False), nodes  # evaluated once, then never selected again
    assert nodes["    result = []\n"][1] is True
    assert result.passed and result.stopped == "early_stop"
    assert result.info["iterations"] == 5, (nodes, result.info)
    assert nodes["    return []\n"] == (2, False)
    tree = SearchTree(store, result.info["namespace"])
    root = await tree.get((await tree.root(text="")).key)
    kids = {n.text: n for n in await tree.children(root)}
    assert (kids["    return []\n"].rollout.verdict or {}).get("solved") == "failed"  # type: ignore[union-attr]
    await store.aclose()


async def test_mcts_stops_when_every_child_has_failed(tmp_path: Path) -> None:
    """Every answer fails: once each finished node is evaluated, the root's children have all
    failed, so the root has failed and the search ends before its simulations run out."""
    task = humaneval_task(1)
    first = next(iter(_script(task)))
    script = {"    return None\n": ["```\n"], first: ["    return None\n```\n"], **_script(task)}
    script[first] = ["    return None\n```\n"]  # the canonical start now leads to a wrong answer
    model = FakeModel("fake/he1", script=script, confidence=0.5)
    store = open_store(str(tmp_path / "s.db"))
    strategy = mcts(
        max_simulations=40,
        selection="puct",
        answer_prefix=PREFIX,
        step=StepParams(expansion_width=3, temperature=1.0),
    )
    result = await strategy(task, Context({"default": model}, make_verifier("python_tests"), store=store))
    assert result.passed is False and result.stopped == "done"
    assert result.info["iterations"] < 40
    tree = SearchTree(store, result.info["namespace"])
    nodes = await tree.walk(await tree.root(text=""))
    finished = [n for n in nodes if (n.rollout.verdict or {}).get("final")] if nodes else []
    assert finished and all(n.visits == 1 for n in finished), [(n.text, n.visits) for n in finished]
    assert (nodes[0].rollout.verdict or {}).get("solved") == "failed"
    await store.aclose()
