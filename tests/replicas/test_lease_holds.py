"""The leader lock holds during long passes: renewed between sessions, and a pass stops when it is lost.

A real sweep (:meth:`Sweeper.run_once` of the composition root) over sessions in a real store (SQLite and
PostgreSQL) with a cluster that is down, so every session's metering fails at once and counts one failure on the row:
the rows with a failure are the sessions the pass visited. Time is a fake clock moved from the pass's ``held`` check
(each session "takes" that long); a second replica is a real second holder of the same lease row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from labctl import runtime
from labctl.service import leader
from labctl.settings import Settings
from labctl.store.db import Store, open_store
from labctl.store.models import Lease, SandboxSession
from tests.support.clock import FakeClock
from tests.support.stores import clean_store
from tests.support.wait import dead_kubeconfig

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "tenure.db")
    yield s
    s.engine.dispose()


def _holder(store: Store) -> tuple[str, datetime]:
    with store.session() as db:
        lease = db.scalars(select(Lease).where(Lease.name == runtime.LEASE)).one()
        return lease.holder, lease.expires_at


def test_tenure_renews_after_a_third_of_the_lease_and_answers_false_once_taken(store: Store) -> None:
    clock = FakeClock(T0)
    a = leader.Tenure(leader.StoreLeader(store, name=runtime.LEASE, holder="replica-a"), ttl=TTL, clock=clock)
    b = leader.StoreLeader(store, name=runtime.LEASE, holder="replica-b")
    assert a.held()
    assert _holder(store) == ("replica-a", T0 + TTL)
    clock.advance(seconds=9)  # under a third of the lease: no write
    assert a.held()
    assert _holder(store) == ("replica-a", T0 + TTL)
    clock.advance(seconds=2)  # past a third: renewed from now
    assert a.held()
    assert _holder(store) == ("replica-a", T0 + timedelta(seconds=11) + TTL)
    assert not b.acquire(ttl=TTL, now=clock())
    clock.advance(seconds=45)  # a stalled past its lease (a long call); b takes over
    assert b.acquire(ttl=TTL, now=clock())
    assert not a.held()
    assert _holder(store)[0] == "replica-b"
    a.release()  # a no longer holds it: releasing must not end b's lease
    assert _holder(store)[0] == "replica-b"


def test_a_long_sweep_renews_its_lease_and_stops_between_sessions_once_it_is_lost(store: Store,
                                                                                    tmp_path: Path) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    rt = runtime.build(Settings(database_url=url, kubeconfig=dead_kubeconfig(tmp_path), data_dir=tmp_path,
                                replica_id="replica-a"))
    now = datetime.now(UTC)
    ids = [f"s-{i}" for i in range(6)]
    with store.session() as db:
        for i, sid in enumerate(ids):
            db.add(SandboxSession(id=sid, lab_id="tag-for-showback", learner_id=f"learner-{i}", provider="kubernetes",
                                  state="ready", namespace=f"lab-{sid}", budget_usd=Decimal(2), created_at=now,
                                  ready_at=now, expires_at=now + timedelta(hours=1),
                                  deadline_at=now + timedelta(hours=2), last_activity_at=now))
    clock = FakeClock(T0)
    tenure = leader.Tenure(leader.StoreLeader(store, name=runtime.LEASE, holder="replica-a"), ttl=TTL, clock=clock)
    other = leader.StoreLeader(store, name=runtime.LEASE, holder="replica-b")
    refused: list[bool] = []
    asked = 0

    def held() -> bool:
        """Before each session: the previous one took half the lease; the fifth hung for two leases, long enough
        for replica-b to take the lock."""
        nonlocal asked
        asked += 1
        if asked == 5:
            clock.advance(seconds=2 * TTL.total_seconds())
            assert other.acquire(ttl=TTL, now=clock())
        elif asked > 1:
            clock.advance(seconds=TTL.total_seconds() / 2)
            refused.append(not other.acquire(ttl=TTL, now=clock()))
        return tenure.held()

    try:
        report = rt.sweeper.run_once(held=held)
    finally:
        rt.close()
    with store.session() as db:
        failures = dict(db.execute(select(SandboxSession.id, SandboxSession.meter_failures)).all())
    # Four sessions metered over two leases' time: the lock was renewed (replica-b was refused after each one)...
    assert refused == [True, True, True]
    assert sorted(failures.values()) == [0, 0, 1, 1, 1, 1]
    assert report.metered == 0 and len([e for e in report.errors if e[0] != "*"]) == 4
    # ... and after the lock went to replica-b the pass touched no other session.
    assert _holder(store)[0] == "replica-b"


def test_a_lock_whose_store_does_not_answer_is_not_held(caplog: pytest.LogCaptureFixture) -> None:
    gone = open_store("postgresql+psycopg://labctl@127.0.0.1:1/postgres?connect_timeout=2")
    clock = FakeClock(T0)
    tenure = leader.Tenure(leader.StoreLeader(gone, name=runtime.LEASE, holder="replica-a"), ttl=TTL, clock=clock)
    with caplog.at_level("WARNING", logger="labctl.leader"):
        assert not tenure.held()
        clock.advance(seconds=1)
        assert not tenure.held()
    assert len([r for r in caplog.records if "could not take or renew" in r.getMessage()]) == 1  # said once
    gone.engine.dispose()
