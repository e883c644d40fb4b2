"""mcts over steps on the fake model: exact trees, budgets, resume, judges, two workers on Redis."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from forkpath import Budget, BudgetLimits, CapabilityError, ConfigError, Task
from forkpath._trace import Tracer
from forkpath._tree_view import render_tree
from forkpath.models import FakeModel, GenerateRequest, GenerateResult, ModelCapabilities
from forkpath.store import Store, open_store
from forkpath.strategies import Context
from forkpath.strategies._mcts import mcts
from forkpath.strategies._search import SearchTree
from forkpath.strategies._search_params import SharingParams, StepParams, ValueParams

TASK = Task(id="t/1", prompt="Q?", kind="text")
REDIS_URL = os.environ.get("FORKPATH_TEST_REDIS", "redis://127.0.0.1:6379/15")

# confidence=1.0: every scripted token has logprob 0, so drafted steps get equal priors
# (the exact trees below do not hinge on noise); numpy warns on log(0).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SCRIPT = {
    "assistant: A\nB1\n": [""],
    "assistant: A\nB2\n": [""],
    "assistant: A\n": ["B1\n", "B2\n"],
    "assistant: C\n": ["D\n"],
    "user: Q?": ["A\nB1\n", "C\n"],
}


class Verdict(BaseModel):
    passed: bool
    score: float


class Target:
    """Passes one answer; half marks for a right first line."""

    def __init__(self, answer: str = "A\nB2\n") -> None:
        self.answer = answer
        self.seen: list[str] = []

    async def verify(self, task: Task, candidate: str) -> Verdict:
        self.seen.append(candidate)
        if candidate == self.answer:
            return Verdict(passed=True, score=1.0)
        first = self.answer.split("\n", 1)[0]
        return Verdict(passed=False, score=0.5 if candidate.startswith(first + "\n") else 0.0)


class CountingFake(FakeModel):
    """FakeModel that records each request's prompt and can pause (so workers interleave)."""

    def __init__(self, script: dict[str, list[str]], *, delay_s: float = 0.0, log: list[str] | None = None):
        super().__init__("fake/m", script=script, confidence=1.0)
        self.delay_s = delay_s
        self.log = log if log is not None else []
        self.on_call: Callable[[int], None] | None = None

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        result = await super()._generate(request)
        prompt = self._prompt_text(request.messages or ())
        self.log.append(f"{prompt}|{request.temperature}|{request.sample_index}|{request.max_tokens}")
        if self.on_call:
            self.on_call(self.calls)
        return result


async def tree_of(store: Store, namespace: str) -> dict[str, tuple[int, float]]:
    """partial answer -> (visits, value sum) of every node."""
    tree = SearchTree(store, namespace)
    nodes = await tree.walk(await tree.root(text=""))
    text = {n.key: n.text for n in nodes}
    parent = {n.key: n.parent for n in nodes}

    def partial(key: str | None) -> str:
        out = ""
        while key is not None and parent[key] is not None:
            out = text[key] + out
            key = parent[key]
        return out

    return {partial(n.key): (n.visits, round(n.value_sum, 6)) for n in nodes}


def search(step: dict[str, Any] | None = None, **params: Any) -> Any:
    """mcts with the small tree of these tests: two children per node, sampled at temperature 1."""
    steps = StepParams(**{"expansion_width": 2, "temperature": 1.0, **(step or {})})
    return mcts(**{"max_simulations": 12, "c": 1.0, "step": steps, **params})


