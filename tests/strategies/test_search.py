"""The search core: step splitting, step drafting, selection rules, the shared tree, the tree picture."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from forkpath import ConfigError, Task, task_messages
from forkpath._trace import ExpansionEvent, NoteEvent, SearchPathEvent, Tracer, read_trace
from forkpath._tree_view import collect_trees, colour, render_tree
from forkpath.models import FakeModel
from forkpath.store import NewChild, open_store
from forkpath.strategies._search import (
    SearchCounters,
    SearchTree,
    child_score,
    search_namespace,
    search_store,
    select_child,
)
from forkpath.strategies._search_fakes import TableModel
from forkpath.strategies._search_steps import StepSplitter, StepWriter, step_priors

TEXT = Task(id="t/0", prompt="Q?", kind="text")

# FakeModel(confidence=1.0) puts all mass on the script (exact priors); numpy warns on log(0).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# -- step splitting ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "pattern", "text", "steps"),
    [
        ("line", None, "a\nb\nc", ["a\n", "b\n", "c"]),
        ("line", None, "a\n\n\nb\n", ["a\n", "\n\nb\n"]),  # blank lines join the next step
        ("paragraph", None, "p1 l1\np1 l2\n\np2\n", ["p1 l1\np1 l2\n\n", "p2\n"]),
        ("regex", r"\n(?=Step)", "Step 1: x\nmore\nStep 2: y", ["Step 1: x\nmore\n", "Step 2: y"]),
        ("statement", None, "x = f(1,\n      2)\ny = 3\n", ["x = f(1,\n      2)\n", "y = 3\n"]),
        ("statement", None, 's = "a(b"\nt = 1\n', ['s = "a(b"\n', "t = 1\n"]),
        ("statement", None, '"""doc (\nmore"""\nx = 1\n', ['"""doc (\nmore"""\n', "x = 1\n"]),
        ("statement", None, "x = 1 + \\\n 2\ny\n", ["x = 1 + \\\n 2\n", "y\n"]),
        ("statement", None, "x = 1  # (\ny = 2\n", ["x = 1  # (\n", "y = 2\n"]),
        ("statement", None, "Here's the code:\n```python\n", ["Here's the code:\n", "```python\n"]),
        (
            "statement",
            None,
            "d = {\n  'k': [1,\n   2],\n}\nreturn d",
            ["d = {\n  'k': [1,\n   2],\n}\n", "return d"],
        ),
    ],
)
def test_splitter_cuts_steps_where_they_end(
    kind: str, pattern: str | None, text: str, steps: list[str]
) -> None:
    splitter = StepSplitter(kind, pattern)  # type: ignore[arg-type]
    assert splitter.split(text) == steps
    assert "".join(steps) == text


def test_splitter_cut_says_whether_the_step_is_the_last() -> None:
    line = StepSplitter("line")
    assert line.cut("a\nb", finished=True) == ("a\n", False)
    assert line.cut("ab", finished=True) == ("ab", True)
    assert line.cut("ab", finished=False) == ("ab", False)
    assert line.cut("ab\n", finished=True) == ("ab\n", True)
    assert line.stops == ("\n",) and StepSplitter("regex", "x").stops == ()


@pytest.mark.parametrize(
    ("kind", "pattern", "message"),
    [
        ("regex", "(", "not a valid regular expression"),
        ("regex", "x*", "matches the empty string"),
        ("regex", None, "give step.pattern exactly when step.kind is 'regex'"),
        ("line", "x", "give step.pattern exactly when step.kind is 'regex'"),
        ("sentence", None, "unknown step kind 'sentence'"),
    ],
)
def test_splitter_rejects_bad_configuration(kind: str, pattern: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        StepSplitter(kind, pattern)  # type: ignore[arg-type]


# -- drafting steps ------------------------------------------------------------------------------
def writer(
    model: FakeModel | TableModel, kind: str = "line", task: Task = TEXT, calls_allowed: int = 99
) -> StepWriter:
    counters = SearchCounters()
    return StepWriter(
        model,
        task_messages(task),
        StepSplitter(kind),  # type: ignore[arg-type]
        task,
        counters,
        lambda: counters.generations < calls_allowed,
        max_step_tokens=40,
    )


async def test_draft_stops_at_the_line_and_gives_the_newline_back() -> None:
    w = writer(TableModel({"": {"a": 1.0}, "a": {"\n": 1.0}, "a\n": {"b": 1.0}}))
    draft = await w.draft("")
    assert (draft.text, draft.final) == ("a\n", False)
    # The model ends its answer after "b"; a stop at the end of the answer looks the same as a
    # stop at the delimiter, so the step gets its newline and the next draft ends the answer.
    last = await w.draft("a\n")
    assert (last.text, last.final) == ("b\n", False)
    end = await w.draft("a\nb\n")
    assert (end.text, end.final) == ("", True)
    assert w.counters.generations == 3


def chain(answer: str, start: str = "") -> dict[str, dict[str, float]]:
    """A table whose greedy answer after ``start`` is ``answer``."""
    text = start + answer
    return {text[:i]: {text[i]: 1.0} for i in range(len(start), len(text))}


async def test_draft_joins_blank_lines_and_unfinished_statements() -> None:
    model = TableModel(chain("x = f(1,\n  2)\ny = 3") | chain("\n\nnext\nz", start="x = 0\n"))
    w = writer(model, "statement")
    draft = await w.draft("")
    assert draft.text == "x = f(1,\n  2)\n" and not draft.final
    assert model.calls == ["", "x = f(1,\n"]  # the open bracket asked for one more line
    blank = await w.draft("x = 0\n")
    assert blank.text == "\n\nnext\n" and model.calls[2:] == ["x = 0\n", "x = 0\n\n", "x = 0\n\n\n"]


async def test_a_long_statement_is_finished_in_one_more_call() -> None:
    literal = "d = {\n  'a': 1,\n  'b': 2,\n  'c': 3,\n}\n"
    table = chain(literal)  # the statement is certain; what follows it is not
    table |= {literal + "return d"[:i]: {ch: 0.6, "z": 0.4} for i, ch in enumerate("return d")}
    model = TableModel(table)
    draft = await writer(model, "statement").draft("")
    assert draft.text == literal and not draft.final
    assert model.calls == ["", "d = {\n"]  # the open bracket: one draft without stop strings
    assert draft.logprob == 0.0  # the tokens after the statement are not counted


async def test_draft_with_a_regex_cuts_one_long_draft() -> None:
    model = TableModel(chain("Step 1: a\nb\nStep 2: c"))
    w = StepWriter(
        model, task_messages(TEXT), StepSplitter("regex", r"\n(?=Step)"), TEXT, SearchCounters(), lambda: True
    )
    first = await w.draft("")
    assert (first.text, first.final) == ("Step 1: a\nb\n", False)
    last = await w.draft("Step 1: a\nb\n")
    assert (last.text, last.final) == ("Step 2: c", True)
    assert len(model.calls) == 2


async def test_draft_that_closes_the_code_block_is_final() -> None:
    code = Task(id="c/0", prompt="write f", kind="code")
    head = "```python\n"
    table = {head: {"x": 1.0}, head + "x": {"\n": 1.0}, head + "x\n": {"`": 1.0}}
    table |= {head + "x\n`": {"`": 1.0}, head + "x\n``": {"`": 1.0}}
    w = writer(TableModel(table), task=code)
    inside = await w.draft(head)
    assert (inside.text, inside.final) == ("x\n", False)
    closing = await w.draft(head + "x\n")
    assert (closing.text, closing.final) == ("```\n", True)


async def test_writer_refuses_calls_past_its_budget() -> None:
    from forkpath.strategies._search import OutOfBudget

    w = writer(TableModel({"": {"a": 1.0}}), calls_allowed=1)
    await w.draft("")
    with pytest.raises(OutOfBudget):
        await w.draft("")


def test_step_priors_are_normalised_sequence_probabilities() -> None:
    from forkpath.strategies._search_steps import StepDraft

    priors = step_priors([StepDraft("a", False, math.log(0.2)), StepDraft("b", False, math.log(0.6))])
    assert priors == pytest.approx([0.25, 0.75])
    assert step_priors([StepDraft("a", False, None), StepDraft("b", False, -1.0)]) == [0.5, 0.5]
    # long steps do not underflow to 0/0
    assert step_priors([StepDraft("a", False, -2000.0), StepDraft("b", False, -2000.0)]) == [0.5, 0.5]


# -- selection -----------------------------------------------------------------------------------
def test_selection_scores_follow_the_formulas() -> None:
    assert child_score("uct", q=0.5, prior=0.1, visits=2, parent_visits=8, c=1.0) == pytest.approx(
        0.5 + math.sqrt(math.log(8) / 2)
    )
    assert child_score("uct", q=0.0, prior=0.1, visits=0, parent_visits=8, c=1.0) == math.inf
    assert child_score("puct", q=0.5, prior=0.4, visits=3, parent_visits=9, c=2.0) == pytest.approx(
        0.5 + 2.0 * 0.4 * 3 / 4
    )
    beta = math.log((9 + 10 + 1) / 10) + 4
    assert child_score("var_p_uct", q=0.25, prior=0.6, visits=1, parent_visits=9, c=4.0) == pytest.approx(
        0.25 + beta * 0.6 * math.sqrt(math.log(9)) / 2
    )


async def test_select_child_prefers_score_then_order(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    tree = SearchTree(store, "sel")
    root = await tree.root(text="")
    a, b = await tree.add_children(root, [NewChild(text="a", prior=0.5), NewChild(text="b", prior=0.5)])
    await tree.backpropagate([root], 0.0)
    assert select_child("puct", await tree.get(root.key), [a, b], c=1.0).text == "a"  # a tie: first
    await tree.backpropagate([root, a], 0.0)
    kids = await tree.children(await tree.get(root.key))
    assert select_child("puct", await tree.get(root.key), kids, c=1.0).text == "b"
    await store.aclose()


# -- the shared tree -----------------------------------------------------------------------------
def test_namespace_is_stable_and_changes_with_what_shapes_the_tree() -> None:
    a = search_namespace("mcts", TEXT, "local/x y", {"k": 3})
    assert a == search_namespace("mcts", TEXT, "local/x y", {"k": 3})
    assert a != search_namespace("mcts", TEXT, "local/x y", {"k": 4})
    assert a.startswith("search/mcts/local/x_y/t/0/")
    open_store  # noqa: B018 - the namespace is valid in a store:
    from forkpath.store import check_namespace

    assert check_namespace(a) == a


async def test_claims_are_exclusive_between_workers_and_released_after(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    one, two = SearchTree(store, "claims", worker="w1"), SearchTree(store, "claims", worker="w2")
    root = await one.root(text="")
    async with one.holding(root):
        assert await one.claim(root)  # renewing one's own claim
        assert not await two.claim(root)
    assert two.counters.waits == 1
    assert await two.claim(root)
    await store.aclose()


async def test_virtual_loss_and_credit_count_each_visit_once(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    tree = SearchTree(store, "vl")
    root = await tree.root(text="")
    [child] = await tree.add_children(root, [NewChild(text="a")])
    await tree.visit([root, child])
    mid = await tree.get(child.key)
    assert (mid.visits, mid.value_sum) == (1, 0.0)
    await tree.credit([root, child], 0.75)
    done = await tree.get(child.key)
    assert (done.visits, done.value_sum) == (1, 0.75)
    await store.aclose()


async def test_private_store_is_removed_after_the_search() -> None:
    async with search_store(None) as store:
        path = Path(store.url.removeprefix("sqlite://"))
        tree = SearchTree(store, "p")
        await tree.root(text="")
        assert path.exists()
    assert not path.parent.exists()


# -- the picture ---------------------------------------------------------------------------------
def events() -> list[ExpansionEvent | SearchPathEvent]:
    return [
        ExpansionEvent(node="s1:r", parent=None, text="<answer>", value=0.5, visits=3),
        ExpansionEvent(node="s1:a", parent="s1:r", text="def f():\n", visits=0),
        ExpansionEvent(node="s1:b", parent="s1:r", text="x <y>", visits=0),
        ExpansionEvent(node="s1:a", parent="s1:r", text="def f():\n", value=1.0, visits=2),
        ExpansionEvent(node="s1:b", parent="s1:r", text="x <y>", value=0.0, visits=1),
        ExpansionEvent(node="s1:c", parent="s1:a", text="  return 1", value=None, visits=0),
        SearchPathEvent(search="s1", strategy="mcts", namespace="n", path=["s1:r", "s1:a"]),
        ExpansionEvent(node="s2:r", parent=None, text="<prompt>", value=0.0, visits=1),
    ]


def test_trees_are_collected_with_their_final_values_and_path() -> None:
    first, second = collect_trees(events())
    assert first.strategy == "mcts" and first.path == ["s1:r", "s1:a"]
    assert {k: (n.visits, n.value, n.depth) for k, n in first.nodes.items()} == {
        "s1:r": (3, 0.5, 0),
        "s1:a": (2, 1.0, 1),
        "s1:b": (1, 0.0, 1),
        "s1:c": (0, None, 2),
    }
    assert list(second.nodes) == ["s2:r"] and second.path == []


def test_render_tree_html_and_svg(tmp_path: Path) -> None:
    page = render_tree(events(), tmp_path / "tree.html").read_text()
    assert page.count("<svg") == 2 and page.count("<circle") == 5
    assert page.count('stroke-width="3"') == 3  # the chosen edge and its two nodes
    assert colour(1.0) in page and colour(0.0) in page and colour(None) in page
    assert "x &lt;y&gt;" in page and "<pre>def f():\n</pre>" in page
    svg = render_tree(events(), tmp_path / "tree.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 4  # the tree with a chosen path
    assert (colour(0.0), colour(0.5), colour(1.0)) == ("#dc3c50", "#dcc850", "#28c850")


def test_render_tree_reads_a_trace_file(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    with Tracer(trace):
        from forkpath._trace import emit

        for event in events():
            emit(event)
    raw = [json.loads(line) for line in trace.read_text().splitlines()]
    assert (
        render_tree(raw, tmp_path / "a.svg").read_text()
        == render_tree(read_trace(trace), tmp_path / "b.svg").read_text()
    )


def test_render_tree_refuses_what_it_cannot_draw(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no search tree"):
        render_tree([NoteEvent(message="x")], tmp_path / "t.html")
    with pytest.raises(ConfigError, match=r"writes \.html or \.svg, not 't\.png'"):
        render_tree(events(), tmp_path / "t.png")


def test_the_searches_are_registered_and_validate_their_config() -> None:
    import forkpath.strategies._beam_search
    import forkpath.strategies._mcts
    import forkpath.strategies._token_tree_search  # noqa: F401 - importing registers them
    from forkpath.strategies import strategies

    assert {"beam_search", "mcts", "token_tree_search"} <= set(strategies.names())
    from forkpath.strategies._search_params import StepParams

    assert strategies.validate("mcts", {"step": {"kind": "statement", "expansion_width": 2}}) == {
        "step": StepParams(kind="statement", expansion_width=2),
    }
    with pytest.raises(ConfigError, match="strategies 'mcts': selection"):
        strategies.validate("mcts", {"selection": "best"})
    with pytest.raises(ConfigError, match=r"strategies 'token_tree_search': step.branch_at"):
        strategies.validate("token_tree_search", {"step": {"branch_at": "word"}})
    made = strategies.create("beam_search", beam_width=3, step={"max_depth": 2})
    assert made.registered is not None
    assert made.registered.params == {"beam_width": 3, "step": {"max_depth": 2}}  # as given


def test_the_old_flat_parameters_say_where_they_moved() -> None:
    """Every flat key of the old signatures is refused, naming its new place, in each of the
    three ways to make a search: the registry (YAML and the server validate this way), and a
    direct call."""
    from forkpath.strategies import strategies
    from forkpath.strategies._search_params import STEP_SEARCH_MOVED, TOKEN_SEARCH_MOVED

    for name, moved in (
        ("mcts", STEP_SEARCH_MOVED),
        ("beam_search", STEP_SEARCH_MOVED),
        ("token_tree_search", TOKEN_SEARCH_MOVED),
    ):
        assert strategies.moved(name) == moved
        for old, new in moved.items():
            group, field = new.split(".")
            assert field in strategies.params_model(name).model_fields[group].annotation.model_fields  # type: ignore[union-attr]
            with pytest.raises(ConfigError, match=f"^strategies '{name}': {old}: `{old}` moved to `{new}`$"):
                strategies.validate(name, {old: 1})
            with pytest.raises(ConfigError, match=f"^strategies '{name}': `{old}` moved to `{new}`$"):
                strategies.get(name)(**{old: 1})
    for name in ("mcts", "beam_search", "token_tree_search"):
        with pytest.raises(
            ConfigError, match=r"value: `value` is a group of settings now: write `value: \{kind: prm\}`"
        ):
            strategies.validate(name, {"value": "prm"})
    with pytest.raises(
        ConfigError, match=r"step: `step` is a group of settings now: write `step: \{kind: line\}`"
    ):
        strategies.validate("mcts", {"step": "line"})


def test_answer_prefix_and_judge_prompt_templates_are_checked() -> None:
    from forkpath.strategies._search_setup import answer_prefix
    from forkpath.strategies._search_values import JudgeValue

    code = Task(id="c/1", prompt="def f():\n", kind="code", entry_point="f")
    assert answer_prefix("```python\n{prompt}", code) == "```python\ndef f():\n"
    assert answer_prefix(None, code) == ""
    with pytest.raises(ConfigError, match=re.escape("answer_prefix '{nope}' cannot be filled from the task")):
        answer_prefix("{nope}", code)
    with pytest.raises(ConfigError, match=re.escape("value.prompt may use only {problem} and {partial}")):
        JudgeValue(TableModel({}), code, SearchCounters(), lambda: True, prompt="Is {answer} right?")
