"""Fixtures of the webhook tests: a migrated store on SQLite and on PostgreSQL, a settable clock, receivers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labctl.outbox.targets import TargetPolicy
from labctl.store.db import Store, open_store
from tests.webhooks.receiver import Receiver

# The receivers of these tests listen on 127.0.0.1, which the target policy refuses unless the allow-list names it.
LOOPBACK = TargetPolicy.from_entries(["127.0.0.1/32"])


class Clock:
    """The dispatcher's scheduling clock, moved by the test to jump past backoff waits instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def reset_schema(store: Store) -> None:
    """An empty database: every table of earlier tests (and revisions) gone, so the migrations run from scratch."""
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labctl.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    reset_schema(s)
    s.migrate()
    yield s
    s.engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()