async def test_exact_tree_on_the_fake_model(tmp_path: Path) -> None:
    """Hand-computed with PUCT (c=1, equal priors). Simulations:
    1 evaluates the root: greedy rollout "A\\nB1\\n", 0.5;  2 expands the root into A (its
    greedy step, read from the rollout) and C (sampled), selects A (a tie: the first), evaluated
    from the root's rollout (reused, no call);  3 expands A into B1 (the greedy step, the last
    of the rollout: a complete answer, verified without a call) and B2, selects B1;
    4 selects C (PUCT 0.866 against A's 0.789) and rolls it out: 0.0;  5 selects A (0.833
    against C's 0.5), where B1 is solved (a finished answer that failed: never selected again),
    so B2, rolls it out: passes, 1.0: early stop. Five calls.
    """
    store = open_store(str(tmp_path / "s.db"))
    model = CountingFake(SCRIPT)
    verifier = Target()
    with Tracer() as tracer:
        result = await search()(TASK, Context({"default": model}, verifier, store=store))
    assert result.stopped == "early_stop" and result.answer == "A\nB2\n" and result.passed
    assert await tree_of(store, result.info["namespace"]) == {
        "": (5, 2.5),
        "A\n": (3, 2.0),
        "C\n": (1, 0.0),
        "A\nB1\n": (1, 0.5),
        "A\nB2\n": (1, 1.0),
    }
    info = result.info
    assert (info["iterations"], info["generations"], info["reused"], info["evaluations"]) == (5, 5, 1, 5)
    assert model.calls == 5 and result.usage["fake/m"].calls == 5
    assert model.log == [  # prompt | temperature | sample index | max tokens
        "user: Q?|0.0|0|512",  # the root's rollout
        "user: Q?|1.0|1|96",  # the root's sampled step (its greedy step came with the rollout)
        "user: Q?\nassistant: A\n|1.0|1|96",
        "user: Q?\nassistant: C\n|0.0|0|512",
        "user: Q?\nassistant: A\nB2\n|0.0|0|512",
    ]
    assert [c.text for c in result.candidates] == ["A\nB1\n", "C\nD\n", "A\nB2\n"]
    assert [c.score for c in result.candidates] == [0.5, 0.0, 1.0]
    assert verifier.seen == ["A\nB1\n", "C\nD\n", "A\nB2\n"]  # the reward cache: each answer once
    # The trace ends with every node's final numbers and the chosen path.
    end = [e for e in tracer.events if e.type == "search_path"][-1]
    assert end.path == [f"{end.search}:{k}" for k in result.info["path"]]  # type: ignore[union-attr]
    page = render_tree(tracer.events, tmp_path / "tree.html").read_text()
    assert page.count("<circle") == 5 and "A⏎B2⏎" not in page and "B2⏎" in page
    await store.aclose()


