"""The session's cluster in the store, on SQLite and PostgreSQL: migration 0008 gives the Kubernetes sessions made
before it the default cluster (cloud ones none), and the clusters' view counts live sessions per cluster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, insert, select

from labctl.cost.prices import load_sheet
from labctl.providers.kubernetes.clusters import Clusters
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from labctl.service.clusters import Placement
from labctl.settings import REPO_ROOT
from labctl.store.db import Store
from labctl.store.models import SandboxSession
from tests.support.stores import clean_store
from tests.support.wait import dead_kubeconfig

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "labctl.db", migrate=False)
    yield s
    s.engine.dispose()


def _upgrade(store: Store, revision: str) -> None:
    with store.engine.begin() as conn:
        cfg = store.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _plain(kind: object) -> object:
    python = getattr(kind, "python_type", str)
    return {bool: False, int: 0, str: "", datetime: NOW}.get(python, 0) if python is not dict else {}


def test_sessions_made_before_several_clusters_belong_to_the_default_one(store: Store) -> None:
    _upgrade(store, "0007_pools")
    with store.engine.begin() as conn:
        sessions = Table("sessions", MetaData(), autoload_with=conn)
        for sid, provider in (("k-1", "kubernetes"), ("k-2", "kubernetes"), ("aws-1", "aws")):
            given = {"id": sid, "lab_id": "lab", "learner_id": "ada", "provider": provider, "state": "ready",
                     "created_at": NOW}
            # Every other column the 0007 schema requires, with a plain value of its type.
            required = {c.name: _plain(c.type) for c in sessions.columns
                        if not c.nullable and c.server_default is None and c.name not in given}
            conn.execute(insert(sessions).values(**given, **required))
    _upgrade(store, "head")
    with store.session() as db:
        assert dict(db.execute(select(SandboxSession.id, SandboxSession.cluster)).all()) == {
            "k-1": "default", "k-2": "default", "aws-1": None}


def test_the_clusters_view_counts_live_sessions_per_cluster_and_names_one_that_does_not_answer(
        store: Store, tmp_path: Path) -> None:
    store.migrate()
    with store.session() as db:
        for sid, cluster, state in (("s1", "a", "ready"), ("s2", "a", "pooled"), ("s3", "a", "terminated"),
                                    ("s4", "b", "suspended"), ("s5", None, "ready")):
            db.add(SandboxSession(id=sid, lab_id="lab", learner_id="ada", provider="kubernetes", cluster=cluster,
                                  state=state, budget_usd=5, created_at=NOW))
    dead = dead_kubeconfig(tmp_path)
    clusters = Clusters([KubernetesSandboxes(dead, REPO_ROOT / "manifests", cluster=name, timeout=(1.0, 1.0))
                         for name in ("a", "b")])
    sheet = load_sheet(REPO_ROOT / "labs" / "prices.yaml")
    views = Placement(placer=clusters, prices=lambda: sheet, store=store, clock=lambda: NOW).view()
    assert [(v.name, v.sessions, v.reachable) for v in views] == [("a", 2, False), ("b", 1, False)]
    assert all(v.error and "did not answer" in v.error for v in views)
