"""The per-session cost gauges of ``/metrics`` (labelled with session, lab and learner ids), read from the store at
scrape time: the ledger is the source of truth, so every replica answers the same figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select

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
