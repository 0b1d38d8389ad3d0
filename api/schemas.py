"""Request and response bodies of the HTTP API: the contract the course site, the CLI and the exam platform use
(the README's "Using it").

Messages that come from backends (a session's reason, a submission's error) pass through :mod:`labctl.redact`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from labctl import redact
from labctl.catalog.models import Lab
from labctl.service import costs
from labctl.service.allowances import Allowance
from labctl.service.auth import Principal
from labctl.service.clusters import ClusterView
from labctl.service.costs import CostRow
from labctl.service.observation import SessionMetrics
from labctl.service.pools import PoolView
from labctl.service.roles import Role
from labctl.store.models import ApiToken, SandboxSession, SessionEvent, Submission

LEARNER_ID_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
# An integer id in a path: bounded to what an integer column holds on every store, so a huge one is a 422.
IntId = Annotated[int, Path(ge=1, le=2**31 - 1)]


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


class SessionBrief(BaseModel):
    """What an exam token sees of a session: enough to submit it and match the grade to the learner."""

    id: str
    lab_id: str
    learner_id: str
    provider: str
    state: str
    created_at: datetime
    expires_at: datetime | None
    deadline_at: datetime | None

    @classmethod
    def of(cls, row: SandboxSession) -> SessionBrief:
        return cls(id=row.id, lab_id=row.lab_id, learner_id=row.learner_id, provider=row.provider, state=row.state,
                   created_at=row.created_at, expires_at=row.expires_at, deadline_at=row.deadline_at)


class SessionOut(SessionBrief):
    reason: str | None
    ready_at: datetime | None
    budget_usd: float
    cost: Cost
    namespace: str | None
    cluster: str | None = Field(default=None, description="the Kubernetes cluster the sandbox lives in (null: a "
                                                          "cloud lab's)")
    learner_url: str | None = Field(description="a short-lived signed link to the learner page (for the learner, the "
                                                "course site that started the session and instructors; else null)")
    suspend_reason: str | None = None
    budget_request_usd: float | None = None
    budget_request_id: str | None = Field(default=None, description="name it (or its amount) to approve it")

    @classmethod
    def of(cls, row: SandboxSession, *, learner_url: str | None = None) -> SessionOut:
        return cls(
            id=row.id, lab_id=row.lab_id, learner_id=row.learner_id, provider=row.provider, state=row.state,
            reason=redact.optional(row.reason), created_at=row.created_at, ready_at=row.ready_at,
            expires_at=row.expires_at, deadline_at=row.deadline_at, budget_usd=float(row.budget_usd),
            cost=Cost(accrued_usd=float(row.accrued_usd or 0),
                      burn_rate_usd_per_hour=float(row.burn_rate_usd_per_hour or 0),
                      forecast_usd=round(float(costs.forecast_usd(row, now=datetime.now(UTC))), 6),
                      budget_share=round(float(costs.budget_share(row) * 100), 3), note=row.meter_note),
            namespace=row.namespace, cluster=row.cluster, learner_url=learner_url, suspend_reason=row.suspend_reason,
            budget_request_usd=float(row.budget_request_usd) if row.budget_request_usd is not None else None,
            budget_request_id=row.budget_request_id,
        )


def session_view(row: SandboxSession, principal: Principal,
                 learner_url: Callable[[SandboxSession], str | None]) -> SessionOut | SessionBrief:
    """The session as this caller may see it: exam tokens get the brief view (no cost, namespace or reasons)."""
    return SessionBrief.of(row) if principal.role == "exam" else SessionOut.of(row, learner_url=learner_url(row))


class PodMetricsOut(BaseModel):
    name: str
    workload: str | None
    node: str | None
    phase: str | None
    cpu_cores: float | None = Field(description="CPU in use, cores")
    memory_bytes: int | None = Field(description="memory in use (working set), bytes")
    DCGM_FI_PROF_GR_ENGINE_ACTIVE: float | None = Field(description="GPU engine active, 0-1 of the pod's GPU or slice")
    DCGM_FI_DEV_FB_USED: float | None = Field(description="GPU frame buffer used, MiB")
    status: str | None = Field(description="the simulated world's view: serving, not-ready, oom or idle")


class WorkloadServiceOut(BaseModel):
    workload: str
    requests_offered: float
    requests_served: float
    requests_dropped: float
    served_share: float | None


class MetricsOut(BaseModel):
    session_id: str
    taken_at: datetime
    usage_source: str = Field(description="simulator (the local cluster), metrics (metrics.k8s.io) or requests (none)")
    pods: list[PodMetricsOut]
    workloads: list[WorkloadServiceOut]

    @classmethod
    def of(cls, m: SessionMetrics) -> MetricsOut:
        return cls(session_id=m.session_id, taken_at=m.taken_at, usage_source=m.usage_source,
                   pods=[PodMetricsOut(name=p.name, workload=p.workload, node=p.node, phase=p.phase,
                                       cpu_cores=p.cpu_cores, memory_bytes=p.memory_bytes,
                                       DCGM_FI_PROF_GR_ENGINE_ACTIVE=p.gpu_engine_active,
                                       DCGM_FI_DEV_FB_USED=p.gpu_memory_mib, status=p.status) for p in m.pods],
                   workloads=[WorkloadServiceOut(
                       workload=w.workload, requests_offered=float(w.offered), requests_served=float(w.served),
                       requests_dropped=float(w.dropped),
                       served_share=None if w.served_share is None else float(w.served_share))
                       for w in m.workloads])


class EventOut(BaseModel):
    at: datetime
    kind: str
    actor: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: SessionEvent) -> EventOut:
        detail = {k: redact.addresses(v) if isinstance(v, str) else v for k, v in (row.detail or {}).items()}
        return cls(at=row.at, kind=row.kind, actor=row.actor, detail=detail)


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


class PoolOut(BaseModel):
    lab_id: str
    warm_wanted: int = Field(description="unclaimed sandboxes the pool keeps now (its schedule's window, else warm)")
    pooled: int = Field(description="warm, unclaimed sandboxes of the lab as it is now")
    provisioning: int = Field(description="pooled sandboxes being made")
    stale: int = Field(description="pooled sandboxes of an older version of the lab, being drained")
    idle_cost_usd: float = Field(description="what unclaimed sandboxes have cost the course so far (no learner's)")
    sandbox_hours: float = Field(description="unclaimed sandbox-hours paid for")

    @classmethod
    def of(cls, view: PoolView) -> PoolOut:
        return cls(lab_id=view.lab_id, warm_wanted=view.warm_wanted, pooled=view.pooled,
                   provisioning=view.provisioning, stale=view.stale, idle_cost_usd=float(view.idle_cost_usd),
                   sandbox_hours=float(view.sandbox_hours))


class ClusterOut(BaseModel):
    name: str
    reachable: bool
    error: str | None = Field(description="why the cluster did not answer (addresses cut); null when it did")
    nodes: int
    schedulable_nodes: int = Field(description="nodes neither cordoned nor NotReady: placement uses only these")
    allocatable: dict[str, float] = Field(description="the schedulable nodes' allocatable, summed (cpu in cores, "
                                                      "memory in bytes, GPUs and MIG slices in devices)")
    free: dict[str, float] = Field(description="allocatable minus the requests of the pods bound to those nodes")
    sessions: int = Field(description="live sessions (pooled ones included) whose sandbox lives there")
    starting: int = Field(description="starts placed there whose pods are not bound yet (their room is held)")

    @classmethod
    def of(cls, view: ClusterView) -> ClusterOut:
        return cls(name=view.name, reachable=view.reachable, error=redact.optional(view.error), nodes=view.nodes,
                   schedulable_nodes=view.schedulable_nodes,
                   allocatable={k: float(v) for k, v in sorted(view.allocatable.items())},
                   free={k: float(v) for k, v in sorted(view.free.items())}, sessions=view.sessions,
                   starting=view.holds)


class CreateToken(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Role
    learner_id: str | None = Field(default=None, pattern=LEARNER_ID_PATTERN)
    ttl_s: int | None = Field(default=None, gt=0, le=10 * 366 * 24 * 3600,
                              description="lifetime in seconds; default and maximum: the role's setting "
                                          "(12 hours for learner tokens, 90 days for the others)")


class TokenInfo(BaseModel):
    id: int
    name: str
    role: str
    learner_id: str | None
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None = Field(description="to the minute")
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenInfo:
        return cls(id=row.id, name=row.name, role=row.role, learner_id=row.learner_id, created_at=row.created_at,
                   expires_at=row.expires_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at)


class TokenOut(TokenInfo):
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


class ReplayProgress(BaseModel):
    phase: str = Field(description="replaying: the grading window is being played on the live sandbox")
    simulated_at: str = Field(description="the simulated clock reached, e.g. 'Mon 14:00'")
    done_s: float = Field(description="real seconds of the replay done")
    total_s: float = Field(description="real seconds the replay lasts (grading_window / time_scale)")


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
    progress: ReplayProgress | None = Field(
        default=None, description="while a lab's grading window is replayed on the sandbox: how far it is")

    @classmethod
    def of(cls, row: Submission) -> SubmissionOut:
        return cls(id=row.id, session_id=row.session_id, attempt=row.attempt, state=row.state,
                   created_at=row.created_at, graded_at=row.graded_at,
                   score=float(row.score) if row.score is not None else None,
                   max_score=float(row.max_score) if row.max_score is not None else None,
                   checks=list(row.checks or []), receipt=row.receipt, error=redact.optional(row.error),
                   progress=ReplayProgress.model_validate(row.progress) if row.progress else None)


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
