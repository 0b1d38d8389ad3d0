"""A private PostgreSQL server for tests: Debian's postgresql binaries, a fresh cluster in a temp dir, loopback only.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user (created by the Debian
package). ``.ci/run`` installs the package on a fresh machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: `apt-get install postgresql` (.ci/run does this)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A private server in ``root`` on ``port``; :meth:`stop` and :meth:`start` again keep its data and its port, as
    a restarted database server does (the resilience tests restart one under load)."""

    root: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=_bindir)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://labctl@127.0.0.1:{self.port}/postgres"

    @property
    def _prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def init(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run([*self._prefix, str(self.bindir / "initdb"), "-D", str(self.root / "data"), "-A", "trust",
                        "-U", "labctl", "--no-sync"], check=True, capture_output=True)
        return self.start()

    def start(self) -> PostgresServer:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        subprocess.run([*self._prefix, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", opts, "-l",
                        str(self.root / "log"), "-w", "-t", "60", "start"], check=True, capture_output=True)
        return self

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` cuts every connection at once, as a crash or a failover does."""
        subprocess.run([*self._prefix, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode,
                        "-w", "stop"], check=False, capture_output=True)


@contextmanager
def private_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server; yield it; stop it and delete its files."""
    server = PostgresServer(root=Path(tempfile.mkdtemp(prefix="labctl-pg-")))
    try:
        yield server.init()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway server; yield its SQLAlchemy URL; stop it and delete its files."""
    with private_postgres() as server:
        yield server.url


def fresh_database(server_url: str, *, prefix: str) -> str:
    """A new, empty database on the PostgreSQL server of ``server_url``, named ``<prefix>_<8 hex>``: its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)
