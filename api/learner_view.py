"""What the learner page shows of one session, as one typed value built from the use cases.

:func:`build` reads the session, the meter's readings (the burn-rate chart), the measurements now
(:class:`labctl.service.observation.Observation`: each pod's use, each workload's requests), the newest submission
with its checks and receipt, and the attempts left, and decides which actions the page offers in this state (the use
cases still decide whether an action is allowed when it is asked for). Reading the page is not learner activity: it
does not hold off the idle timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from markupsafe import Markup
from sqlalchemy import select

from api import charts
from labctl.catalog.models import Lab
from labctl.errors import LabctlError
from labctl.service import allowances, costs, policy
from labctl.service.auth import Principal
from labctl.service.observation import Observation, PodMetrics
from labctl.store import meter_readings
from labctl.store.models import SandboxSession, Submission

STATE_WORDS = {
    "provisioning": "Preparing your sandbox",
    "ready": "Ready",
    "suspended": "Suspended",
    "submitted": "Submitted: grading",
    "graded": "Graded",
    "terminating": "Ending",
    "terminated": "Ended",
    "failed": "Failed",
}
EXTENSIONS = (15 * 60, 30 * 60, 60 * 60, 2 * 3600)


@dataclass(frozen=True)
class WorkloadRow:
    workload: str
    offered: float
    served: float
    dropped: float
    served_share: float | None
    cost_per_1000_requests: float | None


@dataclass(frozen=True)
class Actions:
    extend: tuple[tuple[int, str], ...]  # (seconds, label) the learner may still ask for; empty: no extension
    suspend: bool
    resume: bool
    resume_note: str | None  # why a suspended session cannot be resumed from the page
    ask_budget: bool
    submit: bool


@dataclass(frozen=True)
class LearnerView:
    session_id: str
    lab: Lab
    state: str
    state_word: str
    reason: str | None
    suspend_reason: str | None
    now: datetime
    expires_at: datetime | None
    deadline_at: datetime | None
    budget_usd: float
    accrued_usd: float
    burn_rate_usd_per_hour: float
    forecast_usd: float
    budget_percent: float  # 0-100 and beyond
    meter_note: str | None
    budget_request_usd: float | None
    chart: Markup
    pods: tuple[PodMetrics, ...]
    workloads: tuple[WorkloadRow, ...]
    measured_at: datetime | None
    metrics_note: str | None
    submission: Submission | None
    attempts: int
    attempts_left: int
    actions: Actions

    @property
    def grading(self) -> bool:
        return self.submission is not None and self.submission.state == "grading"

    def json(self) -> dict[str, Any]:
        """The live figures the page's script needs besides the panels' HTML."""
        return {"state": self.state, "state_word": self.state_word, "now": self.now.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "deadline_at": self.deadline_at.isoformat() if self.deadline_at else None,
                "accrued_usd": self.accrued_usd, "budget_usd": self.budget_usd, "grading": self.grading,
                "actions": {"extend": [list(o) for o in self.actions.extend], "suspend": self.actions.suspend,
                            "resume": self.actions.resume, "resume_note": self.actions.resume_note,
                            "ask_budget": self.actions.ask_budget, "submit": self.actions.submit}}


def build(row: SandboxSession, *, lab: Lab, principal: Principal, observation: Observation,
          now: datetime) -> LearnerView:
    """The page's view of ``row`` at ``now`` for the learner ``principal``."""
    sessions = observation.sessions
    with sessions.store.session() as db:
        readings = meter_readings.series(db, session_id=row.id)
        submission = db.scalars(select(Submission).where(Submission.session_id == row.id)
                                .order_by(Submission.attempt.desc()).limit(1)).first()
        allowance = allowances.of(db, lab=lab, learner_id=row.learner_id)
    pods: tuple[PodMetrics, ...] = ()
    rows: tuple[WorkloadRow, ...] = ()
    measured_at: datetime | None = None
    note: str | None = None
    if row.state in ("ready", "suspended", "submitted", "graded"):
        try:
            measured = observation.metrics(row.id, principal=principal, activity=False)
        except LabctlError as exc:
            note = f"Measurements are not available right now: {exc.detail}"
        else:
            pods, measured_at = measured.pods, measured.taken_at
            service = _latest_service(readings)
            rows = tuple(WorkloadRow(
                workload=w.workload, offered=float(w.offered), served=float(w.served), dropped=float(w.dropped),
                served_share=None if w.served_share is None else float(w.served_share),
                cost_per_1000_requests=service.get(w.workload)) for w in measured.workloads)
    else:
        note = "Your sandbox has no workloads to measure in this state."
    accrued = Decimal(row.accrued_usd or 0)
    return LearnerView(
        session_id=row.id, lab=lab, state=row.state, state_word=STATE_WORDS.get(row.state, row.state),
        reason=row.reason, suspend_reason=row.suspend_reason, now=now, expires_at=row.expires_at,
        deadline_at=row.deadline_at, budget_usd=float(row.budget_usd), accrued_usd=float(accrued),
        burn_rate_usd_per_hour=float(row.burn_rate_usd_per_hour or 0),
        forecast_usd=float(costs.forecast_usd(row, now=now)), budget_percent=float(costs.budget_share(row) * 100),
        meter_note=row.meter_note,
        budget_request_usd=float(row.budget_request_usd) if row.budget_request_usd is not None else None,
        chart=charts.burn_chart([charts.Point(r.at, float(r.burn_rate_usd_per_hour)) for r in readings], now=now),
        pods=pods, workloads=rows, measured_at=measured_at, metrics_note=note, submission=submission,
        attempts=allowance.attempts, attempts_left=allowance.attempts_left,
        actions=actions(row, now=now, attempts_left=allowance.attempts_left))


def actions(row: SandboxSession, *, now: datetime, attempts_left: int) -> Actions:
    """Which buttons the page shows for the session as it is (pure)."""
    live = row.state in ("ready", "suspended")
    extend: tuple[tuple[int, str], ...] = ()
    if live and row.expires_at is not None and row.deadline_at is not None and row.expires_at < row.deadline_at:
        room = (row.deadline_at - row.expires_at).total_seconds()
        extend = tuple((s, _duration(s)) for s in EXTENSIONS if s <= room)
        if not extend:
            extend = ((int(room), f"{_duration(int(room))} (up to the deadline)"),)
    sticky = row.state == "suspended" and row.suspend_reason in policy.STICKY
    resume_note = None
    if sticky:
        resume_note = ("Spending reached the budget's suspend level: ask for more budget, or ask your instructor."
                       if row.suspend_reason == "budget" else
                       f"Only an instructor can lift this suspension ({row.suspend_reason}).")
    return Actions(extend=extend, suspend=row.state == "ready", resume=row.state == "suspended" and not sticky,
                   resume_note=resume_note,
                   ask_budget=row.state in ("ready", "suspended", "submitted", "graded")
                   and row.budget_request_usd is None,
                   submit=row.state == "ready" and attempts_left > 0)


def _latest_service(readings: list[meter_readings.MeterReading]) -> dict[str, float | None]:
    """Each workload's cost per 1,000 requests at the newest metering that had service figures."""
    for reading in reversed(readings):
        if reading.service:
            return {str(f.get("workload")): f.get("cost_per_1000_requests") for f in reading.service}
    return {}


def _duration(seconds: int) -> str:
    delta = timedelta(seconds=seconds)
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{max(minutes, 1)} min"
