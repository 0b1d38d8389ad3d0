"""Prometheus metrics of the service: request counts and latencies per route, plus build info (``registry``, public),
and the per-session cost gauges labelled with session, lab and learner ids (``sessions``, for instructors)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select

import labctl
from labctl.service import costs
from labctl.service.states import LIVE
from labctl.store.db import Store
from labctl.store.models import SandboxSession


class SessionCosts(Collector):
    """Per-session cost gauges read from the store at scrape time (the ledger is the source of truth)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        labels = ["session", "lab", "learner", "state"]
        families = {
            "accrued": GaugeMetricFamily("labctl_session_accrued_usd", "money used so far", labels=labels),
            "burn": GaugeMetricFamily("labctl_session_burn_rate_usd_per_hour", "current burn rate", labels=labels),
            "forecast": GaugeMetricFamily("labctl_session_forecast_usd", "accrued + burn rate until expiry",
                                          labels=labels),
            "share": GaugeMetricFamily("labctl_session_budget_share", "accrued / budget (1 = all)", labels=labels),
        }
        now = datetime.now(UTC)
        with self.store.session() as db:
            rows = db.scalars(select(SandboxSession).where(SandboxSession.state.in_(LIVE))).all()
        for row in rows:
            key = [row.id, row.lab_id, row.learner_id, row.state]
            families["accrued"].add_metric(key, float(row.accrued_usd or 0))
            families["burn"].add_metric(key, float(row.burn_rate_usd_per_hour or 0))
            families["forecast"].add_metric(key, float(costs.forecast_usd(row, now=now)))
            families["share"].add_metric(key, float(costs.budget_share(row)))
        yield from families.values()


class Metrics:
    def __init__(self, store: Store | None = None) -> None:
        self.registry = CollectorRegistry()
        self.sessions = CollectorRegistry()
        if store is not None:
            self.sessions.register(SessionCosts(store))
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
