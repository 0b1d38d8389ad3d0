"""Replicas that start together migrate one empty PostgreSQL database together: every one comes up, at the head.

Four real processes each run the store's migration on a fresh database at the same moment.
Without turns taken on the advisory lock, the losers of the race fail on the tables and the version row the winner
is creating.
"""

from __future__ import annotations

import subprocess
import sys

from labctl.store.db import open_store
from tests.support.postgres import fresh_database

MIGRATE = "import sys; from labctl.store.db import open_store; open_store(sys.argv[1]).migrate()"


def test_replicas_migrating_one_database_at_once_all_succeed(postgres_url: str) -> None:
    url = fresh_database(postgres_url, prefix="migrate")
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, url], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    failures = [err for p in procs if (err := p.communicate(timeout=120)[1]) and p.returncode != 0]
    assert failures == [], failures[0][-2000:]
    store = open_store(url)
    assert store.revision() == store.head()
    store.engine.dispose()
