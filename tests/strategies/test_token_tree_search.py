"""token_tree_search: exact trees on a table model, the trajectory cache, branch points, resume, workers."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task, task_messages
from forkpath._trace import Tracer
from forkpath._tree_view import render_tree
from forkpath.models import FakeModel, GenerateRequest, GenerateResult, ModelCapabilities
from forkpath.store import Store, TrajectoryNode, open_store, prefix_key
from forkpath.strategies import Context
from forkpath.strategies._search import SearchTree
from forkpath.strategies._search_fakes import TableModel
from forkpath.strategies._search_params import SharingParams, TokenStepParams, TokenValueParams
from forkpath.strategies._token_tree_search import token_tree_search

TASK = Task(id="code/1", prompt="P", kind="code")
REDIS_URL = os.environ.get("FORKPATH_TEST_REDIS", "redis://127.0.0.1:6379/15")

TABLE = {
    "": {"a": 0.9, "x": 0.1},
    "a": {"b": 0.6, "c": 0.4},
    "ab": {"c": 0.7, "d": 0.3},
    "ac": {"": 1.0},
    "x": {"y": 1.0},
    "xy": {"": 1.0},
}


class Verdict(BaseModel):
    passed: bool
    score: float


class Rewards:
    """Fraction of tests passed, from a table of programs (0 for any other)."""

    def __init__(self, rewards: dict[str, float]) -> None:
        self.rewards = rewards
        self.seen: list[str] = []

    async def verify(self, task: Task, candidate: str) -> Verdict:
        self.seen.append(candidate)
        score = self.rewards.get(candidate, 0.0)
        return Verdict(passed=score == 1.0, score=score)


REWARDS = {"abd": 1.0, "abc": 0.5}


def root_key() -> str:
    """The root of a token tree: the chat prefix of the task's messages."""
    return prefix_key(TableModel({}).chat_prefix(task_messages(TASK)))


async def all_nodes(store: Store, namespace: str) -> list[TrajectoryNode]:
    tree = SearchTree(store, namespace)
    return await tree.walk(await tree.get(root_key()))


async def tree_of(store: Store, namespace: str) -> dict[str, tuple[int, float]]:
    """answer prefix -> (visits, value sum)."""
    nodes = await all_nodes(store, namespace)
    text = {n.key: (n.parent, n.text) for n in nodes}

    def prefix(key: str | None) -> str:
        out = ""
        while key is not None and text[key][0] is not None:
            out = text[key][1] + out
            key = text[key][0]
        return out

    return {prefix(n.key): (n.visits, round(n.value_sum, 6)) for n in nodes}


def tts(step: dict[str, Any] | None = None, **params: Any) -> Any:
    """Two children per node, branching at every token, unless told otherwise."""
    steps = TokenStepParams(**{"top_k": 2, "branch_at": "token", **(step or {})})
    return token_tree_search(**{"step": steps, **params})


async def test_exact_tree_with_the_trajectory_cache(tmp_path: Path) -> None:
    """PG-TD's P-UCB (c=4, c_base=10), hand-computed. Rollouts: 1 the root ("abc", 0.5); 2 a,
    3 b, 4 abc reuse the root's rollout (no call); abc is finished (no branch point left) and
    failed: solved, never selected again; 5 picks ac (P-UCB 1.818 against b's 1.409) and rolls
    it out ("ac", 0: finished and failed too); 6 picks a (1.396 against x's 0.567), then b (ac
    is solved), then abd (abc is solved), and rolls it out: passes. Three generations in all."""
    store = open_store(str(tmp_path / "s.db"))
    model = TableModel(TABLE)
    verifier = Rewards(REWARDS)
    with Tracer() as tracer:
        result = await tts()(TASK, Context({"default": model}, verifier, store=store))
    assert result.stopped == "early_stop" and result.answer == "abd" and result.passed
    assert model.calls == ["", "ac", "abd"]
    assert await tree_of(store, result.info["namespace"]) == {
        "": (6, 3.0),
        "a": (5, 2.5),
        "x": (0, 0.0),
        "ab": (3, 2.0),
        "ac": (1, 0.0),
        "abc": (1, 0.5),
        "abd": (1, 1.0),
    }
    info = result.info
    assert (info["rollouts"], info["generations"], info["reused"], info["nodes"]) == (6, 3, 3, 7)
    assert [(c.text, c.score) for c in result.candidates] == [("abc", 0.5), ("ac", 0.0), ("abd", 1.0)]
    assert verifier.seen == ["abc", "ac", "abd"]
    svg = render_tree(tracer.events, tmp_path / "t.svg").read_text()
    assert svg.count("<circle") == 7 and svg.count('stroke-width="3"') == 3 + 4  # 3 edges, 4 nodes
    await store.aclose()


