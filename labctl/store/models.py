"""Tables of the state store (SQLAlchemy 2 declarative models).

Schema changes go through an Alembic revision in ``migrations/versions``; ``tests/store`` checks that the models and
the migrated schema agree, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, MetaData, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


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
    budget_usd: Mapped[float] = mapped_column(Numeric(12, 4))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "<lab>/<learner>" while the session is live, NULL once it is over: the unique constraint is what makes
    # concurrent starts for the same learner and lab give one session (NULLs never collide).
    live_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # A failed or stopped sandbox whose resources could not be removed yet; the reconciler retries.
    cleanup_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    # Optimistic concurrency: every update bumps it, so two writers never both win.
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    __table_args__ = (Index("ix_sessions_lab_learner_state", "lab_id", "learner_id", "state"),)


class SessionEvent(Base):
    """The timeline of a session: every transition with its reason and who or which timer caused it."""

    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


class ApiToken(Base):
    """A bearer token: only its SHA-256 is stored; the token itself is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    learner_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
