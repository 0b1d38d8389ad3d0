"""The meter's readings over time: what a session had accrued and burned at each metering, for the learner page's
chart.

The ledger (``sessions.accrued_usd``, ``burn_rate_usd_per_hour``) holds only the figures now; the sweep adds one
small row here in the transaction that accrues the money, so the series and the ledger never disagree, with each
declared workload's service figures of that metering (served share, cost per 1,000 requests) when the lab simulates
demand. A session metered every 30 s for two hours keeps 240 rows; rows go with their session.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, Numeric, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from labctl.store.models import Base, UTCDateTime

SERIES_LIMIT = 720  # the most points a chart is given: the newest, in time order


class MeterReading(Base):
    """One metering of one session: accrued so far and the burn rate it measured, at ``at``."""

    __tablename__ = "meter_readings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    accrued_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    burn_rate_usd_per_hour: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    service: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_meter_readings_session_at", "session_id", "at"),)


def record(db: Session, *, session_id: str, at: datetime, accrued_usd: Decimal, burn_rate_usd_per_hour: Decimal,
           service: list[dict[str, Any]] | None) -> None:
    """Add a reading in ``db``'s transaction (the one that accrues the ledger)."""
    db.add(MeterReading(session_id=session_id, at=at, accrued_usd=accrued_usd,
                        burn_rate_usd_per_hour=burn_rate_usd_per_hour, service=service))


def series(db: Session, *, session_id: str, limit: int = SERIES_LIMIT) -> list[MeterReading]:
    """The session's newest ``limit`` readings, oldest first."""
    newest = db.scalars(select(MeterReading).where(MeterReading.session_id == session_id)
                        .order_by(MeterReading.at.desc(), MeterReading.id.desc()).limit(limit)).all()
    return list(reversed(newest))
