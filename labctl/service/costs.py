"""The instructor's cost report: spend against budget, spot share and idle share, per lab or per learner."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import select

from labctl.cost import model
from labctl.service.states import LIVE
from labctl.store.db import Store
from labctl.store.models import SandboxSession

GroupBy = Literal["lab", "learner"]


@dataclass(frozen=True)
class CostRow:
    key: str
    sessions: int
    live: int
    spend_usd: Decimal
    budget_usd: Decimal
    burn_rate_usd_per_hour: Decimal
    spot_share: Decimal  # share of pod-hours that ran on spot capacity
    idle_share: Decimal  # share of the spend that paid for idle things

    @property
    def budget_share(self) -> Decimal:
        return self.spend_usd / self.budget_usd if self.budget_usd else Decimal(0)


def forecast_usd(row: SandboxSession, *, now: datetime) -> Decimal:
    """What the session will have cost at expiry if its burn rate stays (what it cost, once it is over)."""
    accrued = Decimal(row.accrued_usd or 0)
    if row.state not in LIVE or row.expires_at is None:
        return accrued
    return model.forecast(accrued, Decimal(row.burn_rate_usd_per_hour or 0), now, row.expires_at)


def budget_share(row: SandboxSession) -> Decimal:
    """Spend as a share of the session's budget (1 = all of it)."""
    return model.budget_share(row.accrued_usd or 0, row.budget_usd) if row.budget_usd else Decimal(0)


def report(store: Store, *, group_by: GroupBy) -> list[CostRow]:
    """One row per lab or learner over every session, most expensive first."""
    with store.session() as db:
        # A warm pool's unclaimed sandboxes are no learner's: their cost is the pool's ledger (GET .../pool).
        rows = list(db.scalars(select(SandboxSession).where(SandboxSession.pool_hash.is_(None))))
    groups: dict[str, list[SandboxSession]] = defaultdict(list)
    for row in rows:
        groups[row.lab_id if group_by == "lab" else row.learner_id].append(row)
    out = []
    for key, members in groups.items():
        spend = sum((Decimal(m.accrued_usd or 0) for m in members), Decimal(0))
        pod_hours = sum((Decimal(m.pod_hours or 0) for m in members), Decimal(0))
        spot_hours = sum((Decimal(m.spot_pod_hours or 0) for m in members), Decimal(0))
        idle = sum((Decimal(m.idle_usd or 0) for m in members), Decimal(0))
        live = [m for m in members if m.state in ("ready", "suspended", "submitted", "graded")]
        out.append(CostRow(
            key=key, sessions=len(members), live=len(live), spend_usd=spend,
            budget_usd=sum((Decimal(m.budget_usd) for m in members), Decimal(0)),
            burn_rate_usd_per_hour=sum((Decimal(m.burn_rate_usd_per_hour or 0) for m in live), Decimal(0)),
            spot_share=spot_hours / pod_hours if pod_hours else Decimal(0),
            idle_share=min(Decimal(1), idle / spend) if spend else Decimal(0),
        ))
    return sorted(out, key=lambda r: (-r.spend_usd, r.key))
