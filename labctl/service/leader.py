"""Leader election over the store: exactly one replica runs the sweeps.

A lease row names its holder and an expiry; a replica becomes (or stays) leader with one conditional UPDATE that only
matches when the lease is its own or has expired, which is atomic on SQLite and PostgreSQL alike. A leader that dies
stops renewing and another replica takes over once the lease expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from labctl.store.db import Store
from labctl.store.models import Lease


def try_acquire(store: Store, *, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew the lease ``name`` for ``holder``; ``True`` when ``holder`` leads until ``now + ttl``."""
    if _renew(store, name=name, holder=holder, ttl=ttl, now=now):
        return True
    try:
        with store.session() as db:
            db.add(Lease(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        # Someone inserted it first: another replica, or another job of this one starting at the same moment.
        return _renew(store, name=name, holder=holder, ttl=ttl, now=now)
    return True


def _renew(store: Store, *, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    with store.session() as db:
        result = db.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release(store: Store, *, name: str, holder: str, now: datetime) -> None:
    """Give the lease up at once (on a clean shutdown), so another replica need not wait for it to expire."""
    with store.session() as db:
        db.execute(update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=now)
                   .execution_options(synchronize_session=False))
