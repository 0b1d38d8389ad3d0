"""A warm pool over two real local clusters: its sandboxes are placed as starts are, and a claim keeps the cluster.

The ``tiny-web`` lab (:mod:`tests.support.two_clusters`) with ``pool: {warm: 3}``: cluster ``a`` (cheap) has room
for two of its sandboxes, so the pool makes two there and the third in ``b``; three learners' starts claim the three,
each session in its pooled sandbox's cluster, its namespace there naming the learner, and the learner's kubeconfig
reaching that cluster with the real kubectl; the next start, with ``a`` full and the pool empty, provisions cold in
``b``. labctl's runtime (the composition root ``labctl serve`` uses) drives the pool's pass; SQLite.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from sqlalchemy import select

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes.client import api_client
from labctl.runtime import Runtime, build
from labctl.settings import Settings
from labctl.store.models import SandboxSession
from tests.support.pool_world import PLATFORM, remove_all
from tests.support.server import ADMIN_TOKEN
from tests.support.two_clusters import Pair, labs
from tests.support.wait import eventually

pytestmark = pytest.mark.cluster

LAB = "tiny-web"
WARM = 3


@dataclass
class World:
    rt: Runtime
    kube: dict[str, client.ApiClient]


@pytest.fixture(scope="module")
def world(cluster_pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("pools-clusters")
    labs_dir, manifests = labs(tmp)
    path = labs_dir / LAB / "lab.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["pool"] = {"warm": WARM}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    settings = Settings(data_dir=tmp, admin_token=ADMIN_TOKEN, labs_dir=labs_dir, manifests_dir=manifests,
                        clusters=cluster_pair.env()["LABCTL_CLUSTERS"],  # type: ignore[arg-type]  # its validator
                        simulate_demand=False, grader_unjailed_fallback=True)
    rt = build(settings)
    rt.store.migrate()
    with api_client(cluster_pair.a.kubeconfig) as a, api_client(cluster_pair.b.kubeconfig) as b:
        try:
            yield World(rt=rt, kube={"a": a, "b": b})
        finally:
            remove_all(rt)
            rt.close()


def _rows(rt: Runtime, state: str) -> list[SandboxSession]:
    with rt.store.session() as db:
        return list(db.scalars(select(SandboxSession).where(SandboxSession.state == state,
                                                            SandboxSession.lab_id == LAB)))


def _kubectl(cluster: LocalCluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.tools.kubectl), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "KUBECONFIG": ""}, check=False)


def test_the_pool_fills_the_cheap_cluster_first_and_claims_keep_their_cluster(world: World, cluster_pair: Pair,
                                                                              tmp_path: Path) -> None:
    rt = world.rt
    report = rt.pools.run_once()
    assert report.made == WARM, report
    pooled = {row.id: row.cluster for row in _rows(rt, "pooled")}
    assert sorted(pooled.values()) == ["a", "a", "b"], pooled

    learners = [f"pool-learner-{i}" for i in range(WARM)]
    with ThreadPoolExecutor(max_workers=WARM) as workers:
        started = list(workers.map(lambda who: rt.sessions.start(lab_id=LAB, learner_id=who, principal=PLATFORM)[0],
                                   learners))
    assert {row.id for row in started} == set(pooled), "every start claimed a pooled sandbox"
    clusters = {"a": cluster_pair.a, "b": cluster_pair.b}
    for row in started:
        assert row.state == "ready" and row.cluster == pooled[row.id], (row.id, row.state, row.cluster)
        other = "b" if row.cluster == "a" else "a"
        labels = client.CoreV1Api(world.kube[row.cluster]).read_namespace(row.namespace).metadata.labels
        assert labels["labctl.dev/learner"] == row.learner_id
        assert row.namespace not in {ns.metadata.name for ns in client.CoreV1Api(world.kube[other]).list_namespace(
            label_selector="app.kubernetes.io/managed-by=labctl").items}
        kubeconfig = tmp_path / f"{row.learner_id}.yaml"
        kubeconfig.write_text(rt.sessions.credentials(row.id, principal=PLATFORM).content)
        got = _kubectl(clusters[row.cluster], kubeconfig, "get", "deployments", "-o", "name")
        assert got.returncode == 0 and "deployment.apps/web" in got.stdout, got.stderr

    # The pool is empty and a holds two sandboxes already: the next start is made cold, in b.
    cold, created = rt.sessions.start(lab_id=LAB, learner_id="pool-learner-late", principal=PLATFORM)
    assert created and cold.id not in pooled and cold.state == "ready", (cold.id, cold.state, cold.reason)
    assert cold.cluster == "b" and cold.namespace
    namespace = cold.namespace
    eventually(lambda: client.CoreV1Api(world.kube["b"]).read_namespace(namespace), timeout=30)
