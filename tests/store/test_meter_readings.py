"""The meter's readings (the learner page's burn-rate chart) on SQLite and on a real PostgreSQL server: a series comes
back oldest first, capped to the newest readings, with its service figures; rows go with their session; revision
0005_page comes off and back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from labctl.store import meter_readings
from labctl.store.db import Store
from labctl.store.models import SandboxSession
from tests.support.stores import clean_store

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "labctl.db")
    with s.session() as db:
        for sid in ("s-1", "s-2"):
            db.add(SandboxSession(id=sid, lab_id="lab", learner_id="ada", provider="kubernetes", state="ready",
                                  budget_usd=5, created_at=AT, ready_at=AT))
    yield s
    s.engine.dispose()


def test_a_series_is_oldest_first_and_capped_to_the_newest(store: Store) -> None:
    with store.session() as db:
        for i in (2, 0, 1, 3):  # written out of order: the series orders by time
            meter_readings.record(db, session_id="s-1", at=AT + timedelta(seconds=30 * i),
                                  accrued_usd=Decimal(i) / 100, burn_rate_usd_per_hour=Decimal("0.5") + i,
                                  service=[{"workload": "Deployment/web", "cost_per_1000_requests": 0.01 * i}])
        meter_readings.record(db, session_id="s-2", at=AT, accrued_usd=Decimal(9), burn_rate_usd_per_hour=Decimal(9),
                              service=None)
    with store.session() as db:
        series = meter_readings.series(db, session_id="s-1")
        newest = meter_readings.series(db, session_id="s-1", limit=2)
    assert [r.at for r in series] == [AT + timedelta(seconds=30 * i) for i in range(4)]
    assert [r.burn_rate_usd_per_hour for r in series] == [Decimal("0.5") + i for i in range(4)]
    assert series[3].accrued_usd == Decimal("0.03") and series[3].service == [
        {"workload": "Deployment/web", "cost_per_1000_requests": 0.03}]
    assert [r.at for r in newest] == [AT + timedelta(seconds=60), AT + timedelta(seconds=90)]
    with store.session() as db:
        db.delete(db.get(SandboxSession, "s-1"))
    with store.session() as db:
        assert meter_readings.series(db, session_id="s-1") == []
        assert len(meter_readings.series(db, session_id="s-2")) == 1


def test_revision_0005_page_comes_off_and_back(store: Store) -> None:
    config = store.alembic_config()
    command.downgrade(config, "0004")
    assert "meter_readings" not in inspect(store.engine).get_table_names()
    command.upgrade(config, "head")
    assert "meter_readings" in inspect(store.engine).get_table_names()
