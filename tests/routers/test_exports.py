"""The public API of forkpath.routers, pinned: changing it is a deliberate act."""

from __future__ import annotations

import inspect

import forkpath.routers


def test_public_names_are_pinned() -> None:
    assert sorted(forkpath.routers.__all__) == [
        "ANSWER_QUANTILES",
        "Calibration",
        "CurvePoint",
        "Decision",
        "Direction",
        "Estimator",
        "Handover",
        "LogisticRouter",
        "QueryRecord",
        "Router",
        "RouterSpec",
        "TOKEN_FEATURES",
        "ThresholdRouter",
        "TokenLabel",
        "UncertaintyWindow",
        "answer_features",
        "auc_deferral",
        "bisect_threshold",
        "calibrate_records",
        "deferral_curve",
        "fit_logistic",
        "label_tokens",
        "load_router",
        "make_router",
        "quantile_feature",
        "read_records",
        "record_queries",
        "result_features",
        "routed_fraction",
        "routers",
        "save_router",
        "summarize_distribution",
        "summarize_top",
        "threshold_for_quality",
        "threshold_for_rate",
        "threshold_for_recall",
        "token_features",
        "train_logistic",
        "write_records",
    ]


def test_every_public_name_exists_and_callables_are_documented() -> None:
    for name in forkpath.routers.__all__:
        obj = getattr(forkpath.routers, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_routing_strategies_register_when_imported() -> None:
    import forkpath.strategies._cascade
    import forkpath.strategies._segment_offload
    import forkpath.strategies._speculative
    import forkpath.strategies._token_routing  # noqa: F401
    from forkpath.strategies._base import strategies

    assert {"token_routing", "segment_offload", "cascade", "speculative_decoding"} <= set(strategies.names())
    assert strategies.create("cascade", router="chow_sum").name == "cascade"
    assert (
        strategies.create("token_routing", router={"name": "top1", "threshold": 0.3}).name == "token_routing"
    )


def test_the_cli_app_has_label_and_calibrate() -> None:
    from forkpath._cli._router import app

    assert {c.name for c in app.registered_commands} == {"label", "calibrate"}
