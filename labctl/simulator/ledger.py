"""Accrue a simulator step into the service ledger, in the caller's unit of work (the cost transaction of a metering
or of a replay step).

Each declared workload of the step adds its offered and served requests, rounded to the ledger's 6 places, and
``offered - served`` as dropped, so every row keeps ``served + dropped == offered`` exactly whatever the rounding;
and the cost of its pods over the step (:func:`workload_costs`: each pod's hourly rate x the step's real seconds,
rounded once per workload to the money ledger's 6 places). Rows are per window (:data:`LIVE`, or a submission's id
for its replay). A step that ends at or before a row's last step is already counted and leaves it alone (a retried
sweep does not count twice); one that overlaps the last step is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labctl.simulator.model import Step
from labctl.store.service_ledger import LIVE, ServiceLedger

PLACES = Decimal("0.000001")

__all__ = ["LIVE", "PLACES", "accrue", "clear", "ledger", "to_ledger", "workload_costs"]


def to_ledger(count: Fraction | Decimal) -> Decimal:
    """An exact count (or amount) as the ledger's decimal: 6 places, half to even."""
    with localcontext() as ctx:
        ctx.prec = 60
        number = count if isinstance(count, Decimal) else Decimal(count.numerator) / Decimal(count.denominator)
        return number.quantize(PLACES, rounding=ROUND_HALF_EVEN)


def workload_costs(step: Step, hourly_usd: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Per declared workload of ``step``, what its pods cost over the step: the sum of each pod's hourly rate
    (``hourly_usd``: pod name -> USD per hour, from the priced snapshot the step was played on; a pod without a
    rate costs nothing) x the step's real seconds / 3600, at the ledger's 6 places."""
    seconds = Fraction((step.ended - step.started) // timedelta(microseconds=1), 1_000_000)
    costs: dict[str, Decimal] = {}
    for result in step.workloads:
        rate = sum((Fraction(hourly_usd.get(p.name, Decimal(0))) for p in result.pods), Fraction(0))
        costs[result.key] = to_ledger(rate * seconds / 3600)
    return costs


def accrue(db: Session, *, session_id: str, step: Step, costs: Mapping[str, Decimal] | None = None,
           window: str = LIVE) -> list[ServiceLedger]:
    """Add ``step``'s counts, and ``costs`` (workload -> USD over the step, :func:`workload_costs`), to
    ``session_id``'s rows of ``window`` (made on first use); the caller commits."""
    rows: list[ServiceLedger] = []
    for result in step.workloads:
        row = db.get(ServiceLedger, (session_id, window, result.key))
        if row is None:
            row = ServiceLedger(session_id=session_id, window_id=window, workload=result.key, offered=Decimal(0),
                                served=Decimal(0), dropped=Decimal(0), cost_usd=Decimal(0))
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
        row.cost_usd = Decimal(row.cost_usd or 0) + (costs or {}).get(result.key, Decimal(0))
        row.last_step_at = step.ended
    return rows


def ledger(db: Session, *, session_id: str, window: str = LIVE) -> list[ServiceLedger]:
    """The session's ledger rows of ``window``, by workload."""
    return list(db.scalars(select(ServiceLedger).where(ServiceLedger.session_id == session_id,
                                                       ServiceLedger.window_id == window)
                           .order_by(ServiceLedger.workload)))


def clear(db: Session, *, session_id: str, window: str) -> int:
    """Forget ``window``'s rows (a replay that starts again from the beginning); returns how many went."""
    if window == LIVE:
        raise ValueError("the live window is the session's record and is never cleared")
    result = db.execute(delete(ServiceLedger).where(ServiceLedger.session_id == session_id,
                                                    ServiceLedger.window_id == window))
    return int(getattr(result, "rowcount", 0) or 0)
