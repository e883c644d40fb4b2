"""The server's Prometheus metrics (one registry per app, so two apps in a process never clash)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from forkpath.models import Usage

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Requests, tokens per model, queue depth, latency histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "forkpath_requests",
            "Requests answered, by endpoint, kind of target and HTTP status.",
            ["endpoint", "target", "status"],
            registry=r,
        )
        self.rejected = Counter(
            "forkpath_requests_rejected", "Requests refused with 429 because the queue was full.", registry=r
        )
        self.cancelled = Counter(
            "forkpath_requests_cancelled", "Requests whose client went away before the answer.", registry=r
        )
        self.calls = Counter("forkpath_model_calls", "Model calls, by model.", ["model"], registry=r)
        self.cached_calls = Counter(
            "forkpath_model_cached_calls",
            "Model calls answered from the generation cache.",
            ["model"],
            registry=r,
        )
        self.tokens = Counter(
            "forkpath_tokens",
            "Tokens, by model and kind (prompt, completion).",
            ["model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "forkpath_cost_usd", "Provider cost in US dollars, by model.", ["model"], registry=r
        )
        self.running = Gauge("forkpath_requests_running", "Requests running now.", registry=r)
        self.queued = Gauge("forkpath_queue_depth", "Requests waiting for a slot.", registry=r)
        self.latency = Histogram(
            "forkpath_request_latency_seconds",
            "Time from admission to the last byte, by endpoint and target.",
            ["endpoint", "target"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "forkpath_time_to_first_token_seconds",
            "Streams: time from admission to the first answer text.",
            ["target"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        # Resolved label sets: ``labels()`` takes a lock and checks its arguments on every call.
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def count(self, endpoint: str, target: str, status: str) -> None:
        """One request answered with ``status``."""
        key = (endpoint, target, status)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self.requests.labels(endpoint, target, status)
        child.inc()

    def answered(self, endpoint: str, target: str, status: str, seconds: float) -> None:
        """One request answered with ``status`` after ``seconds`` since its admission."""
        self.count(endpoint, target, status)
        key = (endpoint, target)
        child = self._timed.get(key)
        if child is None:
            child = self._timed[key] = self.latency.labels(endpoint, target)
        child.observe(seconds)

    def record_usage(self, usage: dict[str, Usage]) -> None:
        for model, u in usage.items():
            self.calls.labels(model).inc(u.calls)
            self.cached_calls.labels(model).inc(u.cached_calls)
            self.tokens.labels(model, "prompt").inc(u.prompt_tokens)
            self.tokens.labels(model, "completion").inc(u.completion_tokens)
            self.cost.labels(model).inc(u.cost)

    def render(self, running: int, queued: int) -> bytes:
        self.running.set(running)
        self.queued.set(queued)
        return generate_latest(self.registry)
