"""The warm pools' ledger: what unclaimed sandboxes cost while they waited, charged to the course, never to a learner.

A pooled sandbox is metered like any other, but its money goes here, one row per stretch of time (between two
meterings, or from the last metering to its claim or drain) with the burn rate in force over it; the session row's
own ledger stays at zero until a learner claims it, so a learner's cost, receipt and budget start at the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, Integer, Numeric, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from labctl.store.models import Base, UTCDateTime


class PoolCharge(Base):
    """The idle cost of one pooled sandbox over ``[start_at, end_at)``, charged to its lab's course."""

    __tablename__ = "pool_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lab_id: Mapped[str] = mapped_column(String(63))
    session_id: Mapped[str] = mapped_column(String(63))  # the pooled sandbox's session row
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    burn_rate_usd_per_hour: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    usd: Mapped[Decimal] = mapped_column(Numeric(14, 6))

    __table_args__ = (Index("ix_pool_charges_lab", "lab_id"),)


@dataclass(frozen=True)
class PoolCost:
    """A lab's pool cost so far: money, and the sandbox-hours it paid for."""

    usd: Decimal
    sandbox_hours: Decimal


def charge(db: Session, *, lab_id: str, session_id: str, start_at: datetime, end_at: datetime,
           burn_rate_usd_per_hour: Decimal) -> Decimal:
    """Charge ``burn_rate x (end_at - start_at)`` to the pool, in ``db``'s transaction; returns the money."""
    hours = Decimal(max(0.0, (end_at - start_at).total_seconds())) / Decimal(3600)
    usd = Decimal(burn_rate_usd_per_hour) * hours
    db.add(PoolCharge(lab_id=lab_id, session_id=session_id, start_at=start_at, end_at=end_at,
                      burn_rate_usd_per_hour=burn_rate_usd_per_hour, usd=usd))
    return usd


def cost(db: Session, *, lab_id: str) -> PoolCost:
    """What the lab's pool has cost so far."""
    rows = db.execute(select(PoolCharge.usd, PoolCharge.start_at, PoolCharge.end_at)
                      .where(PoolCharge.lab_id == lab_id)).all()
    total = sum((Decimal(r.usd) for r in rows), Decimal(0))
    seconds = sum((Decimal((r.end_at - r.start_at).total_seconds()) for r in rows), Decimal(0))
    return PoolCost(usd=total, sandbox_hours=seconds / Decimal(3600))
