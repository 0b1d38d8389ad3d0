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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway server; yield its SQLAlchemy URL; stop it and delete its files."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="labctl-pg-"))
    data = root / "data"
    port = free_port()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres", "postgres")
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "labctl",
                        "--no-sync"], check=True, capture_output=True)
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                        "-w", "-t", "60", "start"], check=True, capture_output=True)
        yield f"postgresql+psycopg://labctl@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
