"""A store with an empty schema for one test, on SQLite or on the test session's private PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.store.db import Store, open_store
from labctl.store.models import Base


def clean_store(request: pytest.FixtureRequest, sqlite_file: Path, *, migrate: bool = True) -> Store:
    """``request.param`` picks the backend ("sqlite" in ``sqlite_file``, or "postgresql"); every table is dropped
    first, then the schema is migrated unless ``migrate`` is false. The caller disposes of the engine."""
    url = f"sqlite:///{sqlite_file}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = open_store(url)
    with store.engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    if migrate:
        store.migrate()
    return store
