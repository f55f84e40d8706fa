"""Prometheus metrics of one server: requests by route and status, latency, documents, engine time, in flight."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..engine import RunMeta


class Metrics:
    """One registry per app, so that several apps in one process (as in the tests) do not share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "qwen3_rag_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "qwen3_rag_request_seconds", "Wall time of a request", ["route"], registry=self.registry
        )
        self.in_flight = Gauge("qwen3_rag_requests_in_flight", "Requests being served", registry=self.registry)
        self.documents = Counter(
            "qwen3_rag_documents", "Texts scored or embedded (duplicates included)", ["model"], registry=self.registry
        )
        self.tokens = Counter(
            "qwen3_rag_tokens_computed", "Tokens through the model", ["model"], registry=self.registry
        )
        self.compute = Counter(
            "qwen3_rag_compute_seconds",
            "Wall time of the packs requests took part in",
            ["model"],
            registry=self.registry,
        )
        self.queued = Counter(
            "qwen3_rag_queued_seconds",
            "Time requests waited for packs of other requests",
            ["model"],
            registry=self.registry,
        )

        self.queued_tokens = Gauge(
            "qwen3_rag_queued_tokens", "Tokens of admitted requests not yet computed", registry=self.registry
        )
        self.rejections = Counter(
            "qwen3_rag_rejected_requests",
            "Requests refused with 429, by the limit they passed (requests, tokens)",
            ["limit"],
            registry=self.registry,
        )
        self.disconnects = Counter(
            "qwen3_rag_cancelled_requests",
            "Requests whose client went away; their packs not yet started were dropped",
            registry=self.registry,
        )
        self.packs = Gauge(
            "qwen3_rag_packs_started", "Packs the model has started since it loaded", ["model"], registry=self.registry
        )

    def engine_call(self, model: str, meta: RunMeta) -> None:
        self.documents.labels(model).inc(meta.documents)
        self.tokens.labels(model).inc(meta.tokens_computed)
        self.compute.labels(model).inc(meta.compute_ms / 1000)
        self.queued.labels(model).inc(meta.queued_ms / 1000)

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count every request under its route template (never the raw path: unknown paths are one label)."""
        start = time.perf_counter()
        self.in_flight.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            self.in_flight.dec()
            route = request.scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.requests.labels(label, str(status)).inc()
            self.latency.labels(label).observe(time.perf_counter() - start)
