"""Leader election over the store: one holder at a time, renewal, takeover after expiry, release — on SQLite and on
a real PostgreSQL server, with holders racing from threads."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labctl.service import leader
from labctl.store.db import Store
from tests.support.stores import clean_store

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "lease.db")
    yield s
    s.engine.dispose()


def test_one_holder_renewal_takeover_and_release(store: Store) -> None:
    assert leader.try_acquire(store, name="sweeps", holder="a", ttl=TTL, now=T0)
    assert not leader.try_acquire(store, name="sweeps", holder="b", ttl=TTL, now=T0 + timedelta(seconds=10))
    assert leader.try_acquire(store, name="sweeps", holder="a", ttl=TTL, now=T0 + timedelta(seconds=20))  # renew
    assert not leader.try_acquire(store, name="sweeps", holder="b", ttl=TTL, now=T0 + timedelta(seconds=45))
    # a stops renewing (it died): b takes over once the renewed lease has run out.
    assert leader.try_acquire(store, name="sweeps", holder="b", ttl=TTL, now=T0 + timedelta(seconds=51))
    assert not leader.try_acquire(store, name="sweeps", holder="a", ttl=TTL, now=T0 + timedelta(seconds=52))
    leader.release(store, name="sweeps", holder="b", now=T0 + timedelta(seconds=53))
    assert leader.try_acquire(store, name="sweeps", holder="a", ttl=TTL, now=T0 + timedelta(seconds=54))


def test_racing_replicas_elect_exactly_one(store: Store) -> None:
    holders = [f"replica-{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(lambda h: leader.try_acquire(store, name="race", holder=h, ttl=TTL, now=T0), holders))
    assert sum(won) == 1
