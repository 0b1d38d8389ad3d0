"""The instructor dashboard's one typed view: a page of sessions (with what needs attention and which actions apply),
cost per lab and per learner, the grade distribution per lab, the budget requests to decide and the webhook
deliveries that failed.

Pure: :func:`build` takes what the use cases answered and the ``now`` to judge it by, and returns the view the
templates render; no store, no clock. A session *needs attention* when it has spent at least
:data:`NEAR_BUDGET_SHARE` of its budget, or when it is live and ends within :data:`NEAR_EXPIRY`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from api.charts import Bar, bar_chart
from labctl.outbox.endpoints import DeliveryView
from labctl.service import costs
from labctl.service.overview import LatestGrade
from labctl.service.states import ALLOWED, LIVE
from labctl.store.models import SandboxSession

NEAR_BUDGET_SHARE = Decimal("0.8")
NEAR_EXPIRY = timedelta(minutes=15)
GRADE_BINS = 5  # 0-20 %, 20-40 %, ... 80-100 %
EXTEND_CHOICES = ((900, "15 minutes"), (1800, "30 minutes"), (3600, "1 hour"))
STATES = ("provisioning", "ready", "suspended", "submitted", "graded", "terminating", "terminated", "failed")


@dataclass(frozen=True)
class Filters:
    """What the instructor filters the session list by (empty: all), and the page to show."""

    lab_id: str = ""
    learner_id: str = ""
    state: str = ""
    page: str = ""  # the paged use case's ``continue`` token

    def query(self, **changed: str) -> str:
        """These filters as a query string, with ``changed`` fields replaced (empty ones left out)."""
        fields = {"lab_id": self.lab_id, "learner_id": self.learner_id, "state": self.state, "continue": self.page}
        fields.update(changed)
        return urlencode({k: v for k, v in fields.items() if v})


@dataclass(frozen=True)
class SessionRow:
    id: str
    lab_id: str
    learner_id: str
    state: str
    spent_usd: Decimal
    budget_usd: Decimal
    budget_share: Decimal
    expires_at: datetime | None
    near_budget: bool
    near_expiry: bool
    actions: tuple[str, ...]  # of extend, suspend, resume, reset, stop

    @property
    def attention(self) -> bool:
        return self.near_budget or self.near_expiry


@dataclass(frozen=True)
class BudgetAsk:
    session_id: str
    lab_id: str
    learner_id: str
    request_id: str
    usd: Decimal
    reason: str
    budget_usd: Decimal
    spent_usd: Decimal


@dataclass(frozen=True)
class FailedDelivery:
    id: int
    event_type: str
    session_id: str | None
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None


@dataclass(frozen=True)
class LabGrades:
    lab_id: str
    graded: int
    chart: Markup


@dataclass(frozen=True)
class DashboardView:
    now: datetime
    filters: Filters
    labs: tuple[str, ...]
    sessions: tuple[SessionRow, ...]
    next_page: str | None  # the query string of the next page, if there is one
    cost_by_lab: Markup
    cost_by_learner: Markup
    grades: tuple[LabGrades, ...]
    budget_asks: tuple[BudgetAsk, ...]
    deliveries: tuple[FailedDelivery, ...]
    states: tuple[str, ...] = STATES
    extend_choices: tuple[tuple[int, str], ...] = EXTEND_CHOICES

    @property
    def attention(self) -> int:
        return sum(1 for s in self.sessions if s.attention)

    def json(self) -> dict[str, Any]:
        """The figures the dashboard's script reads besides the panels' HTML."""
        return {"now": self.now.isoformat(), "attention": self.attention, "sessions": len(self.sessions),
                "budget_requests": len(self.budget_asks), "failed_deliveries": len(self.deliveries)}


def near_budget(row: SandboxSession) -> bool:
    return costs.budget_share(row) >= NEAR_BUDGET_SHARE


def near_expiry(row: SandboxSession, *, now: datetime) -> bool:
    """A live session that ends within :data:`NEAR_EXPIRY` of ``now`` (or should have ended already)."""
    return row.state in LIVE and row.expires_at is not None and row.expires_at - now < NEAR_EXPIRY


def actions(row: SandboxSession) -> tuple[str, ...]:
    """The instructor's actions that the session's state allows (the use cases still decide each one)."""
    allowed = ALLOWED.get(row.state, frozenset())
    found = []
    if row.state in ("ready", "suspended") and row.expires_at is not None and row.deadline_at is not None \
            and row.expires_at < row.deadline_at:
        found.append("extend")
    if row.state == "ready":
        found.append("suspend")
    if row.state == "suspended":
        found.append("resume")
    if "provisioning" in allowed:
        found.append("reset")
    if "terminating" in allowed:
        found.append("stop")
    return tuple(found)


def session_row(row: SandboxSession, *, now: datetime) -> SessionRow:
    return SessionRow(id=row.id, lab_id=row.lab_id, learner_id=row.learner_id, state=row.state,
                      spent_usd=Decimal(row.accrued_usd or 0), budget_usd=Decimal(row.budget_usd),
                      budget_share=costs.budget_share(row), expires_at=row.expires_at,
                      near_budget=near_budget(row), near_expiry=near_expiry(row, now=now), actions=actions(row))


def grade_bins(grades: Sequence[LatestGrade]) -> list[int]:
    """How many of ``grades`` fall in each fifth of the score range (a full score in the top one).

    >>> from decimal import Decimal as D
    >>> grade_bins([LatestGrade("s1", "lab", "ada", D(0), D(10)), LatestGrade("s2", "lab", "bob", D(10), D(10)),
    ...             LatestGrade("s3", "lab", "cy", D(5), D(10))])
    [1, 0, 1, 0, 1]
    """
    counts = [0] * GRADE_BINS
    for grade in grades:
        counts[min(GRADE_BINS - 1, max(0, int(grade.share * GRADE_BINS)))] += 1
    return counts


def grade_charts(grades: Sequence[LatestGrade]) -> tuple[LabGrades, ...]:
    by_lab: dict[str, list[LatestGrade]] = defaultdict(list)
    for grade in grades:
        by_lab[grade.lab_id].append(grade)
    width = 100 // GRADE_BINS
    out = []
    for lab_id in sorted(by_lab):
        counts = grade_bins(by_lab[lab_id])
        bars = [Bar(label=f"{i * width} to {(i + 1) * width} %", value=n, text=f"{n} session{'s' if n != 1 else ''}")
                for i, n in enumerate(counts)]
        out.append(LabGrades(lab_id=lab_id, graded=len(by_lab[lab_id]),
                             chart=bar_chart(bars, title=f"Latest grades in {lab_id}", empty="")))
    return tuple(out)


def cost_chart(rows: Sequence[costs.CostRow], *, title: str, limit: int = 12) -> Markup:
    """The most expensive ``limit`` groups of the cost report, as bars of their spend."""
    bars = [Bar(label=r.key, value=float(r.spend_usd), text=_usd(r.spend_usd)) for r in rows[:limit]]
    return bar_chart(bars, title=title, empty="No spend yet: sessions appear here once the meter has run.")


def _usd(value: Decimal) -> str:
    return f"${value:,.2f}" if abs(value) >= 10 else f"${value:,.4f}"


def build(*, filters: Filters, labs: Sequence[str], page: Sequence[SandboxSession], next_token: str | None,
          cost_by_lab: Sequence[costs.CostRow], cost_by_learner: Sequence[costs.CostRow],
          grades: Sequence[LatestGrade], pending: Sequence[SandboxSession], deliveries: Sequence[DeliveryView],
          now: datetime) -> DashboardView:
    """The dashboard as of ``now`` from what the use cases answered."""
    asks = tuple(BudgetAsk(session_id=r.id, lab_id=r.lab_id, learner_id=r.learner_id,
                           request_id=r.budget_request_id or "", usd=Decimal(r.budget_request_usd or 0),
                           reason=r.budget_request_reason or "", budget_usd=Decimal(r.budget_usd),
                           spent_usd=Decimal(r.accrued_usd or 0)) for r in pending)
    failed = tuple(FailedDelivery(id=v.delivery.id, event_type=v.event_type, session_id=v.delivery.session_id,
                                  state=v.delivery.state, attempts=v.delivery.attempts,
                                  last_status=v.delivery.last_status, last_error=v.delivery.last_error,
                                  last_attempt_at=v.delivery.last_attempt_at)
                   for v in sorted(deliveries, key=lambda v: -v.delivery.id))
    return DashboardView(
        now=now, filters=filters, labs=tuple(sorted(labs)),
        sessions=tuple(session_row(r, now=now) for r in page),
        next_page=filters.query(**{"continue": next_token}) if next_token else None,
        cost_by_lab=cost_chart(cost_by_lab, title="Spend per lab"),
        cost_by_learner=cost_chart(cost_by_learner, title="Spend per learner"),
        grades=grade_charts(grades), budget_asks=asks, deliveries=failed)