async def test_without_the_cache_every_node_costs_a_rollout() -> None:
    model = TableModel(TABLE)
    result = await tts(sharing=SharingParams(reuse=False))(
        TASK, Context({"default": model}, Rewards(REWARDS))
    )
    assert result.answer == "abd" and result.info["reused"] == 0
    assert model.calls == ["", "a", "ab", "abc", "ac", "abd"]  # the same tree, twice the calls
    assert [c.text for c in result.candidates] == ["abc", "ac", "abd"]  # one candidate per program


async def test_text_prefixes_give_the_same_tree(tmp_path: Path) -> None:
    model = TableModel(TABLE)
    result = await tts(prefix="text")(TASK, Context({"default": model}, Rewards(REWARDS)))
    assert result.info["prefix"] == "text" and model.calls == ["", "ac", "abd"]
    assert result.info["rollouts"] == 6 and result.answer == "abd"


LINES = {
    "": {"x": 0.8, "y": 0.2},
    "x": {"=": 0.55, "+": 0.45},
    "x=": {"\n": 1.0},
    "x+": {"\n": 1.0},
    "x=\n": {"r": 0.7, "s": 0.3},
    "y": {"\n": 1.0},
}


async def children_texts(store: Store, namespace: str) -> dict[str, list[str]]:
    by_key = {n.key: n for n in await all_nodes(store, namespace)}
    return {n.text: [by_key[c].text for c in n.children] for n in by_key.values() if n.children}


