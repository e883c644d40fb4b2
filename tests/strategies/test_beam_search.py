"""beam_search over steps: exact beams on the fake model, top-k expansion, judges, resume, shared trees."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from forkpath import ConfigError, Task
from forkpath.models import FakeModel, GenerateRequest, GenerateResult
from forkpath.store import Store, open_store
from forkpath.strategies import Context
from forkpath.strategies._beam_search import beam_search
from forkpath.strategies._search import SearchTree
from forkpath.strategies._search_fakes import TableModel
from forkpath.strategies._search_params import SharingParams, StepParams, ValueParams

TASK = Task(id="t/2", prompt="Q?", kind="text")

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # FakeModel(confidence=1.0): log(0)


class Verdict(BaseModel):
    passed: bool
    score: float


class Lines:
    """Score: the fraction of the target's lines the candidate gets right before its first mistake."""

    def __init__(self, target: str) -> None:
        self.target = target.splitlines()

    async def verify(self, task: Task, candidate: str) -> Verdict:
        got = candidate.splitlines()
        right = 0
        for want, have in zip(self.target, got, strict=False):
            if want != have:
                break
            right += 1
        return Verdict(passed=got == self.target, score=right / len(self.target))


class Recording(FakeModel):
    def __init__(
        self,
        script: dict[str, list[str]],
        log: list[str] | None = None,
        delay_s: float = 0.0,
        confidence: float = 1.0,
    ):
        super().__init__("fake/b", script=script, confidence=confidence)
        self.log = log if log is not None else []
        self.delay_s = delay_s

    async def _generate(self, request: GenerateRequest) -> GenerateResult:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.log.append(
            f"{self._prompt_text(request.messages or ())}|{request.temperature}|{request.sample_index}"
        )
        return await super()._generate(request)


def wide_script(depth: int = 3, width: int = 2) -> dict[str, list[str]]:
    """Steps ``s<level><i>``; the answers after a partial are its children's greedy paths."""
    script: dict[str, list[str]] = {}

    def add(partial: str, level: int) -> None:
        key = f"assistant: {partial}" if partial else "user: Q?"
        if level == depth:
            script[key] = [""]
            return
        tail = "".join(f"s{d}0\n" for d in range(level + 1, depth))
        script[key] = [f"s{level}{i}\n{tail}" for i in range(width)]
        for i in range(width):
            add(partial + f"s{level}{i}\n", level + 1)

    add("", 0)
    return dict(sorted(script.items(), key=lambda kv: -len(kv[0])))


async def values(store: Store, namespace: str) -> dict[str, float | None]:
    """partial answer -> the value recorded on the node."""
    tree = SearchTree(store, namespace)
    nodes = await tree.walk(await tree.root(text=""))
    text = {n.key: (n.parent, n.text) for n in nodes}

    def partial(key: str | None) -> str:
        out = ""
        while key is not None and text[key][0] is not None:
            out = text[key][1] + out
            key = text[key][0]
        return out

    return {partial(n.key): n.rollout.value if n.rollout else None for n in nodes}


def beam(step: dict[str, Any] | None = None, **params: Any) -> Any:
    """Width-1 beams, two sampled children per beam (temperature 1), unless told otherwise."""
    steps = StepParams(**{"expansion_width": 2, "temperature": 1.0, **(step or {})})
    return beam_search(**{"beam_width": 1, "step": steps, **params})


async def test_exact_beams_on_the_fake_model(tmp_path: Path) -> None:
    """Width-1 beam: depth 1 drafts s00 (greedy) and s01 (sampled) and rolls both out (0, 1/3):
    keeps s01; depth 2: s10 is s01's greedy step (read from its rollout, which it shares: 1/3),
    s11 is sampled and rolled out (2/3): keeps s11; depth 3: s20 is the last step of s11's
    rollout (a complete answer, verified without a call: 2/3), s21 is rolled out: passes."""
    store = open_store(str(tmp_path / "s.db"))
    log: list[str] = []
    result = await beam()(
        TASK, Context({"default": Recording(wide_script(), log)}, Lines("s01\ns11\ns21\n"), store=store)
    )
    assert result.stopped == "early_stop" and result.answer == "s01\ns11\ns21\n"
    assert await values(store, result.info["namespace"]) == {
        "": None,
        "s00\n": 0.0,
        "s01\n": pytest.approx(1 / 3),
        "s01\ns10\n": pytest.approx(1 / 3),
        "s01\ns11\n": pytest.approx(2 / 3),
        "s01\ns11\ns20\n": pytest.approx(2 / 3),
        "s01\ns11\ns21\n": 1.0,
    }
    info = result.info
    assert (info["iterations"], info["generations"], info["reused"], info["evaluations"]) == (3, 8, 1, 6)
    assert [entry.rsplit("|", 2)[1:] for entry in log] == [
        ["0.0", "0"],  # the root's greedy step (the root has no rollout)
        ["1.0", "1"],  # its sampled step
        ["0.0", "0"],  # rollout of s00
        ["0.0", "0"],  # rollout of s01
        ["1.0", "1"],  # s01's sampled step
        ["0.0", "0"],  # rollout of s11
        ["1.0", "1"],  # s11's sampled step
        ["0.0", "0"],  # rollout of s21
    ]
    await store.aclose()


