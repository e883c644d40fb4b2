"""The store conformance suite: what every backend must do, the same way.

Reuse it for a new backend by subclassing :class:`StoreConformance` in a test module and
providing three fixtures: ``store`` (a :class:`forkpath.store.Store` on the backend, using the
``clock`` fixture), ``clock`` (a movable clock, see ``conftest.FakeClock``) and ``ns`` (a fresh
namespace). ``tests/store/test_conformance.py`` runs it on SQLite and on a real Redis.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from forkpath import ConfigError, StoreError
from forkpath.models import FakeModel, GenerateRequest, Message
from forkpath.store import NewChild, Store, extend_key, prefix_key
from forkpath.store._base import NodeRecord, encode

SCRIPT = {"capital of France": ["Paris", "Lyon", "Marseille", "Nice"]}


def ask(text: str = "What is the capital of France?", **options: Any) -> GenerateRequest:
    return GenerateRequest(messages=(Message(role="user", content=text),), max_tokens=16, **options)


def corrupt_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "corrupt" in r.getMessage()
    ]


class StoreConformance:
    """Behaviour every backend shares. Test methods take the ``store``, ``clock`` and ``ns`` fixtures."""

    # -- generation cache ---------------------------------------------------------------------
    async def test_second_identical_call_is_replayed_without_a_model_call(
        self, store: Store, ns: str
    ) -> None:
        model = FakeModel(script=SCRIPT, cache=store.generation_cache(ns))
        first = await model.generate(ask())
        second = await model.generate(ask())
        assert (first.cached, second.cached) == (False, True)
        assert model.calls == 1
        assert second.text == first.text == "Paris"
        assert second.usage.cached_calls == 1 and second.usage.completion_tokens == 0
        # another process (a fresh model and cache object) replays it too
        other = FakeModel(script=SCRIPT, cache=store.generation_cache(ns))
        assert (await other.generate(ask())).cached and other.calls == 0

    async def test_samples_at_temperature_are_distinct_entries_greedy_share_one(
        self, store: Store, ns: str
    ) -> None:
        cache = store.generation_cache(ns)
        model = FakeModel(script=SCRIPT, cache=cache)
        sampled = await model.generate_n(ask(temperature=0.8), 4)
        assert [r.text for r in sampled] == ["Paris", "Lyon", "Marseille", "Nice"]
        assert model.calls == 4 and (await store.stats(ns)).cache_entries == 4
        replayed = await model.generate_n(ask(temperature=0.8), 4)
        assert [r.text for r in replayed] == ["Paris", "Lyon", "Marseille", "Nice"]
        assert all(r.cached for r in replayed) and model.calls == 4
        greedy = [await model.generate(ask(temperature=0.0, sample_index=i)) for i in range(3)]
        assert model.calls == 5, "greedy samples share one entry: one call for three"
        assert [r.cached for r in greedy] == [False, True, True]
        assert (await store.stats(ns)).cache_entries == 5
        assert cache.counters.hits == 4 + 2 and cache.counters.puts == 5

    async def test_namespaces_keep_caches_apart(self, store: Store, ns: str) -> None:
        a = FakeModel(script=SCRIPT, cache=store.generation_cache(ns))
        b = FakeModel(script=SCRIPT, cache=store.generation_cache(f"{ns}-other"))
        await a.generate(ask())
        assert not (await b.generate(ask())).cached
        assert (await store.stats(ns)).cache_entries == 1
        assert {ns, f"{ns}-other"} <= set(await store.namespaces())

    async def test_entries_expire_after_ttl(self, store: Store, ns: str, clock: Any) -> None:
        cache = store.generation_cache(ns, ttl_s=10)
        model = FakeModel(script=SCRIPT, cache=cache)
        await model.generate(ask())
        clock.advance(9)
        assert (await model.generate(ask())).cached
        clock.advance(2)
        assert not (await model.generate(ask())).cached
        assert model.calls == 2 and cache.counters.expired == 1
        clock.advance(1)
        assert (await model.generate(ask())).cached, "the fresh result was stored again"

    async def test_size_cap_evicts_the_least_recently_used(self, store: Store, ns: str, clock: Any) -> None:
        cache = store.generation_cache(ns, max_entries=3)
        value = (await FakeModel().generate(ask())).model_dump(mode="json")
        for key in ("k1", "k2", "k3"):
            await cache.put(key, value)
            clock.advance(10)
        assert await cache.get("k1") is not None  # k1 is now the most recently used
        clock.advance(10)
        await cache.put("k4", value)
        assert [await cache.get(k) is not None for k in ("k1", "k2", "k3", "k4")] == [True, False, True, True]
        stats = await store.stats(ns)
        assert (stats.cache_entries, stats.evictions) == (3, 1)
        assert cache.counters.evictions == 1

    async def test_expired_entries_are_not_counted_and_leave_the_books(
        self, store: Store, ns: str, clock: Any
    ) -> None:
        # TTLs far beyond the test's real duration: expiry here is decided on the fake clock.
        expiring, forever = store.generation_cache(ns, ttl_s=1000), store.generation_cache(ns)
        value = (await FakeModel().generate(ask())).model_dump(mode="json")
        for i in range(5):
            await expiring.put(f"k{i}", value)
        await forever.put("kept", value)
        await forever.put("k4", value)  # put again without a TTL: no longer expires
        before = await store.stats(ns)
        assert before.cache_entries == 6
        clock.advance(1001)
        after = await store.stats(ns)
        assert after.cache_entries == 2, "expired entries are not counted"
        if before.cache_bytes is not None:  # SQLite: bytes of the two live entries only
            assert after.cache_bytes == 2 * len(encode("generation", value).encode())
        assert [await forever.get(k) is not None for k in ("kept", "k4", "k0", "k3")] == [
            True,
            True,
            False,
            False,
        ]
        await expiring.put("fresh", value)
        assert (await store.stats(ns)).cache_entries == 3
        clock.advance(1001)
        assert (await store.stats(ns)).cache_entries == 2

    async def test_a_capped_cache_drops_expired_entries_before_evicting_live_ones(
        self, store: Store, ns: str, clock: Any
    ) -> None:
        cache = store.generation_cache(ns, ttl_s=1000, max_entries=3)
        value = (await FakeModel().generate(ask())).model_dump(mode="json")
        for key in ("old1", "old2"):
            await cache.put(key, value)
            clock.advance(1)
        clock.advance(1000)  # old1 and old2 have expired
        for key in ("c", "d", "e"):
            await cache.put(key, value)
            clock.advance(1)
        stats = await store.stats(ns)
        assert (stats.cache_entries, stats.evictions, cache.counters.evictions) == (3, 0, 0)
        clock.advance(1)
        await cache.put("f", value)  # now the cap bites: the least recently used live entry goes
        stats = await store.stats(ns)
        assert (stats.cache_entries, stats.evictions, cache.counters.evictions) == (3, 1, 1)
        assert [await cache.get(k) is not None for k in ("c", "d", "e", "f")] == [False, True, True, True]

    async def test_corrupt_cache_entries_are_counted_misses(
        self, store: Store, ns: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        model = FakeModel(script=SCRIPT, cache=store.generation_cache(ns))
        request = ask()
        key = request.cache_key(model.id)
        good = encode(
            "generation", (await FakeModel(script=SCRIPT).generate(request)).model_dump(mode="json")
        )
        bad_entries = [
            good[: len(good) // 2],  # truncated
            '{"some": "other program"}',  # foreign
            good.replace('"forkpath_store":1', '"forkpath_store":99'),  # another format version
            encode("generation", {"not": "a result"}),  # right envelope, wrong content
            encode("result", {"text": "x"}),  # another kind of entry
        ]
        caplog.set_level(logging.WARNING, logger="forkpath.store")
        for i, raw in enumerate(bad_entries, start=1):
            await store.backend.cache_put(ns, key, raw, now=store.clock(), ttl_s=None, max_entries=None)
            result = await model.generate(request)
            assert not result.cached and result.text == "Paris"
            assert model.calls == i
            assert (await model.generate(request)).cached, "the regenerated result replaced the corrupt one"
        assert (await store.stats(ns)).corrupt == len(bad_entries)
        assert len(corrupt_warnings(caplog)) == len(bad_entries)
        assert ns in corrupt_warnings(caplog)[0] and "truncated" in corrupt_warnings(caplog)[0]

    async def test_bad_cache_arguments_are_config_errors(self, store: Store, ns: str) -> None:
        with pytest.raises(ConfigError, match="namespace"):
            store.generation_cache("bad namespace with spaces")
        with pytest.raises(ConfigError, match="namespace"):
            store.generation_cache("a{b}")
        with pytest.raises(ConfigError, match="max_entries"):
            store.generation_cache(ns, max_entries=0)
        with pytest.raises(ConfigError, match="ttl_s"):
            store.generation_cache(ns, ttl_s=-1)

    # -- trajectories -------------------------------------------------------------------------
    async def test_root_and_children_are_idempotent_per_key(self, store: Store, ns: str) -> None:
        tree = store.trajectories
        root = await tree.add_root(ns, tokens=[1, 2, 3], meta={"task": "t1"})
        assert (await tree.add_root(ns, tokens=[1, 2, 3])).key == root.key == prefix_key([1, 2, 3])
        assert (root.depth, root.length, root.parent, root.tokens, root.meta) == (
            0,
            3,
            None,
            (1, 2, 3),
            {"task": "t1"},
        )
        first = await tree.add_children(
            ns,
            root.key,
            [
                NewChild(tokens=(4,), text="a", logprobs=(-0.5,), prior=0.6, meta={"step": 1}),
                NewChild(tokens=(5, 6), text="bc", logprobs=(-1.0, -2.0)),
                NewChild(tokens=(4,), text="a duplicate in the same call"),
            ],
        )
        assert [c.tokens for c in first] == [(4,), (5, 6)]
        again = await tree.add_children(ns, root.key, [NewChild(tokens=(5, 6)), NewChild(tokens=(7,))])
        assert [c.tokens for c in again] == [(7,)], "only the child that was not there yet is added"
        kids = await tree.children(ns, root.key)
        assert [c.tokens for c in kids] == [(4,), (5, 6), (7,)]
        a = kids[0]
        assert (a.key, a.parent, a.depth, a.length) == (prefix_key([1, 2, 3, 4]), root.key, 1, 4)
        assert (a.text, a.logprobs, a.prior, a.meta, a.visits, a.value_sum) == (
            "a",
            (-0.5,),
            0.6,
            {"step": 1},
            0,
            0.0,
        )
        assert kids[1].length == 5 and kids[1].key == extend_key(root.key, tokens=[5, 6])
        assert (await tree.get_node(ns, root.key)).children == tuple(c.key for c in kids)
        assert (await store.stats(ns)).nodes == 4

    async def test_text_trees_key_on_text(self, store: Store, ns: str) -> None:
        tree = store.trajectories
        root = await tree.add_root(ns, text="Q: 2+2?\nA:")
        [step] = await tree.add_children(ns, root.key, [NewChild(text=" Let's think.", tokens=(9, 9))])
        assert step.key == prefix_key(text="Q: 2+2?\nA: Let's think.") and step.kind == "text"
        assert step.length == len("Q: 2+2?\nA: Let's think.")
        with pytest.raises(ConfigError, match="text tree must add text"):
            await tree.add_children(ns, root.key, [NewChild(tokens=(1,))])

    async def test_stats_update_atomically_and_backpropagate(self, store: Store, ns: str) -> None:
        tree = store.trajectories
        root = await tree.add_root(ns, tokens=[1])
        [child] = await tree.add_children(ns, root.key, [NewChild(tokens=(2,))])
        assert await tree.update_stats(ns, root.key, 1, 0.25) == (1, 0.25)
        assert await tree.update_stats(ns, root.key, 2, 0.5) == (3, 0.75)
        assert await tree.backpropagate(ns, [root.key, child.key], value=1.0) == [(4, 1.75), (1, 1.0)]
        assert await tree.update_stats(ns, child.key, -1, -1.0) == (0, 0.0), "a virtual loss can be undone"
        node = await tree.get_node(ns, root.key)
        assert node is not None and node.mean_value == pytest.approx(1.75 / 4)
        missing = prefix_key([404])
        with pytest.raises(StoreError, match=f"no node {missing}"):
            await tree.backpropagate(ns, [root.key, missing], value=1.0)
        assert (await tree.get_node(ns, root.key)).visits == 4, "a failed path update changes nothing"

    async def test_rollouts_are_recorded(self, store: Store, ns: str) -> None:
        tree = store.trajectories
        root = await tree.add_root(ns, tokens=[1])
        await tree.set_rollout(ns, root.key, 1.0, {"passed": True, "detail": "3/3 tests"})
        node = await tree.get_node(ns, root.key)
        assert node is not None and node.rollout is not None
        assert (node.rollout.value, node.rollout.verdict) == (1.0, {"passed": True, "detail": "3/3 tests"})
        with pytest.raises(StoreError, match="no node"):
            await tree.set_rollout(ns, prefix_key([2]), 0.0)

    async def test_longest_prefix_finds_the_deepest_known_point(self, store: Store, ns: str) -> None:
        tree = store.trajectories
        root = await tree.add_root(ns, tokens=[10, 11])
        [a, b] = await tree.add_children(ns, root.key, [NewChild(tokens=(1, 2)), NewChild(tokens=(3,))])
        [aa] = await tree.add_children(ns, a.key, [NewChild(tokens=(4,))])
        match = await tree.longest_prefix(ns, tokens=[10, 11, 1, 2, 4, 99, 98])
        assert match is not None and (match.node.key, match.length) == (aa.key, 5)
        match = await tree.longest_prefix(ns, tokens=[10, 11, 1, 2])
        assert match is not None and (match.node.key, match.length) == (a.key, 4)
        match = await tree.longest_prefix(ns, tokens=[10, 11, 1])
        assert match is not None and (match.node.key, match.length) == (root.key, 2)
        assert await tree.longest_prefix(ns, tokens=[10]) is None
        assert await tree.longest_prefix(ns, tokens=[7, 7, 7]) is None
        assert await tree.longest_prefix(ns, text="10 11") is None, "text and token trees do not mix"
        assert [n.key for n in await tree.path(ns, aa.key)] == [root.key, a.key, aa.key]
        assert b.key not in {n.key for n in await tree.path(ns, aa.key)}

    async def test_longest_prefix_over_text_steps(self, store: Store, ns: str) -> None:
        tree = store.trajectories
        root = await tree.add_root(ns, text="Solve x+1=3.")
        [s1] = await tree.add_children(ns, root.key, [NewChild(text=" Subtract 1.")])
        [s2] = await tree.add_children(ns, s1.key, [NewChild(text=" x=2.")])
        match = await tree.longest_prefix(ns, text="Solve x+1=3. Subtract 1. x=2. Done")
        assert match is not None and (match.node.key, match.length) == (
            s2.key,
            len("Solve x+1=3. Subtract 1. x=2."),
        )
        match = await tree.longest_prefix(ns, text="Solve x+1=3. Subtract 2.")
        assert match is not None and match.node.key == root.key

    async def test_claims_are_exclusive_until_release_or_expiry(
        self, store: Store, ns: str, clock: Any
    ) -> None:
        tree = store.trajectories
        key = prefix_key([1, 2])
        assert await tree.claim(ns, key, "worker-a", ttl_s=30)
        assert not await tree.claim(ns, key, "worker-b", ttl_s=30)
        assert await tree.claim(ns, key, "worker-a", ttl_s=30), "the owner renews its claim"
        clock.advance(29)
        assert not await tree.claim(ns, key, "worker-b", ttl_s=30), "renewed at t=0, still held at t=29"
        clock.advance(2)
        assert await tree.claim(ns, key, "worker-b", ttl_s=30), "expired claims can be taken"
        assert not await tree.release(ns, key, "worker-a")
        assert await tree.release(ns, key, "worker-b")
        assert await tree.claim(ns, key, "worker-c", ttl_s=30)
        with pytest.raises(ConfigError):
            await tree.claim(ns, key, "", ttl_s=30)

    async def test_node_errors_are_clear(self, store: Store, ns: str) -> None:
        tree = store.trajectories
        missing = prefix_key([5])
        with pytest.raises(StoreError, match=f"no node {missing} in namespace"):
            await tree.add_children(ns, missing, [NewChild(tokens=(1,))])
        with pytest.raises(StoreError, match="no node"):
            await tree.update_stats(ns, missing)
        with pytest.raises(ConfigError, match="not a prefix key"):
            await tree.get_node(ns, "not-a-key")
        with pytest.raises(ConfigError, match="exactly one of tokens and text"):
            await tree.add_root(ns, tokens=[1], text="x")
        assert await tree.get_node(ns, missing) is None
        assert await tree.path(ns, missing) == []

    async def test_corrupt_nodes_are_skipped_and_counted(
        self, store: Store, ns: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        tree = store.trajectories
        root = await tree.add_root(ns, tokens=[1])
        good = await tree.add_children(ns, root.key, [NewChild(tokens=(2,))])
        bad_key = extend_key(root.key, tokens=[3])
        body = encode("node", {"tokens": [3]})
        bad = NodeRecord(key=bad_key, parent=root.key, kind="tokens", length=2, depth=1, body=body[:-7])
        caplog.set_level(logging.WARNING, logger="forkpath.store")
        assert await store.backend.node_add(ns, root.key, [bad]) == [bad_key]
        assert await tree.get_node(ns, bad_key) is None
        assert [c.key for c in await tree.children(ns, root.key)] == [good[0].key]
        assert (await store.stats(ns)).corrupt == 2
        assert len(corrupt_warnings(caplog)) == 2

    # -- batch results ------------------------------------------------------------------------
    async def test_results_let_a_rerun_skip_finished_tasks(self, store: Store, ns: str) -> None:
        run = ns
        assert await store.finished_ids(run) == set()
        for i in range(1100):  # more than one page of the backends' scans
            await store.put_result(run, f"task/{i}", {"i": i, "answer": str(i * 2)})
        await store.put_result(run, "task/7", {"i": 7, "answer": "rerun"})
        assert await store.get_result(run, "task/7") == {"i": 7, "answer": "rerun"}
        assert await store.get_result(run, "task/missing") is None
        finished = await store.finished_ids(run)
        assert finished == {f"task/{i}" for i in range(1100)}
        results = {task: r async for task, r in store.results(run)}
        assert len(results) == 1100 and results["task/1099"] == {"i": 1099, "answer": "2198"}
        assert await store.finished_ids(f"{ns}-other-run") == set()
        assert (await store.stats(run)).results == 1100

    async def test_a_corrupt_result_is_not_finished_and_others_survive(
        self, store: Store, ns: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        for i in range(5):
            await store.put_result(ns, f"t{i}", {"i": i})
        caplog.set_level(logging.WARNING, logger="forkpath.store")
        await store.backend.result_put(ns, "t3", encode("result", {"i": 3})[:15])
        assert await store.finished_ids(ns) == {"t0", "t1", "t2", "t4"}, "t3 will be run again"
        assert await store.get_result(ns, "t3") is None
        assert [await store.get_result(ns, f"t{i}") for i in (0, 1, 2, 4)] == [{"i": i} for i in (0, 1, 2, 4)]
        assert (await store.stats(ns)).corrupt == 2
        await store.put_result(ns, "t3", {"i": 3})
        assert await store.finished_ids(ns) == {f"t{i}" for i in range(5)}

    async def test_results_accept_pydantic_models_and_refuse_bad_ids(self, store: Store, ns: str) -> None:
        result = await FakeModel(script=SCRIPT).generate(ask())
        await store.put_result(ns, "r1", result)
        assert (await store.get_result(ns, "r1"))["text"] == "Paris"
        with pytest.raises(ConfigError, match="task id"):
            await store.put_result(ns, "", {})
        with pytest.raises(ConfigError, match="namespace"):
            await store.put_result("run id with spaces", "t", {})
        with pytest.raises(StoreError, match="not JSON-serialisable"):
            await store.put_result(ns, "t", {"x": object()})

    # -- bookkeeping --------------------------------------------------------------------------
    async def test_stats_and_clear_cover_every_area(self, store: Store, ns: str) -> None:
        other = f"{ns}-keep"
        for name in (ns, other):
            await FakeModel(script=SCRIPT, cache=store.generation_cache(name)).generate(ask())
            root = await store.trajectories.add_root(name, tokens=[1])
            await store.trajectories.add_children(name, root.key, [NewChild(tokens=(2,))])
            await store.trajectories.claim(name, root.key, "me")
            await store.put_result(name, "t", {"ok": True})
        stats = await store.stats(ns)
        assert (stats.cache_entries, stats.nodes, stats.results, stats.corrupt) == (1, 2, 1, 0)
        assert await store.clear(ns, "all") > 0
        assert (await store.stats(ns)).model_dump(exclude={"cache_bytes"}) == {
            "namespace": ns, "cache_entries": 0, "nodes": 0, "results": 0, "corrupt": 0, "evictions": 0,
        }  # fmt: skip
        assert ns not in await store.namespaces()
        assert await store.trajectories.claim(ns, prefix_key([1]), "someone-else"), "claims were cleared too"
        kept = await store.stats(other)
        assert (kept.cache_entries, kept.nodes, kept.results) == (1, 2, 1), "other namespaces are untouched"
        assert other in await store.namespaces()

    async def test_clear_removes_one_area_and_a_cache_clear_keeps_a_runs_results(
        self, store: Store, ns: str
    ) -> None:
        # One name used as a cache namespace, a search namespace and a batch run id.
        cache = store.generation_cache(ns, max_entries=1)
        model = FakeModel(script=SCRIPT, cache=cache)
        await model.generate(ask())
        await model.generate(ask("What is the capital of France, again?"))
        root = await store.trajectories.add_root(ns, tokens=[1])
        await store.trajectories.add_children(ns, root.key, [NewChild(tokens=(2,))])
        assert await store.trajectories.claim(ns, root.key, "me")
        await store.put_result(ns, "t1", {"ok": True})
        await store.put_result(ns, "t2", {"ok": False})
        await store.backend.count(ns, "corrupt", 1)

        def areas(stats: Any) -> tuple[int, ...]:
            return (stats.cache_entries, stats.evictions, stats.nodes, stats.results, stats.corrupt)

        assert areas(await store.stats(ns)) == (1, 1, 2, 2, 1)
        assert await store.clear(ns, what="cache") > 0
        assert areas(await store.stats(ns)) == (0, 0, 2, 2, 1), "only the cache went"
        assert await store.finished_ids(ns) == {"t1", "t2"}, "a cache clear keeps the run's results"
        assert not await store.trajectories.claim(ns, root.key, "someone-else")
        assert not (await model.generate(ask())).cached
        assert await store.clear(ns, what="trajectories") > 0
        assert areas(await store.stats(ns)) == (1, 0, 0, 2, 1)
        assert await store.trajectories.get_node(ns, root.key) is None
        assert await store.trajectories.claim(ns, root.key, "someone-else"), "claims went with the nodes"
        assert await store.clear(ns, what="results") > 0
        assert areas(await store.stats(ns)) == (1, 0, 0, 0, 1)
        assert ns in await store.namespaces()
        assert await store.clear(ns, what="all") > 0
        assert areas(await store.stats(ns)) == (0, 0, 0, 0, 0)
        assert ns not in await store.namespaces()
        unknown: Any = "nodes"
        with pytest.raises(ConfigError, match="cannot clear 'nodes': choose one of cache, trajectories"):
            await store.clear(ns, what=unknown)

    async def test_a_namespace_emptied_area_by_area_is_forgotten(self, store: Store, ns: str) -> None:
        only_cache, only_run = f"{ns}-cache", f"{ns}-run"
        await FakeModel(script=SCRIPT, cache=store.generation_cache(only_cache, ttl_s=1000)).generate(ask())
        await store.put_result(only_run, "t", {"ok": True})
        assert {only_cache, only_run} <= set(await store.namespaces())
        await store.clear(only_cache, what="results")
        assert only_cache in await store.namespaces(), "clearing an empty area leaves the rest"
        await store.clear(only_cache, what="cache")
        await store.clear(only_run, what="results")
        assert not {only_cache, only_run} & set(await store.namespaces())
