"""The service ledger: requests offered to, served and dropped by each workload of a session, beside its cost ledger.

On the local cluster the simulator (:mod:`labctl.simulator`) says, for every metering step, how many requests each
declared workload was offered, served and dropped; the sweep accrues them here in the transaction that accrues the
step's cost, so served share and cost per 1,000 requests are read from the same interval. Counts are exact decimals
(6 places; SQLite keeps 15 significant digits, enough for a billion requests) and every row keeps
``served + dropped == offered``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from labctl.store.models import Base, UTCDateTime

COUNT = Numeric(20, 6)


class ServiceLedger(Base):
    """One workload of one session: requests offered, served and dropped so far, and the end of the last step."""

    __tablename__ = "service_ledger"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    workload: Mapped[str] = mapped_column(String(300), primary_key=True)  # Kind/name, or "selector k=v,..."
    offered: Mapped[Decimal] = mapped_column(COUNT, default=Decimal(0))
    served: Mapped[Decimal] = mapped_column(COUNT, default=Decimal(0))
    dropped: Mapped[Decimal] = mapped_column(COUNT, default=Decimal(0))
    last_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
