"""Prometheus metrics of the service: request counts and latencies per route, plus build info (``registry``, public),
and the per-session cost gauges the composition root built (:mod:`labctl.service.gauges`; ``sessions``, for
instructors)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

import labctl


class Metrics:
    def __init__(self, session_costs: Collector | None = None) -> None:
        self.registry = CollectorRegistry()
        self.sessions = CollectorRegistry()
        if session_costs is not None:
            self.sessions.register(session_costs)
        self.requests = Counter("labctl_http_requests", "HTTP requests handled", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("labctl_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry)
        self.ready = Gauge("labctl_ready", "1 when the last readiness check passed", registry=self.registry)
        info = Gauge("labctl_build_info", "labctl version", ["version"], registry=self.registry)
        info.labels(version=labctl.__version__).set(1)

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "(unmatched)")
            self.requests.labels(request.method, path, str(response.status_code)).inc()
            self.latency.labels(request.method, path).observe(time.perf_counter() - started)
            return response
