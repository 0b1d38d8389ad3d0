"""The state store on SQLite and on a real PostgreSQL server: migrations, round trips, optimistic locking, units of
work that read then write without another writer between."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, update
from sqlalchemy.orm.exc import StaleDataError

from labctl.store.db import Store, open_store
from labctl.store.models import Base, SandboxSession, SessionEvent
from tests.support.stores import clean_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "sub" / "labctl.db", migrate=False)
    yield s
    s.engine.dispose()


def _session(sid: str = "s-1") -> SandboxSession:
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    return SandboxSession(id=sid, lab_id="tag-for-showback", learner_id="ada", provider="kubernetes",
                          state="provisioning", budget_usd=5, created_at=now)


def test_migrate_creates_the_schema_and_is_idempotent(store: Store) -> None:
    with pytest.raises(Exception, match=r"revision None"):
        store.ping()
    store.migrate()
    store.migrate()
    store.ping()
    assert store.revision() == store.head()
    tables = set(inspect(store.engine).get_table_names())
    assert {"sessions", "session_events", "api_tokens", "alembic_version"} <= tables


def test_migrations_match_the_models(store: Store) -> None:
    store.migrate()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_round_trip_with_events_and_timezones(store: Store) -> None:
    store.migrate()
    with store.session() as db:
        db.add(_session())
        db.add(SessionEvent(session_id="s-1", at=datetime(2026, 11, 28, 9, 1, tzinfo=UTC), kind="created",
                            actor="instructor:admin", detail={"lab": "tag-for-showback"}))
    with store.session() as db:
        row = db.get(SandboxSession, "s-1")
        assert row is not None
        assert row.state == "provisioning"
        events = db.scalars(select(SessionEvent).where(SessionEvent.session_id == "s-1")).all()
        assert [e.detail for e in events] == [{"lab": "tag-for-showback"}]


def test_a_stale_writer_loses(store: Store) -> None:
    store.migrate()
    with store.session() as db:
        db.add(_session())
    with store.session() as a:
        first = a.get(SandboxSession, "s-1")
        assert first is not None
        with store.session() as b:
            second = b.get(SandboxSession, "s-1")
            assert second is not None
            second.state = "ready"
        first.state = "failed"
        with pytest.raises(StaleDataError):
            a.flush()


def test_units_that_read_then_write_never_interleave(store: Store) -> None:
    """Eight threads each add one to a row's figure ten times, reading it and writing it back: with
    ``writes=True`` (and, on PostgreSQL, the row locked as the docstring asks) no addition is lost."""
    store.migrate()
    with store.session() as db:
        db.add(_session())
    with store.session() as db:  # a plain writer beside them, whose transaction begins before theirs
        db.execute(update(SandboxSession).values(pod_hours=1))

        def add_ten() -> None:
            for _ in range(10):
                with store.session(writes=True) as unit:
                    row = unit.get(SandboxSession, "s-1", with_for_update=True)
                    assert row is not None
                    row.accrued_usd = Decimal(row.accrued_usd or 0) + 1

        threads = [threading.Thread(target=add_ten) for _ in range(8)]
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join()
    with store.session() as db:
        row = db.get(SandboxSession, "s-1")
        assert row is not None and row.accrued_usd == 80 and row.pod_hours == 1


def test_a_unit_that_fails_gives_its_write_turn_back(store: Store) -> None:
    """A writer whose unit raises (rolled back) or that writes nothing leaves the database to the next writers (a
    turn kept would make the next writer wait out the busy timeout and fail)."""
    store.migrate()
    with store.session() as db:
        db.add(_session())
    for _ in range(3):
        with pytest.raises(RuntimeError), store.session(writes=True) as db:
            db.execute(update(SandboxSession).values(state="ready"))
            raise RuntimeError("the change is refused half way")
        with store.session(writes=True) as db:
            assert db.get(SandboxSession, "s-1") is not None
    with store.session() as db:
        db.execute(update(SandboxSession).values(state="failed"))
    with store.session() as db:
        row = db.get(SandboxSession, "s-1")
        assert row is not None and row.state == "failed"


def test_sqlite_file_directory_is_created(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    s.migrate()
    assert (tmp_path / "a" / "b" / "x.db").exists()
