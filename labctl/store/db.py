"""Engine, sessions and migrations of the state store.

``open_store(url)`` gives a :class:`Store`; ``Store.migrate()`` brings the schema to the newest Alembic revision (run at
service start, idempotent); ``Store.ping()`` is the readiness probe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


class Store:
    """A database with labctl's schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        with self._sessions.begin() as session:
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
        engine = create_engine(url, connect_args={"timeout": 30}, **sizes)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
    return Store(engine)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
