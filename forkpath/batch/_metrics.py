"""What a run bought: accuracy, pass@k, tokens, calls and cost per model, latency percentiles."""

from __future__ import annotations

from math import comb

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from forkpath.batch._records import TaskRecord
from forkpath.models import Usage


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


class RunMetrics(BaseModel):
    """Summary of one run directory."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    tasks: int
    ok: int
    errors: int
    timeouts: int
    budget_stopped: int = 0
    """Tasks their own budget cut short (finished, with the best answer found before it ran out)."""
    accuracy: float
    """Share of tasks whose final answer passed (errors and timeouts count as failures)."""
    pass_at: dict[int, float] = Field(default_factory=dict)
    """pass@k over the candidates each task verified, for every k all tasks have samples for."""
    usage: dict[str, Usage] = Field(default_factory=dict)
    tokens_per_task: float = 0.0
    cost: float = 0.0
    latency_p50_s: float = 0.0
    latency_p90_s: float = 0.0
    latency_p99_s: float = 0.0
    token_share: dict[str, float] = Field(default_factory=dict)
    """Share of all generated tokens each model produced (the work split of routing flows)."""


def summarize(records: list[TaskRecord]) -> RunMetrics:
    if not records:
        raise ValueError("no results to summarize")
    usage: dict[str, Usage] = {}
    for record in records:
        for model, u in record.usage.items():
            usage[model] = usage.get(model, Usage()) + u
    latencies = np.array([r.latency_s for r in records])
    completion = sum(u.completion_tokens for u in usage.values())
    verified = [r for r in records if r.n_candidates > 0]
    pass_at: dict[int, float] = {}
    if verified and len(verified) == len(records):
        for k in (1, 2, 5, 10, 20, 50, 100):
            if all(r.n_candidates >= k for r in verified):
                pass_at[k] = float(np.mean([pass_at_k(r.n_candidates, r.n_passed, k) for r in verified]))
    return RunMetrics(
        run_id=records[0].run_id,
        tasks=len(records),
        ok=sum(r.status == "ok" for r in records),
        errors=sum(r.status == "error" for r in records),
        timeouts=sum(r.status == "timeout" for r in records),
        budget_stopped=sum(r.budget_stopped for r in records),
        accuracy=sum(bool(r.passed) for r in records) / len(records),
        pass_at=pass_at,
        usage=usage,
        tokens_per_task=sum(r.tokens for r in records) / len(records),
        cost=sum(r.cost for r in records),
        latency_p50_s=float(np.percentile(latencies, 50)),
        latency_p90_s=float(np.percentile(latencies, 90)),
        latency_p99_s=float(np.percentile(latencies, 99)),
        token_share={m: (u.completion_tokens / completion if completion else 0.0) for m, u in usage.items()},
    )
