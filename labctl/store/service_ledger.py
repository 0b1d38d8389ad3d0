"""The service ledger: requests offered to, served and dropped by each workload of a session, and what its pods cost,
beside the session's money ledger.

On the local cluster the simulator (:mod:`labctl.simulator`) says, for every metering step, how many requests each
declared workload was offered, served and dropped; the caller accrues them here, with the cost of the workload's pods
over the step (their burn rate x the step's seconds), in the transaction that accrues the step's money, so served
share and cost per 1,000 requests are read from the same interval. Rows are kept per **window**: ``live`` for the
session's meterings, or a submission's id for the grading window that submission replayed, so a grade reads only
its own replay. Counts are exact decimals (6 places; SQLite keeps 15 significant digits, enough for a billion
requests) and every row keeps ``served + dropped == offered``; cost has the money ledger's 6 places.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from labctl.store.models import Base, UTCDateTime

COUNT = Numeric(20, 6)
MONEY = Numeric(14, 6)  # the precision of ``sessions.accrued_usd``
LIVE = "live"  # the window of the session's own meterings; a submission's replay uses the submission's id


class ServiceLedger(Base):
    """One workload of one session in one window: requests offered, served and dropped so far, what its pods cost,
    and the end of the last step counted."""

    __tablename__ = "service_ledger"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    window_id: Mapped[str] = mapped_column(String(63), primary_key=True, default=LIVE, server_default=LIVE)
    workload: Mapped[str] = mapped_column(String(300), primary_key=True)  # Kind/name, or "selector k=v,..."
    offered: Mapped[Decimal] = mapped_column(COUNT, default=Decimal(0))
    served: Mapped[Decimal] = mapped_column(COUNT, default=Decimal(0))
    dropped: Mapped[Decimal] = mapped_column(COUNT, default=Decimal(0))
    cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0), server_default="0")
    last_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