async def test_uct_tries_every_child_before_revisiting(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    result = await search(selection="uct", early_stop=False, max_simulations=4)(
        TASK, Context({"default": CountingFake(SCRIPT)}, Target(), store=store)
    )
    tree = await tree_of(store, result.info["namespace"])
    # simulation 2 takes A, 3 takes C (unvisited first), 4 returns to A (higher mean value)
    assert tree[""] == (4, 1.5) and tree["A\n"] == (2, 1.0) and tree["C\n"] == (1, 0.0)
    assert result.stopped == "done" and result.answer == "A\nB1\n"
    await store.aclose()


async def test_budget_stops_with_the_best_so_far() -> None:
    model = CountingFake(SCRIPT)
    budget = Budget(BudgetLimits(max_calls=4))
    result = await search()(TASK, Context({"default": model}, Target(), budget=budget))
    assert result.stopped == "budget" and model.calls == 4
    assert result.answer == "A\nB1\n" and result.candidates[result.chosen or 0].score == 0.5
    capped = await search(max_generations=2)(TASK, Context({"default": CountingFake(SCRIPT)}, Target()))
    assert capped.stopped == "budget" and capped.info["generations"] == 2


async def test_resume_after_a_budget_stop_needs_fewer_calls_than_a_cold_run(tmp_path: Path) -> None:
    cold = await search()(TASK, Context({"default": CountingFake(SCRIPT)}, Target()))
    store = open_store(str(tmp_path / "s.db"))
    first = await search(max_generations=4)(
        TASK, Context({"default": CountingFake(SCRIPT)}, Target(), store=store)
    )
    assert first.stopped == "budget"
    again = CountingFake(SCRIPT)
    resumed = await search()(TASK, Context({"default": again}, Target(), store=store))
    assert resumed.stopped == "early_stop" and resumed.answer == cold.answer
    assert (cold.info["generations"], first.info["generations"], again.calls) == (5, 4, 1)
    assert await tree_of(store, resumed.info["namespace"]) == {
        "": (5, 2.5), "A\n": (3, 2.0), "C\n": (1, 0.0), "A\nB1\n": (1, 0.5), "A\nB2\n": (1, 1.0)
    }  # fmt: skip
    await store.aclose()


async def test_resume_after_the_search_is_cancelled_midway(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    killed = CountingFake(SCRIPT, delay_s=0.01)
    fourth = asyncio.Event()
    killed.on_call = lambda n: fourth.set() if n == 4 else None
    run = asyncio.ensure_future(search()(TASK, Context({"default": killed}, Target(), store=store)))
    await fourth.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    again = CountingFake(SCRIPT)
    resumed = await search()(TASK, Context({"default": again}, Target(), store=store))
    assert resumed.passed and killed.calls + again.calls >= 5 and again.calls < 5
    tree = await tree_of(store, resumed.info["namespace"])
    # Visits add up: the root's first simulation plus its children's, none lost to the kill.
    assert tree[""][0] == 1 + sum(v for k, (v, _) in tree.items() if k.count("\n") == 1)
    await store.aclose()


async def test_a_search_that_already_passed_returns_at_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    await search()(TASK, Context({"default": CountingFake(SCRIPT)}, Target(), store=store))
    again = CountingFake(SCRIPT)
    result = await search()(TASK, Context({"default": again}, Target(), store=store))
    assert result.stopped == "early_stop" and result.answer == "A\nB2\n" and again.calls == 0
    await store.aclose()


async def test_self_evaluation_needs_no_verifier() -> None:
    script = {"so far:\nC\n": ["No"], "so far:\nA\n": ["Yes"], **SCRIPT}
    model = CountingFake(script)
    result = await search(value=ValueParams(kind="self_eval"), max_simulations=6, step={"max_depth": 2})(
        TASK, Context({"default": model})
    )
    assert result.answer is not None and result.answer.startswith("A\n")
    assert all(c.passed is None for c in result.candidates)


async def test_a_process_reward_model_is_a_model_role() -> None:
    prm = CountingFake({"so far:\nC\n": ["Yes"], "so far:\nA\n": ["No"]})
    strategy = search(value=ValueParams(kind="prm"), max_simulations=6, step={"max_depth": 2})
    assert set(strategy.needs) == {"default", "prm"}
    result = await strategy(TASK, Context({"default": CountingFake(SCRIPT), "prm": prm}))
    assert result.answer is not None and result.answer.startswith("C\n") and prm.calls > 0


async def test_configuration_errors_come_before_any_call() -> None:
    with pytest.raises(ConfigError, match=r"step: sampled expansion needs step.temperature > 0"):
        mcts(step={"temperature": 0.0})  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"step.expansion_width: Input should be greater than or equal to 1"
    ):
        mcts(step={"expansion_width": 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"step.pattern"):
        mcts(step={"kind": "regex"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"`max_depth` moved to `step.max_depth`"):
        mcts(max_depth=3)  # type: ignore[call-arg]
    with pytest.raises(
        ConfigError, match=r"`step` is a group of settings now: write `step: \{kind: statement\}`"
    ):
        mcts(step="statement")  # type: ignore[arg-type]
    chat_only = CountingFake(SCRIPT)
    chat_only.capabilities = ModelCapabilities()
    with pytest.raises(CapabilityError, match="mcts needs prefix continuation, which model fake/m"):
        await search()(TASK, Context({"default": chat_only}, Target()))
    with pytest.raises(ConfigError, match="mcts needs a verifier"):
        await search()(TASK, Context({"default": CountingFake(SCRIPT)}))
    assert chat_only.calls == 0


def wide_script(depth: int = 3, width: int = 2) -> dict[str, list[str]]:
    """A full tree of steps ``s<depth><i>``; a node's answers are its children's greedy paths."""
    script: dict[str, list[str]] = {}

    def greedy_tail(level: int) -> str:
        return "".join(f"s{d}0\n" for d in range(level, depth))

    def add(partial: str, level: int) -> None:
        key = f"assistant: {partial}" if partial else "user: Q?"
        if level == depth:
            script[key] = [""]
            return
        script[key] = [f"s{level}{i}\n" + greedy_tail(level + 1) for i in range(width)]
        for i in range(width):
            add(partial + f"s{level}{i}\n", level + 1)

    add("", 0)
    return dict(sorted(script.items(), key=lambda kv: -len(kv[0])))


def redis_store() -> Store:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as e:
        pytest.skip(f"no Redis at {REDIS_URL}: {e}")
    return open_store(REDIS_URL)


@pytest.mark.redis
async def test_two_workers_on_one_redis_never_redo_an_expansion() -> None:
    namespace = f"fptest-mcts-{uuid.uuid4().hex[:10]}"
    stores = [redis_store(), redis_store()]
    log: list[str] = []
    # Deep enough that 20 simulations cannot solve the whole tree (a solved root ends a search).
    models = [CountingFake(wide_script(depth=4), delay_s=0.005, log=log) for _ in range(2)]
    target = Target("s01\ns11\ns21\ns31\n")
    try:
        results = await asyncio.gather(
            *(
                search(
                    max_simulations=10,
                    max_generations=100,
                    early_stop=False,
                    sharing=SharingParams(namespace=namespace, worker=f"w{i}"),
                    step={"max_depth": 4},
                )(TASK, Context({"default": models[i]}, target, store=stores[i]))
                for i in range(2)
            )
        )
        tree = await tree_of(stores[0], namespace)
        nodes = await SearchTree(stores[0], namespace).walk(
            await SearchTree(stores[0], namespace).root(text="")
        )
    finally:
        await stores[0].clear(namespace, "all")
        for store in stores:
            await store.aclose()
    iterations = [r.info["iterations"] for r in results]
    assert iterations == [10, 10]
    assert tree[""][0] == 20  # no lost visits
    assert len(log) == len(set(log)), "a request was made twice"  # no expansion or rollout redone
    assert sum(r.info["evaluations"] for r in results) == sum(1 for n in nodes if n.rollout is not None)
    assert sum(r.info["generations"] for r in results) == len(log) == sum(m.calls for m in models)
    assert all(r.info["waits"] >= 0 for r in results) and sum(r.info["waits"] for r in results) > 0


ADD = Task(
    id="tiny/add",
    prompt='def add(a, b):\n    """Return the sum of a and b."""\n',
    kind="code",
    entry_point="add",
    asserts=["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
)


@pytest.mark.slow
async def test_mcts_on_a_real_local_model_with_the_sandboxed_verifier(tmp_path: Path) -> None:
    from forkpath.models import get_model
    from forkpath.verifiers import make_verifier

    model = get_model("local/smollm2-135m", n_threads=1)
    verifier = make_verifier("python_tests")
    store = open_store(str(tmp_path / "s.db"))
    strategy = mcts(
        max_simulations=6,
        max_generations=5,
        step=StepParams(kind="statement", expansion_width=2, max_tokens=32),
        value=ValueParams(max_tokens=64),
        answer_prefix="```python\n{prompt}",
    )
    with Tracer() as tracer:
        result = await strategy(ADD, Context({"default": model}, verifier, store=store))
    assert result.candidates and result.info["generations"] <= 5
    for candidate in result.candidates:
        assert candidate.text.startswith("```python\n" + ADD.prompt)  # the search kept the prefill
        again = await verifier.verify(ADD, candidate.text)
        assert (again.passed, again.score) == (candidate.passed, candidate.score)
    nodes = await SearchTree(store, result.info["namespace"]).walk(
        await SearchTree(store, result.info["namespace"]).root(text="")
    )
    assert sum(1 for n in nodes if n.rollout is not None) == result.info["evaluations"]
    assert nodes[0].visits == result.info["iterations"]
    assert render_tree(tracer.events, tmp_path / "tree.html").stat().st_size > 0
    await store.aclose()
