"""Routers: decide from the small model's uncertainty when the large model takes over.

One protocol (:class:`Router`): named features in, a :class:`Decision` out (keep the small
model, or hand over a token, a segment or the whole request). Training-free routers compare one
feature with a threshold; the learned one is a logistic regression on the small model's
features. Thresholds are calibrated to a target rate, recall or quality, and routers are saved
and loaded as small JSON files. The strategies that use them are ``token_routing``,
``segment_offload`` and ``cascade`` (plus ``speculative_decoding``, which needs no router).

Example:
    >>> from forkpath.routers import make_router, save_router, threshold_for_rate
    >>> router = make_router("entropy")
    >>> tau, tie = threshold_for_rate(entropies, 0.12, router.direction)
    >>> save_router(router.with_threshold(tau, at_threshold=tie, target="rate=0.12", rate=0.12, n=len(entropies)), "r.json")
"""

from forkpath.routers._base import (
    Decision,
    Direction,
    Handover,
    Router,
    RouterSpec,
    load_router,
    make_router,
    routers,
    save_router,
)
from forkpath.routers._calibrate import (
    CurvePoint,
    auc_deferral,
    bisect_threshold,
    deferral_curve,
    routed_fraction,
    threshold_for_quality,
    threshold_for_rate,
    threshold_for_recall,
)
from forkpath.routers._features import (
    ANSWER_QUANTILES,
    TOKEN_FEATURES,
    Estimator,
    UncertaintyWindow,
    answer_features,
    quantile_feature,
    result_features,
    summarize_distribution,
    summarize_top,
    token_features,
)
from forkpath.routers._fit import calibrate_records
from forkpath.routers._label import (
    QueryRecord,
    TokenLabel,
    label_tokens,
    read_records,
    record_queries,
    write_records,
)
from forkpath.routers._learned import LogisticRouter, fit_logistic, train_logistic
from forkpath.routers._rules import Calibration, ThresholdRouter

__all__ = [
    "ANSWER_QUANTILES",
    "TOKEN_FEATURES",
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
