"""Prometheus metrics for one serving app, in the app's own registry (never the global default one,
so several apps in one test process do not collide).

    metrics = make_metrics("controller")          # names: camel_chat_controller_<metric>
    app.add_middleware(MetricsMiddleware, metrics=metrics)   # requests_total + latency per route
    metrics.tokens_total.labels(kind="prompt").inc(n)
    metrics.queue_depth.set(q)
    @app.get("/metrics") -> metrics_response(metrics)

Metrics: requests_total{endpoint,status}, tokens_total{kind=prompt|completion}, queue_depth (gauge),
request_latency_seconds{endpoint} (histogram; for streams, until the last body byte is sent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class Metrics:
    component: str
    registry: CollectorRegistry
    requests_total: Counter
    tokens_total: Counter
    queue_depth: Gauge
    request_latency_seconds: Histogram

    def observe(self, endpoint: str, status: int | str, seconds: float) -> None:
        """Count one finished request and record its latency."""
        self.requests_total.labels(endpoint=endpoint, status=str(status)).inc()
        self.request_latency_seconds.labels(endpoint=endpoint).observe(seconds)

    def add_tokens(self, prompt: int = 0, completion: int = 0) -> None:
        if prompt:
            self.tokens_total.labels(kind="prompt").inc(prompt)
        if completion:
            self.tokens_total.labels(kind="completion").inc(completion)


def make_metrics(component: str) -> Metrics:
    """Fresh metrics in a fresh registry, named `camel_chat_<component>_...`."""
    registry = CollectorRegistry(auto_describe=True)
    kw: dict[str, Any] = {"namespace": "camel_chat", "subsystem": component, "registry": registry}
    return Metrics(
        component=component,
        registry=registry,
        requests_total=Counter(
            "requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"], **kw
        ),
        tokens_total=Counter("tokens_total", "Tokens processed, by kind (prompt|completion)", ["kind"], **kw),
        queue_depth=Gauge("queue_depth", "Requests running or waiting", **kw),
        request_latency_seconds=Histogram(
            "request_latency_seconds",
            "Request latency until the last byte",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            **kw,
        ),
    )


def metrics_response(metrics: Metrics) -> Response:
    """The Prometheus text exposition of `metrics`' registry."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """ASGI middleware: for every HTTP request, `requests_total` and `request_latency_seconds`.

    The endpoint label is the matched route's path template (bounded cardinality); unmatched
    paths are labelled "unmatched". `/metrics` itself is not counted.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, clock: Any = time.perf_counter) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/metrics":
            await self.app(scope, receive, send)
            return
        start = self.clock()
        status = 500
        done = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done = True
                self._record(scope, status, start)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not done:  # exception or client gone before the body finished
                self._record(scope, status if status != 200 else 499, start)

    def _record(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        self.metrics.observe(endpoint, status, self.clock() - start)
