"""Request and response bodies of the HTTP API (the contract in DESIGN.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from labctl.catalog.models import Lab
from labctl.service import costs
from labctl.service.allowances import Allowance
from labctl.service.costs import CostRow
from labctl.store.models import SandboxSession, SessionEvent, Submission

LEARNER_ID_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class StartSession(BaseModel):
    lab_id: str = Field(min_length=1, max_length=63, examples=["tag-for-showback"])
    learner_id: str = Field(pattern=LEARNER_ID_PATTERN, examples=["ada-lovelace"],
                            description="1-63 letters, digits, '-', '_' or '.', starting and ending alphanumeric")


class Cost(BaseModel):
    accrued_usd: float = 0.0
    burn_rate_usd_per_hour: float = 0.0
    forecast_usd: float = Field(default=0.0, description="accrued + burn rate until expiry")
    budget_share: float = Field(default=0.0, description="accrued as a percentage of the budget")
    note: str | None = Field(default=None, description="how the meter priced it (e.g. requests, no metrics)")


class SessionOut(BaseModel):
    id: str
    lab_id: str
    learner_id: str
    provider: str
    state: str
    reason: str | None
    created_at: datetime
    ready_at: datetime | None
    expires_at: datetime | None
    deadline_at: datetime | None
    budget_usd: float
    cost: Cost
    namespace: str | None
    learner_url: str | None
    suspend_reason: str | None = None
    budget_request_usd: float | None = None
    budget_request_id: str | None = Field(default=None, description="name it (or its amount) to approve it")

    @classmethod
    def of(cls, row: SandboxSession) -> SessionOut:
        return cls(
            id=row.id, lab_id=row.lab_id, learner_id=row.learner_id, provider=row.provider, state=row.state,
            reason=row.reason, created_at=row.created_at, ready_at=row.ready_at,
            expires_at=row.expires_at, deadline_at=row.deadline_at, budget_usd=float(row.budget_usd),
            cost=Cost(accrued_usd=float(row.accrued_usd or 0),
                      burn_rate_usd_per_hour=float(row.burn_rate_usd_per_hour or 0),
                      forecast_usd=round(float(costs.forecast_usd(row, now=datetime.now(UTC))), 6),
                      budget_share=round(float(costs.budget_share(row) * 100), 3), note=row.meter_note),
            namespace=row.namespace, learner_url=None, suspend_reason=row.suspend_reason,
            budget_request_usd=float(row.budget_request_usd) if row.budget_request_usd is not None else None,
            budget_request_id=row.budget_request_id,
        )


class EventOut(BaseModel):
    at: datetime
    kind: str
    actor: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: SessionEvent) -> EventOut:
        return cls(at=row.at, kind=row.kind, actor=row.actor, detail=row.detail)


class LabOut(BaseModel):
    id: str
    title: str
    summary: str
    provider: str
    budget_usd: float
    time_limit: str
    max_extension: str
    required_labels: list[str]

    @classmethod
    def of(cls, lab: Lab) -> LabOut:
        return cls(id=lab.id, title=lab.title, summary=lab.summary, provider=lab.provider,
                   budget_usd=float(lab.budget.usd), time_limit=lab.time.limit, max_extension=lab.time.max_extension,
                   required_labels=list(lab.required_labels))


class CreateToken(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["instructor", "platform", "exam", "learner"]
    learner_id: str | None = Field(default=None, pattern=LEARNER_ID_PATTERN)


class TokenOut(BaseModel):
    name: str
    role: str
    learner_id: str | None
    token: str = Field(description="shown once; only its hash is stored")


class Extend(BaseModel):
    seconds: int = Field(gt=0, le=7 * 24 * 3600, description="how much more time, in seconds")


class BudgetRequest(BaseModel):
    usd: float = Field(gt=0, le=10_000)
    reason: str = Field(min_length=1, max_length=500)


class BudgetDecision(BaseModel):
    """Names the request decided on, as the instructor saw it: a request changed since is a 409."""

    request_id: str | None = Field(default=None, max_length=40, examples=["req-0a1b2c3d4e"])
    usd: float | None = Field(default=None, gt=0, le=10_000, description="the amount of the request")


class GrantIn(BaseModel):
    lab_id: str = Field(min_length=1, max_length=63)
    learner_id: str = Field(pattern=LEARNER_ID_PATTERN)
    attempts: int = Field(default=0, ge=0, le=100, description="more submissions")
    usd: float = Field(default=0, ge=0, le=10_000, description="more money, in US dollars")
    reason: str = Field(min_length=1, max_length=500)


class AllowanceOut(BaseModel):
    """What a learner has in a lab over all its sessions."""

    lab_id: str
    learner_id: str
    attempts: int = Field(description="the lab's plus those granted")
    attempts_used: int
    attempts_left: int
    budget_usd: float = Field(description="the lab's plus what was granted or approved")
    spent_usd: float = Field(description="by the learner's sessions other than the live one")
    budget_left_usd: float = Field(description="what the live (or the next) session may spend")

    @classmethod
    def of(cls, a: Allowance) -> AllowanceOut:
        return cls(lab_id=a.lab_id, learner_id=a.learner_id, attempts=a.attempts, attempts_used=a.attempts_used,
                   attempts_left=a.attempts_left, budget_usd=float(a.budget_usd), spent_usd=float(a.spent_usd),
                   budget_left_usd=float(a.budget_left_usd))


class SubmissionOut(BaseModel):
    id: str
    session_id: str
    attempt: int
    state: str = Field(description="grading, graded or error")
    created_at: datetime
    graded_at: datetime | None
    score: float | None
    max_score: float | None
    checks: list[dict[str, Any]]
    receipt: dict[str, Any] | None
    error: str | None

    @classmethod
    def of(cls, row: Submission) -> SubmissionOut:
        return cls(id=row.id, session_id=row.session_id, attempt=row.attempt, state=row.state,
                   created_at=row.created_at, graded_at=row.graded_at,
                   score=float(row.score) if row.score is not None else None,
                   max_score=float(row.max_score) if row.max_score is not None else None,
                   checks=list(row.checks or []), receipt=row.receipt, error=row.error)


class CostRowOut(BaseModel):
    key: str = Field(description="the lab id or the learner id")
    sessions: int
    live: int
    spend_usd: float
    budget_usd: float
    budget_share: float = Field(description="spend / budget (1 = all of it)")
    burn_rate_usd_per_hour: float = Field(description="of the live sessions now")
    spot_share: float = Field(description="share of pod-hours on spot capacity")
    idle_share: float = Field(description="share of the spend that paid for idle workloads and orphans")

    @classmethod
    def of(cls, row: CostRow) -> CostRowOut:
        return cls(key=row.key, sessions=row.sessions, live=row.live, spend_usd=round(float(row.spend_usd), 6),
                   budget_usd=float(row.budget_usd), budget_share=round(float(row.budget_share), 6),
                   burn_rate_usd_per_hour=round(float(row.burn_rate_usd_per_hour), 6),
                   spot_share=round(float(row.spot_share), 4), idle_share=round(float(row.idle_share), 4))
