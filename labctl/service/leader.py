"""Leader election: exactly one replica runs the background jobs (sweeps, regrades, webhook delivery, LTI scores).

One port, :class:`Leader`: ``acquire`` takes or renews a lease for ``ttl`` and says whether this replica holds it;
``release`` gives it up. Two adapters: :class:`StoreLeader` here, a row of the store's ``leases`` table taken with
one conditional UPDATE that matches only when the lease is this holder's or has expired (atomic on SQLite and
PostgreSQL alike); and ``labctl.providers.kubernetes.leader.KubernetesLeader``, a ``coordination.k8s.io/v1`` Lease
written with its ``resourceVersion`` (for labctl run in a cluster). ``LABCTL_LEADER`` picks one; the composition root
builds it.

:class:`Tenure` is one process's hold on the lease over time: every job, and every long pass between two sessions,
asks :meth:`Tenure.held`, which renews the lease once a third of its time has gone by and answers ``False`` as soon as
it is lost, so a pass stops (between sessions) instead of working on beside a new leader. A leader that dies stops
renewing and another replica takes over once its lease expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from labctl.store.db import Store
from labctl.store.models import Lease

log = logging.getLogger("labctl.leader")


class Leader(Protocol):
    """A named lock with an expiry, held by one holder at a time."""

    holder: str

    def acquire(self, *, ttl: timedelta, now: datetime) -> bool:
        """Take or renew the lock until ``now + ttl``; ``True`` when ``holder`` holds it. Losing a race (another
        holder, a write conflict) is ``False``, never an error."""

    def release(self, *, now: datetime) -> None:
        """Give the lock up at once if ``holder`` holds it (a clean shutdown: no one waits for it to expire)."""

    def describe(self) -> str:
        """Where the lock lives, for the log."""


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


class StoreLeader:
    """The :class:`Leader` over the store's ``leases`` table (every deployment: SQLite or PostgreSQL)."""

    def __init__(self, store: Store, *, name: str, holder: str) -> None:
        self.store = store
        self.name = name
        self.holder = holder

    def acquire(self, *, ttl: timedelta, now: datetime) -> bool:
        return try_acquire(self.store, name=self.name, holder=self.holder, ttl=ttl, now=now)

    def release(self, *, now: datetime) -> None:
        release(self.store, name=self.name, holder=self.holder, now=now)

    def describe(self) -> str:
        return f"the store's lease '{self.name}' ({self.store.engine.dialect.name})"


class Tenure:
    """This process's hold on the leader lock: :meth:`held` before every job and between the sessions of a pass."""

    def __init__(self, leader: Leader, *, ttl: timedelta, clock: Callable[[], datetime]) -> None:
        if ttl <= timedelta(0):
            raise ValueError("the leader lease needs a positive time to live")
        self.leader = leader
        self.ttl = ttl
        self.clock = clock
        self._renewed_at: datetime | None = None  # when this process last took or renewed the lock
        self._unreachable = False  # the lock's backend failed the last time: said once, not at every job
        self._lock = threading.Lock()

    @property
    def renew_every(self) -> timedelta:
        return self.ttl / 3

    def held(self) -> bool:
        """Whether this process leads now; renews the lock when a third of its time has gone by since the last
        renewal (a lock renewed that recently cannot have expired, so no other replica can hold it)."""
        with self._lock:
            now = self.clock()
            renewed = self._renewed_at
            if renewed is not None and renewed <= now < renewed + self.renew_every:
                return True
            try:
                won = self.leader.acquire(ttl=self.ttl, now=now)
                self._unreachable = False
            except Exception as exc:  # the store or the apiserver did not answer: not leading, until it does
                if not self._unreachable:
                    log.warning("could not take or renew the leader lock (%s): %s", self.leader.describe(), exc)
                self._unreachable = True
                won = False
            if won and renewed is None:
                log.info("%s leads now (%s, %gs)", self.leader.holder, self.leader.describe(),
                         self.ttl.total_seconds())
            elif renewed is not None and not won:
                log.warning("%s lost the lead (%s): its jobs stop", self.leader.holder, self.leader.describe())
            self._renewed_at = now if won else None
            return won

    def release(self) -> None:
        """Give the lock up (a clean shutdown); a failure only means the others wait for it to expire."""
        with self._lock:
            if self._renewed_at is None:
                return
            self._renewed_at = None
            try:
                self.leader.release(now=self.clock())
            except Exception as exc:
                log.warning("could not release the leader lock (%s): %s", self.leader.describe(), exc)


def always() -> bool:
    """The ``held`` of a pass run by hand, outside the background jobs (tests, ``labctl sweep --once``)."""
    return True