async def test_a_wider_beam_keeps_the_runner_up() -> None:
    log: list[str] = []
    result = await beam(beam_width=2, early_stop=False)(
        TASK, Context({"default": Recording(wide_script(), log)}, Lines("s01\ns11\ns21\n"))
    )
    # Depth 2 expands both s00 and s01; depth 3 the best two of their four children.
    expanded = {
        entry.split("assistant: ")[1].split("|")[0]
        for entry in log
        if "|1.0|" in entry and "assistant" in entry
    }
    assert {"s00\n", "s01\n"} <= expanded
    assert result.passed and result.stopped == "done"
    assert result.candidates[result.chosen or 0].text == "s01\ns11\ns21\n"


async def test_top_k_expansion_branches_on_first_tokens() -> None:
    table = {"": {"a": 0.7, "b": 0.2, "c": 0.1}, "a": {"\n": 1.0}, "b": {"\n": 1.0}, "c": {"\n": 1.0}}
    table |= {"a\n": {"x": 1.0}, "b\n": {"y": 1.0}}
    model = TableModel(table)
    result = await beam(step={"expand": "top_k", "expansion_width": 2, "max_depth": 1}, early_stop=False)(
        TASK, Context({"default": model}, Lines("b\ny\n"))
    )
    # Two drafts at the root: the greedy step with top-2 first tokens, then "b" completed.
    assert model.calls[:2] == ["", "b"]
    assert [c.text for c in result.candidates] == ["a\nx", "b\ny"]
    assert result.answer == "b\ny" and result.passed and result.candidates[0].score == 0.0


async def test_judge_valued_beam_completes_its_best_beam() -> None:
    script = {"so far:\ns01\n": ["Yes"], "so far:\ns00\n": ["No"], **wide_script(depth=2)}
    model = Recording(script)
    result = await beam(value=ValueParams(kind="self_eval"), step={"max_depth": 1})(
        TASK, Context({"default": model})
    )
    assert result.answer == "s01\ns10\n"  # the judge's beam, completed greedily
    assert result.candidates[0].passed is None


async def test_resume_needs_fewer_calls_than_a_cold_run(tmp_path: Path) -> None:
    verifier = Lines("s01\ns11\ns21\n")
    cold = Recording(wide_script())
    await beam()(TASK, Context({"default": cold}, verifier))
    store = open_store(str(tmp_path / "s.db"))
    # confidence < 1: logprobs must be finite to be kept in the generation cache
    first_model = Recording(wide_script(), confidence=0.99)
    first_model.cache = store.generation_cache("beam-test")
    first = await beam(max_generations=1)(TASK, Context({"default": first_model}, verifier, store=store))
    assert first.stopped == "budget"
    warm = Recording(wide_script(), confidence=0.99)
    warm.cache = store.generation_cache("beam-test")
    again = await beam()(TASK, Context({"default": warm}, verifier, store=store))
    assert again.passed and warm.calls < cold.calls == 8
    # The first run's only call drafted half of the root's expansion, which the budget cut; the
    # restart drafts it again and the generation cache answers.
    assert (first_model.calls, warm.calls, again.info["cached_generations"]) == (1, 7, 1)
    await store.aclose()


async def test_two_workers_on_one_sqlite_file_share_the_work(tmp_path: Path) -> None:
    stores = [open_store(str(tmp_path / "s.db")), open_store(str(tmp_path / "s.db"))]
    log: list[str] = []
    models = [Recording(wide_script(), log, delay_s=0.005) for _ in range(2)]
    results = await asyncio.gather(
        *(
            beam(beam_width=2, early_stop=False, sharing=SharingParams(namespace="shared", worker=f"w{i}"))(
                TASK, Context({"default": models[i]}, Lines("s01\ns11\ns21\n"), store=stores[i])
            )
            for i in range(2)
        )
    )
    assert len(log) == len(set(log)), "a draft or rollout was made twice"
    assert results[0].answer == results[1].answer == "s01\ns11\ns21\n"
    assert sum(r.info["waits"] for r in results) > 0
    for store in stores:
        await store.aclose()


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="beam_width must be at least 1"):
        beam_search(beam_width=0)
    with pytest.raises(ConfigError, match=r"step.max_depth: Input should be greater than or equal to 1"):
        beam_search(step={"max_depth": 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"`max_step_tokens` moved to `step.max_tokens`"):
        beam_search(max_step_tokens=8)  # type: ignore[call-arg]


@pytest.mark.slow
async def test_beam_search_on_a_real_local_model() -> None:
    from forkpath.models import get_model
    from forkpath.verifiers import make_verifier

    task = Task(
        id="tiny/square",
        prompt='def square(x):\n    """Return x squared."""\n',
        kind="code",
        entry_point="square",
        asserts=["assert square(3) == 9", "assert square(-2) == 4"],
    )
    model = get_model("local/smollm2-135m", n_threads=1)
    verifier = make_verifier("python_tests")
    result = await beam_search(
        beam_width=2,
        step=StepParams(kind="line", expansion_width=2, max_depth=3, max_tokens=24),
        value=ValueParams(max_tokens=48),
        max_generations=8,
        answer_prefix="```python\n{prompt}",
    )(task, Context({"default": model}, verifier))
    assert result.candidates and result.info["generations"] <= 8
    chosen = result.candidates[result.chosen or 0]
    again = await verifier.verify(task, chosen.text)
    assert (again.passed, again.score) == (chosen.passed, chosen.score)
    assert result.stopped in ("early_stop", "budget", "done")
