"""Replicas that start together migrate one empty PostgreSQL database together: every one comes up, at the head.

Four real processes each run the store's migration on a fresh database at the same moment.
Without turns taken on the advisory lock, the losers of the race fail on the tables and the version row the winner
is creating.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from labctl.store.db import open_store

MIGRATE = "import sys; from labctl.store.db import open_store; open_store(sys.argv[1]).migrate()"


def test_replicas_migrating_one_database_at_once_all_succeed(postgres_url: str) -> None:
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        name = f"migrate_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, url], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        failures = [err for p in procs if (err := p.communicate(timeout=120)[1]) and p.returncode != 0]
        assert failures == [], failures[0][-2000:]
        store = open_store(url)
        assert store.revision() == store.head()
        store.engine.dispose()
    finally:
        admin.dispose()
