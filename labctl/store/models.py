"""Tables of the state store (SQLAlchemy 2 declarative models).

Schema changes go through an Alembic revision in ``migrations/versions``; ``tests/store`` checks that the models and
the migrated schema agree, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database: SQLite stores no zone and hands back naive datetimes, so the
    zone is put back here, once, instead of in every caller."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SandboxSession(Base):
    """One learner's sandbox for one lab."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    lab_id: Mapped[str] = mapped_column(String(63), index=True)
    learner_id: Mapped[str] = mapped_column(String(128), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    namespace: Mapped[str | None] = mapped_column(String(63))
    # The Kubernetes cluster (LABCTL_CLUSTERS name) the sandbox lives in; None for cloud sandboxes.
    cluster: Mapped[str | None] = mapped_column(String(32))
    budget_usd: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "<lab>/<learner>" while the session is live, NULL once it is over: the unique constraint is what makes
    # concurrent starts for the same learner and lab give one session (NULLs never collide).
    live_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # A failed or stopped sandbox whose resources could not be removed yet; the reconciler retries.
    cleanup_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    # The ledger: money used so far, accrued by the meter from live inventory x the price sheet.
    accrued_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=0)
    burn_rate_usd_per_hour: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=0)
    last_metered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    meter_note: Mapped[str | None] = mapped_column(Text)
    # For the instructor's report: pod-hours run, those on spot capacity, and money spent on idle things.
    pod_hours: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=0)
    spot_pod_hours: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=0)
    idle_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=0)
    # What the lab's starter burns, taken while provisioning, before any learner credential exists (service.baseline).
    starter_burn_rate_usd_per_hour: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    # The starter's figures over the lab's grading window (labctl.simulator.starter), taken with it.
    starter_service: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)
    # Budget policy: thresholds already acted on (percents), approved extra budget, a pending request.
    thresholds_crossed: Mapped[list[int]] = mapped_column(JSON, default=list)
    budget_extra_usd: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=0)
    budget_request_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    budget_request_reason: Mapped[str | None] = mapped_column(Text)
    # Names the pending request: an approval must name it (or its amount), so a changed request needs a new one.
    budget_request_id: Mapped[str | None] = mapped_column(String(40))
    # Timers: why it is suspended (budget, idle, off-hours, instructor, meter), last learner activity, expiry warning.
    suspend_reason: Mapped[str | None] = mapped_column(String(20))
    # What suspend stopped (the provider's record, ``labctl.ports.Suspension``): resume restores exactly this, never
    # anything written inside the sandbox.
    suspension: Mapped[dict[str, object] | None] = mapped_column(JSON)
    # Meter readings that failed in a row; at the configured limit the session is suspended (fail closed).
    meter_failures: Mapped[int] = mapped_column(Integer, default=0)
    # A command working on the sandbox (start, reset, suspend, resume, submit) holds the session until
    # ``lease_expires_at``; others get a 409 and the reconciler leaves it alone.
    lease_holder: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expiry_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who started it: "token:<id>" of the API token, or "admin" (the environment's token). A platform token reads the
    # sandbox credentials only of sessions it started.
    started_by: Mapped[str | None] = mapped_column(String(40))
    # A warm pool's sandbox, unclaimed (state ``pooled``): the hash of the lab definition and templates it was made
    # from, so a changed lab drains it; NULL once claimed, and for every sandbox made for a learner.
    pool_hash: Mapped[str | None] = mapped_column(String(64))
    # Optimistic concurrency: every update bumps it, so two writers never both win.
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    __table_args__ = (Index("ix_sessions_lab_learner_state", "lab_id", "learner_id", "state"),)


class SessionEvent(Base):
    """The timeline of a session: every transition with its reason and who or which timer caused it."""

    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


class ApiToken(Base):
    """A bearer token: only its SHA-256 is stored; the token itself is shown once at creation. It ends at
    ``expires_at`` or when revoked; ``last_used_at`` is refreshed at most once a minute."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    learner_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Submission(Base):
    """One submission of a session: the frozen snapshot, the graders' checks, the grade and the cost receipt, and
    the progress of its grading window's replay."""

    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))  # grading | graded | error
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    graded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    score: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    max_score: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    checks: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    receipt: Mapped[dict[str, object] | None] = mapped_column(JSON)
    snapshot: Mapped[dict[str, object] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    # While a lab's grading window is replayed: {phase, simulated_at, done_s, total_s}; heartbeat_at is the last
    # step's moment, so a replay whose process died is told from one still running (Submissions.reconcile).
    progress: Mapped[dict[str, object] | None] = mapped_column(JSON)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("session_id", "attempt", name="uq_submissions_session_attempt"),)


class Grant(Base):
    """More attempts or money for one learner in one lab, given by an instructor or by an approved budget request.

    Attempts and budget belong to the learner and the lab, not to one session: a new session starts with the lab's
    attempts and budget plus every grant, minus what earlier sessions used.
    """

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lab_id: Mapped[str] = mapped_column(String(63))
    learner_id: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    usd: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=0)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The session it was given in (an approval), or the live one at the time, if any.
    session_id: Mapped[str | None] = mapped_column(String(63))

    __table_args__ = (Index("ix_grants_lab_learner", "lab_id", "learner_id"),)


class Lease(Base):
    """Leader election over the store: the replica holding an unexpired lease runs the sweeps."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The webhook, service-ledger, meter-reading, LTI and violation tables share Base's metadata; importing them here
# keeps every table known wherever models is imported.
from labctl.store import (  # noqa: E402, F401
    lti_models,
    meter_readings,
    pool_ledger,
    service_ledger,
    violations,
    webhook_models,
)