async def test_line_branching_skips_uncertain_tokens_inside_a_line(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    model = TableModel(LINES)
    result = await tts(step={"branch_at": "line"}, max_rollouts=3, early_stop=False)(
        TASK, Context({"default": model}, Rewards({}), store=store)
    )
    # The root branches at the first token; "x" next branches at the next line's first token,
    # its children adding the rest of its line ("=\n") and the alternative.
    assert await children_texts(store, result.info["namespace"]) == {
        "": ["x", "y"],
        "x": ["=\nr", "=\ns"],
    }
    assert model.calls == [""]  # the root's rollout carried everything
    await store.aclose()


async def test_uncertain_branching_branches_only_where_the_model_hesitates(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    result = await tts(step={"branch_at": "uncertain", "uncertainty": 0.6}, max_rollouts=2, early_stop=False)(
        TASK, Context({"default": TableModel(LINES)}, Rewards({}), store=store)
    )
    texts = await children_texts(store, result.info["namespace"])
    assert texts[""] == ["x=", "x+"]  # 0.8 is sure enough; 0.55 is not
    await store.aclose()


async def test_budgets_stop_the_search_and_say_so() -> None:
    capped = await tts(max_generations=1)(TASK, Context({"default": TableModel(TABLE)}, Rewards(REWARDS)))
    assert capped.stopped == "budget" and capped.answer == "abc" and capped.info["generations"] == 1
    budget = Budget(BudgetLimits(max_calls=2))
    model = TableModel(TABLE)
    shared = await tts()(TASK, Context({"default": model}, Rewards(REWARDS), budget=budget))
    assert shared.stopped == "budget" and model.calls == ["", "ac"]
    few = await tts(max_rollouts=3)(TASK, Context({"default": TableModel(TABLE)}, Rewards(REWARDS)))
    assert few.stopped == "done" and few.info["rollouts"] == 3


async def test_resume_after_a_budget_stop(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    first = TableModel(TABLE)
    stopped = await tts(max_generations=1)(TASK, Context({"default": first}, Rewards(REWARDS), store=store))
    assert stopped.stopped == "budget"
    second = TableModel(TABLE)
    done = await tts()(TASK, Context({"default": second}, Rewards(REWARDS), store=store))
    assert done.answer == "abd" and second.calls == ["ac", "abd"]  # cold: 3 calls
    tree = await tree_of(store, done.info["namespace"])
    assert tree[""] == (6, 3.0) and tree["abd"] == (1, 1.0)
    await store.aclose()


KILLED_RUN = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pydantic import BaseModel
    from forkpath import Task
    from forkpath.store import open_store
    from forkpath.strategies import Context
    from forkpath.strategies._search_fakes import TableModel
    from forkpath.strategies._token_tree_search import token_tree_search

    class Killed(TableModel):
        async def _generate(self, request):
            if len(self.calls) == 1:
                os.kill(os.getpid(), signal.SIGKILL)  # dies in its second rollout
            return await super()._generate(request)

    class V(BaseModel):
        passed: bool
        score: float

    class R:
        async def verify(self, task, c):
            s = {"abd": 1.0, "abc": 0.5}.get(c, 0.0)
            return V(passed=s == 1.0, score=s)

    table = eval(sys.argv[2])
    store = open_store(sys.argv[1])
    strategy = token_tree_search(
        step={"top_k": 2, "branch_at": "token"}, sharing={"worker": "w-killed", "claim_ttl_s": 600}
    )
    asyncio.run(strategy(Task(id="code/1", prompt="P", kind="code"), Context({"default": Killed(table)}, R(), store=store)))
    """
)


async def test_resume_after_the_process_is_killed(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, db, repr(TABLE)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    store = open_store(db)
    model = TableModel(TABLE)
    # The same worker id takes its own claim back at once (another id would wait claim_ttl_s).
    result = await tts(sharing=SharingParams(worker="w-killed"))(
        TASK, Context({"default": model}, Rewards(REWARDS), store=store)
    )
    assert result.answer == "abd" and model.calls == ["abd"]  # cold: ["", "ac", "abd"]
    # The killed run counted the visit of "ac" before it died (virtual loss, never credited):
    # the restart sees it as visited with value 0, goes elsewhere (b: 1.537 against 1.037; abc is
    # solved) and finds "abd" in its first rollout.
    assert await tree_of(store, result.info["namespace"]) == {
        "": (6, 3.0), "a": (5, 2.5), "x": (0, 0.0), "ab": (3, 2.0), "ac": (1, 0.0), "abc": (1, 0.5), "abd": (1, 1.0)
    }  # fmt: skip
    unevaluated = [n.text for n in await all_nodes(store, result.info["namespace"]) if n.rollout is None]
    assert sorted(unevaluated) == ["c", "x"]
    await store.aclose()


class Slow(TableModel):
    def __init__(self, table: dict[str, dict[str, float]], log: list[str]) -> None:
        super().__init__(table, delay_s=0.003)
        self.log = log

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        result = await super()._generate(request)
        self.log.append(self.calls[-1])
        return result


def random_table(seed: int = 7, depth: int = 5) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    table: dict[str, dict[str, float]] = {}

    def add(prefix: str) -> None:
        if len(prefix) == depth:
            return
        weights = [rng.random() + 0.05 for _ in "abc"]
        total = sum(weights)
        table[prefix] = {ch: w / total for ch, w in zip("abc", weights, strict=True)}
        for ch in "abc":
            add(prefix + ch)

    add("")
    return table


class Similarity:
    async def verify(self, task: Task, candidate: str) -> Verdict:
        target = "cabac"
        score = sum(a == b for a, b in zip(candidate, target, strict=False)) / len(target)
        return Verdict(passed=candidate == target, score=score)


@pytest.mark.redis
async def test_two_workers_on_one_redis_never_repeat_a_rollout() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis at {REDIS_URL}: {e}")
    namespace = f"fptest-tts-{uuid.uuid4().hex[:10]}"
    stores = [open_store(REDIS_URL), open_store(REDIS_URL)]
    log: list[str] = []
    table = random_table()
    try:
        results = await asyncio.gather(
            *(
                tts(
                    step={"top_k": 3},
                    max_rollouts=40,
                    max_generations=100,
                    early_stop=False,
                    sharing=SharingParams(namespace=namespace, worker=f"w{i}"),
                )(TASK, Context({"default": Slow(table, log)}, Similarity(), store=stores[i]))
                for i in range(2)
            )
        )
        tree = await tree_of(stores[0], namespace)
        nodes = await all_nodes(stores[0], namespace)
    finally:
        await stores[0].clear(namespace, "all")
        for store in stores:
            await store.aclose()
    assert [r.info["rollouts"] for r in results] == [40, 40]
    assert tree[""][0] == 80  # every simulation's visit is there: none lost
    assert len(log) == len(set(log)) > 10, "a rollout was computed twice"
    own = sum(1 for n in nodes if n.rollout is not None and (n.rollout.verdict or {}).get("own"))
    assert sum(r.info["generations"] for r in results) == own == len(log)
    assert sum(r.info["evaluations"] for r in results) == sum(1 for n in nodes if n.rollout is not None)
    assert sum(r.info["waits"] for r in results) > 0


WORKER_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from pydantic import BaseModel
    from forkpath import Task
    from forkpath.store import open_store
    from forkpath.strategies import Context
    from forkpath.strategies._search_fakes import TableModel
    from forkpath.strategies._token_tree_search import token_tree_search

    class V(BaseModel):
        passed: bool
        score: float

    class Similarity:
        async def verify(self, task, c):
            return V(passed=c == "cabac", score=sum(a == b for a, b in zip(c, "cabac")) / 5)

    url, namespace, worker, table = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
    model = TableModel(table, delay_s=0.003)
    store = open_store(url)
    strategy = token_tree_search(
        step={"top_k": 3, "branch_at": "token"}, max_rollouts=30, max_generations=100, early_stop=False,
        sharing={"namespace": namespace, "worker": worker},
    )
    result = asyncio.run(strategy(Task(id="code/1", prompt="P", kind="code"), Context({"default": model}, Similarity(), store=store)))
    print(json.dumps({"calls": model.calls, "info": {k: result.info[k] for k in ("rollouts", "generations", "evaluations", "waits", "root")}}))
    """
)


@pytest.mark.redis
async def test_two_worker_processes_on_one_redis_share_one_tree() -> None:
    import json

    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis at {REDIS_URL}: {e}")
    namespace = f"fptest-tts-proc-{uuid.uuid4().hex[:10]}"
    table = repr(random_table())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_PROCESS, REDIS_URL, namespace, f"proc{i}", table],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    store = open_store(REDIS_URL)
    try:
        assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
        reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        tree = SearchTree(store, namespace)
        nodes = await tree.walk(await tree.get(reports[0]["info"]["root"]))
    finally:
        await store.clear(namespace, "all")
        await store.aclose()
    calls = [c for r in reports for c in r["calls"]]
    assert len(calls) == len(set(calls)), "two processes rolled out the same prefix"
    assert nodes[0].visits == sum(r["info"]["rollouts"] for r in reports) == 60
    own = sum(1 for n in nodes if n.rollout is not None and (n.rollout.verdict or {}).get("own"))
    assert own == len(calls) == sum(r["info"]["generations"] for r in reports)
    assert all(r["calls"] for r in reports), "both processes should have done some of the work"


async def test_capabilities_and_configuration_are_checked_first() -> None:
    with pytest.raises(ConfigError, match=r"step.top_k: Input should be greater than or equal to 1"):
        token_tree_search(step={"top_k": 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"step.uncertainty: uncertainty must be in \(0, 1\]"):
        token_tree_search(step={"uncertainty": 0.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"`top_k` moved to `step.top_k`"):
        token_tree_search(top_k=3)  # type: ignore[call-arg]
    weak = FakeModel("fake/weak")
    weak.capabilities = ModelCapabilities(top_logprobs=2, prefix_continuation=True)
    with pytest.raises(CapabilityError, match="token_tree_search needs top-3 logprobs"):
        await token_tree_search(step=TokenStepParams(top_k=3))(TASK, Context({"default": weak}, Rewards({})))
    with pytest.raises(ConfigError, match="token_tree_search needs a verifier"):
        await tts()(TASK, Context({"default": TableModel(TABLE)}))
    assert weak.calls == 0


def test_prefix_mode_follows_token_access() -> None:
    from forkpath.strategies._token_tree_search import _prefix_mode

    class NoTokens:  # an API model: no tokenize/detokenize/chat_prefix
        id = "api/x"

    with pytest.raises(CapabilityError, match="needs token access; api/x has none"):
        _prefix_mode(NoTokens(), "tokens", "token_tree_search")  # type: ignore[arg-type]
    assert _prefix_mode(NoTokens(), "auto", "token_tree_search") == "text"  # type: ignore[arg-type]
    assert _prefix_mode(TableModel({}), "auto", "token_tree_search") == "tokens"


SQUARE = Task(
    id="tiny/square",
    prompt='def square(x):\n    """Return x squared."""\n',
    kind="code",
    entry_point="square",
    asserts=["assert square(3) == 9", "assert square(-2) == 4"],
)


@pytest.mark.slow
async def test_over_an_openai_compatible_server_it_branches_at_lines(
    llama_server: str, tmp_path: Path
) -> None:
    """An API model (the llama.cpp server through litellm): text prefixes, line-level branching."""
    from forkpath.models import get_model
    from forkpath.verifiers import make_verifier

    model = get_model("openai/smollm2", api_base=llama_server)
    assert not hasattr(model, "chat_prefix")
    verifier = make_verifier("python_tests")
    store = open_store(str(tmp_path / "s.db"))
    result = await token_tree_search(
        step=TokenStepParams(top_k=2),
        value=TokenValueParams(max_tokens=48),
        max_generations=3,
        max_rollouts=6,
        early_stop=False,
    )(SQUARE, Context({"default": model}, verifier, store=store))
    assert (result.info["prefix"], result.info["branch_at"]) == ("text", "line")
    assert 1 <= result.info["generations"] <= 3 and result.info["rollouts"] <= 6
    tree = SearchTree(store, result.info["namespace"])
    nodes = await tree.walk(await tree.root(text=""))
    by_key = {n.key: n for n in nodes}
    for node in nodes[1:]:
        parent = by_key[node.parent or ""]
        record = (parent.rollout.verdict or {}) if parent.rollout else {}
        if record.get("own") and parent.parent is not None:
            # A child of a rolled-out node adds greedy tokens up to a line start, then its own token.
            assert record["line0"] or "\n" in node.text
    for candidate in result.candidates:
        again = await verifier.verify(SQUARE, candidate.text)
        assert (again.passed, again.score) == (candidate.passed, candidate.score)
    await store.aclose()


@pytest.mark.slow
async def test_on_a_local_coder_the_search_fixes_what_greedy_gets_wrong(tmp_path: Path) -> None:
    """HumanEval/1 with Qwen2.5-Coder-0.5B: the greedy body (the first rollout) fails the tests;
    a second rollout, from the top-k alternative at an early token, passes them."""
    from forkpath import humaneval_task
    from forkpath.models import get_model
    from forkpath.verifiers import make_verifier

    model = get_model("local/qwen2.5-coder-0.5b", n_threads=1)
    verifier = make_verifier("python_tests")
    task = humaneval_task(1)
    store = open_store(str(tmp_path / "s.db"))
    with Tracer() as tracer:
        result = await token_tree_search(
            step=TokenStepParams(top_k=3),
            value=TokenValueParams(max_tokens=384),
            max_generations=3,
            answer_prefix="```python\n{prompt}",
        )(task, Context({"default": model}, verifier, store=store))
    greedy, *others = result.candidates
    assert greedy.passed is False and others, "the greedy body should fail here"
    assert result.passed and result.stopped == "early_stop"
    assert 2 <= result.info["generations"] <= 3 and result.info["reused"] >= 1
    assert result.usage[model.id].calls == result.info["generations"]
    tree = SearchTree(store, result.info["namespace"])
    nodes = await tree.walk(await tree.get(result.info["root"]))
    own = [n for n in nodes if n.rollout is not None and (n.rollout.verdict or {}).get("own")]
    assert len(own) == result.info["generations"]
    for candidate in result.candidates:
        assert candidate.text.startswith("```python\n" + task.prompt)
        again = await verifier.verify(task, candidate.text)
        assert (again.passed, again.score) == (candidate.passed, candidate.score)
    page = render_tree(tracer.events, tmp_path / "tree.html").read_text()
    assert page.count("<circle") == len(nodes)
    await store.aclose()


async def test_a_solved_tree_ends_the_search(tmp_path: Path) -> None:
    """MCTS-Solver: no program passes, so every finished node (no branch point left) is failed
    once evaluated and never selected again; nodes whose children all failed fail too, and
    when the root has failed the search ends long before its rollouts run out."""
    store = open_store(str(tmp_path / "s.db"))
    model = TableModel(TABLE)
    result = await tts(max_rollouts=50, early_stop=False)(
        TASK, Context({"default": model}, Rewards({}), store=store)
    )
    assert result.stopped == "done" and result.passed is False
    nodes = await all_nodes(store, result.info["namespace"])
    finished = [n for n in nodes if n.rollout is not None and not (n.rollout.verdict or {}).get("branches")]
    assert finished and all(n.visits == 1 for n in finished), [(n.text, n.visits) for n in finished]
    assert all(n.rollout is not None for n in nodes)  # every node evaluated: the tree is exhausted
    assert (nodes[0].rollout.verdict or {}).get("solved") == "failed"  # type: ignore[union-attr]
    assert result.info["rollouts"] == len(nodes) < 50  # one rollout per node, none repeated
    await store.aclose()
