"""A world with a warm pool: the shipped ``tag-for-showback`` lab with ``pool: {warm: N}`` in a labs directory of
the test's own, labctl's runtime built over it (the composition root ``labctl serve`` uses) on a fresh SQLite file or
PostgreSQL database, the real local cluster, and a fake clock for the ledgers (the cluster's waits keep real time).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from labctl import runtime
from labctl.localcluster.cluster import LocalCluster
from labctl.service.auth import Principal
from labctl.settings import REPO_ROOT, Settings
from labctl.store.models import SandboxSession
from tests.support.clock import FakeClock
from tests.support.postgres import fresh_database

LAB = "tag-for-showback"
PLATFORM = Principal(name="course-site", role="platform", token_id=1)
INSTRUCTOR = Principal(name="instructor", role="instructor")


def learner(learner_id: str) -> Principal:
    return Principal(name=f"learner {learner_id}", role="learner", learner_id=learner_id, token_id=2)


def write_labs(directory: Path, *, warm: int, summary: str | None = None) -> Path:
    """A labs directory holding the shipped lab with a warm pool (and, to change the lab, another summary)."""
    labs = directory / "labs"
    shutil.rmtree(labs, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "labs" / LAB, labs / LAB)
    path = labs / LAB / "lab.yaml"
    data = yaml.safe_load(path.read_text())
    data["pool"] = {"warm": warm}
    if summary is not None:
        data["summary"] = summary
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return labs


def database_url(request: pytest.FixtureRequest, directory: Path) -> str:
    """``request.param``: a fresh SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{directory / 'labctl.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"), prefix="pools")


@contextmanager
def pool_runtime(cluster: LocalCluster, *, labs_dir: Path, database: str, data_dir: Path,
                 clock: FakeClock | None = None) -> Iterator[runtime.Runtime]:
    """labctl's runtime over the pool's lab; its sessions' clock is ``clock`` (default: a fake one at now)."""
    settings = Settings(labs_dir=labs_dir, database_url=database, kubeconfig=cluster.kubeconfig, data_dir=data_dir,
                        simulate_demand=False, grader_unjailed_fallback=True)
    rt = runtime.build(settings)
    rt.store.migrate()
    rt.sessions.clock = clock or FakeClock(datetime.now(UTC))
    try:
        yield rt
    finally:
        rt.store.engine.dispose()


def remove_all(rt: runtime.Runtime) -> None:
    """Stop every live or pooled session of the world and remove the sandboxes side by side (the cluster is
    shared)."""
    with rt.store.session() as db:
        ids = list(db.scalars(select(SandboxSession.id).where(SandboxSession.state.not_in(("terminated", "failed")))))

    def remove(session_id: str) -> None:
        rt.sessions.stop(session_id, principal=None, actor="test")
        rt.sessions.finish_stop(session_id, actor="test")

    with ThreadPoolExecutor(max_workers=8) as workers:
        for future in [workers.submit(remove, i) for i in ids]:
            future.result()
