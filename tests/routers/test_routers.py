"""Routers: exact decisions, specs, files, features and the learned router."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from forkpath import ConfigError, UnknownNameError
from forkpath.routers import (
    LogisticRouter,
    ThresholdRouter,
    UncertaintyWindow,
    answer_features,
    fit_logistic,
    load_router,
    make_router,
    routers,
    save_router,
    token_features,
    train_logistic,
)
from forkpath.routers._features import summarize_distribution, summarize_top, token_class


async def test_training_free_rules_decide_on_the_right_side_of_the_threshold() -> None:
    entropy = make_router({"name": "entropy", "threshold": 1.0})
    assert (await entropy.route({"entropy": 1.0})).handover == "token"  # at the threshold routes
    assert (await entropy.route({"entropy": 0.99})).handover == "keep"
    top1 = make_router({"name": "top1", "threshold": 0.5})
    assert (await top1.route({"top1": 0.49})).routed
    assert not (await top1.route({"top1": 0.5})).routed  # "below" is strict
    margin = make_router({"name": "margin", "threshold": 0.2, "handover": "segment"})
    decision = await margin.route({"margin": 0.1})
    assert (decision.handover, decision.score, decision.threshold) == ("segment", 0.1, 0.2)
    window = make_router("window_entropy")
    assert window.handover == "segment" and window.features == ("window_entropy",)


async def test_cascade_rules_read_answer_features_and_hand_over_the_request() -> None:
    features = answer_features([-0.1, -0.2, -3.0, -0.05])
    assert features["sum_logprob"] == pytest.approx(-3.35)
    assert features["mean_logprob"] == pytest.approx(-3.35 / 4)
    assert features["q0_logprob"] == pytest.approx(-3.0)
    assert features["q1_logprob"] == pytest.approx(-0.05)
    assert features["length"] == 4
    chow_sum = make_router({"name": "chow_sum", "threshold": -3.0})
    chow_mean = make_router({"name": "chow_mean", "threshold": -0.5})
    minimum = make_router({"name": "chow_quantile", "alpha": 0.0, "threshold": -2.0})
    assert minimum.features == ("q0_logprob",)
    for router, routed in ((chow_sum, True), (chow_mean, True), (minimum, True)):
        decision = await router.route(features)
        assert decision.routed is routed and decision.handover == "request"
    confident = answer_features([-0.1, -0.2, -0.3, -0.05])
    assert not (await minimum.route(confident)).routed
    assert (await make_router("verdict").route({"verdict": 0.5})).routed
    assert not (await make_router("verdict").route({"verdict": 1.0})).routed


def test_empty_answers_look_doubtful_and_infinities_are_clipped() -> None:
    empty = answer_features([])
    assert empty["length"] == 0 and empty["sum_logprob"] == 0 and empty["mean_logprob"] == -30.0
    assert answer_features([-math.inf])["q0_logprob"] == -30.0


async def test_ties_at_the_threshold_follow_the_boundary_probability_replayably() -> None:
    router = ThresholdRouter(name="t", feature="x", threshold=1.0, at_threshold=0.5)
    rows = [{"x": 1.0, "id": float(i)} for i in range(2000)]
    routed = [router.decide(r).routed for r in rows]
    assert 0.45 < sum(routed) / len(routed) < 0.55
    assert routed == [router.decide(r).routed for r in rows]  # the coin is a hash: same answer again
    assert [(await router.route(r)).routed for r in rows[:50]] == routed[:50]


def test_make_router_accepts_names_mappings_files_and_objects(tmp_path: Path) -> None:
    router = make_router({"name": "top1", "threshold": 0.3})
    assert make_router(router) is router
    path = save_router(router, tmp_path / "r.json")
    assert router.registered is not None and router.registered.params == {"threshold": 0.3}
    assert make_router(str(path)).model_dump() == router.model_dump()
    assert make_router({"name": "file", "path": str(path)}).model_dump() == router.model_dump()
    assert set(routers.names()) >= {"entropy", "top1", "margin", "window_entropy", "chow_sum", "chow_mean"}


def test_bad_router_specs_are_one_line_config_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="did you mean entropy"):
        make_router("entrpy")
    with pytest.raises(ConfigError, match="threshold: Input should be a valid number"):
        make_router({"name": "entropy", "threshold": "high"})
    with pytest.raises(ConfigError, match="needs a 'name'"):
        make_router({"threshold": 1.0})
    with pytest.raises(ConfigError, match="not a router spec"):
        make_router(3)
    with pytest.raises(ConfigError, match="alpha: Input should be less than or equal to 1"):
        make_router({"name": "chow_quantile", "alpha": 2.0})
    with pytest.raises(ConfigError, match="router file not found"):
        make_router(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not a router file"):
        load_router(bad)
    bad.write_text(json.dumps({"kind": "threshold", "name": "x", "threshold": 1.0}))
    with pytest.raises(ConfigError, match="feature: Field required"):
        load_router(bad)
    with pytest.raises(ConfigError, match="needs feature"):
        make_router("entropy").decide({"top1": 0.3})


def test_saved_routers_round_trip_with_their_calibration(tmp_path: Path) -> None:
    router = make_router("chow_mean").with_threshold(
        -0.42, target="rate=0.3", rate=0.3, n=200, source="x.jsonl"
    )
    path = save_router(router, tmp_path / "sub" / "cascade.json")
    body = json.loads(path.read_text())
    assert body["kind"] == "threshold" and body["feature"] == "mean_logprob" and body["threshold"] == -0.42
    assert body["calibration"]["target"] == "rate=0.3" and body["calibration"]["n"] == 200
    loaded = load_router(path)
    assert loaded.model_dump() == router.model_dump()
    rows = [{"mean_logprob": x} for x in np.linspace(-1, 0, 41)]
    assert [loaded.decide(r) for r in rows] == [router.decide(r) for r in rows]


def test_token_features_from_a_full_distribution() -> None:
    probs = np.array([0.5, 0.3, 0.1, 0.05, 0.03, 0.02])
    top, ent = summarize_distribution(np.log(probs), k=3)
    assert top == pytest.approx(list(np.log([0.5, 0.3, 0.1])))
    assert ent == pytest.approx(float(-(probs * np.log(probs)).sum()))
    window = UncertaintyWindow(2)
    first = token_features(top, 2.0, chosen_logprob=math.log(0.3), position=0, token_text="\n", window=window)
    assert first["top1"] == pytest.approx(0.5) and first["margin"] == pytest.approx(0.2)
    assert first["logprob"] == pytest.approx(math.log(0.3)) and first["lp3"] == pytest.approx(math.log(0.1))
    assert first["lp4"] == first["lp5"] == -30.0  # fewer values than features: the floor
    assert first["is_newline"] == 1.0 and first["is_space"] == 1.0 and first["is_alpha"] == 0.0
    token_features(top, 1.0, chosen_logprob=-1.0, position=1, token_text="x", window=window)
    third = token_features(top, 4.0, chosen_logprob=-1.0, position=2, token_text="12", window=window)
    assert third["window_entropy"] == pytest.approx(2.5)  # window of 2: (1 + 4) / 2
    assert third["window_max_entropy"] == 4.0 and third["is_digit"] == 1.0
    window.clear()
    assert (
        token_features(top, 1.0, chosen_logprob=-1, position=3, token_text="(", window=window)[
            "window_entropy"
        ]
        == 1.0
    )


def test_entropy_estimators_from_top_k_bracket_the_truth() -> None:
    probs = np.array([0.4, 0.3, 0.1] + [0.2 / 50] * 50)
    true = float(-(probs * np.log(probs)).sum())
    values, lower = summarize_top(np.log(probs[:3]), "lower")
    _, renorm = summarize_top(np.log(probs[:3]), "renorm")
    assert values == pytest.approx(list(np.log([0.4, 0.3, 0.1])))
    assert lower < true and renorm < true
    with pytest.raises(ValueError, match="full distribution"):
        summarize_top([-0.1], "full")
    assert token_class("foo_bar") == {
        "is_newline": 0.0,
        "is_space": 0.0,
        "is_digit": 0.0,
        "is_alpha": 1.0,
        "is_punct": 0.0,
    }
    assert token_class("):")["is_punct"] == 1.0


def test_logistic_regression_recovers_a_known_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    true_w, true_b = np.array([2.0, -1.0]), -1.0
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ true_w + true_b)))).astype(int)
    w, b = fit_logistic(x, y, l2=1e-6, balanced=False)
    assert w == pytest.approx(true_w, abs=0.2) and b == pytest.approx(true_b, abs=0.2)
    with pytest.raises(ConfigError, match="all 3 labels are 0"):
        fit_logistic(np.zeros((3, 1)), np.zeros(3))


def test_the_learned_router_separates_divergent_tokens_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows, labels = [], []
    for _ in range(600):
        divergent = rng.random() < 0.15
        rows.append({"entropy": rng.normal(2.0 if divergent else 0.5, 0.3), "top1": rng.uniform(0, 1)})
        labels.append(int(divergent))
    router = train_logistic(rows, labels, inputs=("entropy", "top1"))
    assert router.weights[0] > 1.0 and abs(router.weights[1]) < 0.5  # entropy carries the signal
    routed = [router.decide(r).routed for r in rows]
    accuracy = np.mean([r == bool(y) for r, y in zip(routed, labels, strict=True)])
    assert accuracy > 0.95
    loaded = load_router(save_router(router, tmp_path / "learned.json"))
    assert isinstance(loaded, LogisticRouter)
    assert [loaded.score(r) for r in rows[:20]] == pytest.approx([router.score(r) for r in rows[:20]])
    with pytest.raises(ConfigError, match="same length"):
        path = tmp_path / "broken.json"
        body = json.loads((tmp_path / "learned.json").read_text())
        body["weights"] = body["weights"][:1]
        path.write_text(json.dumps(body))
        load_router(path)
