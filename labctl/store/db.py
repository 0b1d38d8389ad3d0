"""Engine, sessions and migrations of the state store.

``open_store(url)`` gives a :class:`Store`; ``Store.migrate()`` brings the schema to the newest Alembic revision (run at
service start, idempotent); ``Store.ping()`` is the readiness probe.

SQLite has one writer at a time, and a writer that finds the database locked polls it (SQLite's busy handler sleeps
up to 100 ms between looks), so a burst of writers (a class pressing Start) spends most of its time asleep while
the lock is free. This process's writers therefore take turns on one in-process lock (:class:`_Turns`), taken at a
transaction's first write (or, for ``Store.session(writes=True)``, at its start, with ``BEGIN IMMEDIATE``) and given
back at its end: the next writer runs as soon as the last one commits. Other processes on the same file (a
``labctl sweep`` beside ``labctl serve``) still meet SQLite's own lock and its busy handler.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x6C616263  # the advisory lock key replicas migrating one PostgreSQL database take turns on
SQLITE_BUSY_S = 30.0  # how long a SQLite writer waits for its turn (in this process, then at SQLite's lock)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _Turns:
    """This process's SQLite writers one at a time: a connection takes the turn before its transaction's first write
    and gives it back when it returns to the pool, after its commit or rollback (SQLAlchemy's ``commit`` event comes
    before the commit itself, which would wake the next writer into SQLite's busy handler)."""

    KEY = "labctl_write_turn"

    def __init__(self) -> None:
        self._lock = threading.Lock()  # not an RLock: a turn belongs to a connection, not to a thread

    def take(self, info: dict[Any, Any]) -> None:
        if info.get(self.KEY):
            return
        if not self._lock.acquire(timeout=SQLITE_BUSY_S):
            raise OperationalError("BEGIN", None, sqlite3.OperationalError(
                f"database is locked: no write turn within {SQLITE_BUSY_S:.0f}s"))
        info[self.KEY] = True

    def give_back(self, info: dict[Any, Any]) -> None:
        if info.pop(self.KEY, False):
            self._lock.release()

    def listen(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _first_write(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip()[:7].upper().startswith(_WRITES):
                self.take(conn.connection.info)

        def _ended(record: Any) -> None:
            if record is not None:
                self.give_back(record.info)

        event.listen(engine, "reset", lambda _dbapi, record, _state: _ended(record))
        event.listen(engine, "checkin", lambda _dbapi, record: _ended(record))
        event.listen(engine, "close", lambda _dbapi, record: _ended(record))
        event.listen(engine, "invalidate", lambda _dbapi, record, _exc: _ended(record))


class Store:
    """A database with labctl's schema."""

    def __init__(self, engine: Engine, *, turns: _Turns | None = None) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._turns = turns  # SQLite's: this process's writers take turns

    @contextmanager
    def session(self, *, writes: bool = False) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error.

        ``writes``: a unit that reads rows and then writes them (a read-modify-write, a claim). On SQLite it holds
        the write lock from its first statement (``BEGIN IMMEDIATE`` after this process's turn), so nobody writes
        between its read and its write; on PostgreSQL it is a plain unit, and the caller locks the rows it reads
        (``with_for_update``) or checks a version when it writes.
        """
        with self._sessions.begin() as session:
            if writes and self._turns is not None:
                conn = session.connection()
                self._turns.take(conn.connection.info)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.engine.url.render_as_string(hide_password=False))
        return cfg

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (a no-op when already there). On PostgreSQL replicas starting
        together take turns (a transaction-scoped advisory lock): the first migrates, the others find the head."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            cfg = self.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head(self) -> str | None:
        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def ping(self) -> None:
        """Raise if the database cannot answer or the schema is not migrated."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = self.revision(), self.head()
        if current != head:
            raise RuntimeError(f"schema at revision {current}, expected {head}: run the service once to migrate")


def is_outage(exc: BaseException) -> bool:
    """Whether an error says the store is unreachable or busy (try again), not that a statement is wrong."""
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated
                                            or isinstance(exc, OperationalError | InterfaceError))


def open_store(url: str, *, pool_size: int = 5) -> Store:
    """An engine for ``url`` keeping ``pool_size`` connections (and as many more under load); SQLite files get their
    directory, WAL mode and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        sizes: dict[str, int] = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            sizes = {"pool_size": pool_size, "max_overflow": pool_size}  # a memory database has one connection
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_S}, **sizes)
        event.listen(engine, "connect", _sqlite_pragmas)
        turns = _Turns()
        turns.listen(engine)
        return Store(engine, turns=turns)
    engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
    return Store(engine)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
