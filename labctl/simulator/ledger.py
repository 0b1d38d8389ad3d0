"""Accrue a simulator step into the service ledger, in the caller's unit of work (the sweep's cost transaction).

Each declared workload of the step adds its offered and served requests, rounded to the ledger's 6 places, and
``offered - served`` as dropped, so every row keeps ``served + dropped == offered`` exactly whatever the rounding.
A step that ends at or before a row's last step is already counted and leaves it alone (a retried sweep does not
count twice); one that overlaps the last step is refused.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from labctl.simulator.model import Step
from labctl.store.service_ledger import ServiceLedger

PLACES = Decimal("0.000001")


def to_ledger(count: Fraction) -> Decimal:
    """An exact count as the ledger's decimal: 6 places, half to even."""
    with localcontext() as ctx:
        ctx.prec = 60
        return (Decimal(count.numerator) / Decimal(count.denominator)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def accrue(db: Session, *, session_id: str, step: Step) -> list[ServiceLedger]:
    """Add ``step``'s counts to ``session_id``'s ledger rows (made on first use); the caller commits."""
    rows: list[ServiceLedger] = []
    for result in step.workloads:
        row = db.get(ServiceLedger, (session_id, result.key))
        if row is None:
            row = ServiceLedger(session_id=session_id, workload=result.key, offered=Decimal(0), served=Decimal(0),
                                dropped=Decimal(0))
            db.add(row)
        rows.append(row)
        if row.last_step_at is not None:
            if step.ended <= row.last_step_at:
                continue
            if step.started < row.last_step_at:
                raise ValueError(f"the step {step.started.isoformat()} - {step.ended.isoformat()} overlaps the one "
                                 f"already counted for {result.key} (up to {row.last_step_at.isoformat()})")
        offered, served = to_ledger(result.offered), to_ledger(result.served)
        row.offered += offered
        row.served += served
        row.dropped += offered - served
        row.last_step_at = step.ended
    return rows


def ledger(db: Session, *, session_id: str) -> list[ServiceLedger]:
    """The session's ledger rows, by workload."""
    return list(db.scalars(select(ServiceLedger).where(ServiceLedger.session_id == session_id)
                           .order_by(ServiceLedger.workload)))
