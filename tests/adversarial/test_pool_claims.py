"""The learner against a warm pool, with the real kubectl and the kubeconfig labctl issues: a pooled sandbox cannot be
seen, reached or claimed by choice before a start; a claimed one shows nothing of the pool or of anyone else; a
learner's sandbox never goes back to the pool, so the next learner never gets what another left.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from sqlalchemy import select

from labctl import runtime
from labctl.errors import NotFound
from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import render
from labctl.store.models import SandboxSession
from tests.support.pool_world import LAB, PLATFORM, learner, pool_runtime, remove_all, write_labs

WARM = 2


@dataclass
class Seat:
    """A learner at the keyboard of a claimed sandbox."""

    session_id: str
    namespace: str
    kubeconfig: Path
    kubectl_path: Path
    home: Path

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)})


@pytest.fixture(scope="module")
def rt(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[runtime.Runtime]:
    directory = tmp_path_factory.mktemp("pool-claims")
    with pool_runtime(local_cluster, labs_dir=write_labs(directory, warm=WARM),
                      database=f"sqlite:///{directory / 'labctl.db'}", data_dir=directory) as built:
        assert built.pools.run_once().made == WARM
        yield built
        remove_all(built)


def pooled(rt: runtime.Runtime) -> list[str]:
    with rt.store.session() as db:
        return list(db.scalars(select(SandboxSession.id).where(SandboxSession.state == "pooled")))


def seat(rt: runtime.Runtime, cluster: LocalCluster, directory: Path, learner_id: str) -> Seat:
    row, created = rt.sessions.start(lab_id=LAB, learner_id=learner_id, principal=learner(learner_id))
    assert created and row.state == "ready", (row.state, row.reason)
    creds = rt.sessions.credentials(row.id, principal=learner(learner_id))
    path = directory / f"{learner_id}.kubeconfig"
    path.write_text(creds.content)
    home = directory / f"{learner_id}-home"
    home.mkdir(exist_ok=True)
    assert row.namespace is not None
    return Seat(session_id=row.id, namespace=row.namespace, kubeconfig=path, kubectl_path=cluster.tools.kubectl,
                home=home)


def test_a_learner_cannot_see_reach_or_pick_a_pooled_sandbox(rt: runtime.Runtime, local_cluster: LocalCluster,
                                                             tmp_path: Path) -> None:
    waiting = pooled(rt)
    assert len(waiting) == WARM
    ada = seat(rt, local_cluster, tmp_path, "ada")
    assert ada.session_id in waiting, "a start claims from the pool"
    other = next(i for i in pooled(rt))

    # Through labctl: no listing, no session, no credentials of a pooled sandbox, for a learner or the course site.
    for who in (learner("ada"), PLATFORM):
        listed, _ = rt.sessions.list_sessions(principal=who)
        assert other not in {r.id for r in listed}
        with pytest.raises(NotFound):
            rt.sessions.get(other, principal=who)
        with pytest.raises(NotFound):
            rt.sessions.credentials(other, principal=who)
    # Through the cluster, with the learner's own kubeconfig: nothing of the pooled namespace, no namespace listing.
    for args in (("get", "pods", "-n", other), ("get", "configmaps", "-n", other), ("get", "namespaces"),
                 ("get", "namespace", other), ("auth", "can-i", "create", "pods", "-n", other)):
        proc = ada.kubectl(*args)
        assert proc.returncode != 0, f"kubectl {' '.join(args)} as the learner: {proc.stdout}"
        assert "forbidden" in proc.stderr.lower() or proc.stdout.strip() == "no", proc.stderr
    # The learner cannot pick which pooled sandbox it gets: a start names a lab and a learner, nothing else, and a
    # second start of the same learner answers its live session, not another sandbox.
    again, created = rt.sessions.start(lab_id=LAB, learner_id="ada", principal=learner("ada"))
    assert not created and again.id == ada.session_id
    assert other in pooled(rt)


def test_a_claimed_sandbox_shows_nothing_of_the_pool_or_of_another_learner(rt: runtime.Runtime,
                                                                          local_cluster: LocalCluster,
                                                                          tmp_path: Path) -> None:
    if not pooled(rt):
        rt.pools.run_once()
    grace = seat(rt, local_cluster, tmp_path, "grace")
    row = rt.sessions.get(grace.session_id, principal=learner("grace"))
    assert row.learner_id == "grace" and row.accrued_usd == 0
    assert [e.kind for e in rt.sessions.events(row.id, principal=learner("grace"))] == ["created", "ready"]
    # Only the lab's starter is there, as a cold start would have it (names as the templates render them).
    spec = rt.sessions.spec_of(row)
    starter = {(o["kind"], o["metadata"]["name"]) for o in render.starter_objects(spec, rt.settings.manifests_dir)}
    proc = grace.kubectl("get", "deployments,statefulsets,jobs,cronjobs,services,configmaps", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    found = {(i["kind"], i["metadata"]["name"]) for i in json.loads(proc.stdout)["items"]}
    assert found - starter <= {("ConfigMap", "kube-root-ca.crt")}, found - starter
    assert {k for k in starter if k[0] != "Pod"} <= found


def test_a_learners_sandbox_never_returns_to_the_pool(rt: runtime.Runtime, local_cluster: LocalCluster,
                                                     kube: client.ApiClient, tmp_path: Path) -> None:
    if not pooled(rt):
        rt.pools.run_once()
    mallory = seat(rt, local_cluster, tmp_path, "mallory")
    note = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "left-for-the-next-learner"},
            "data": {"hello": "from mallory"}}
    made = mallory.kubectl("apply", "-f", "-", stdin=json.dumps(note))
    assert made.returncode == 0, made.stderr

    rt.sessions.stop(mallory.session_id, principal=learner("mallory"))
    rt.sessions.finish_stop(mallory.session_id, actor="test")
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(kube).read_namespace(mallory.namespace)
    assert gone.value.status == 404

    rt.pools.run_once()  # the refill makes new sandboxes; none is the stopped one
    assert mallory.session_id not in pooled(rt)
    for name in ("eve", "oscar"):
        successor = seat(rt, local_cluster, tmp_path, name)
        assert successor.session_id != mallory.session_id
        listed = successor.kubectl("get", "configmaps", "-o", "name")
        assert listed.returncode == 0, listed.stderr
        assert "left-for-the-next-learner" not in listed.stdout
