"""Several clusters end to end: `labctl serve` over two real local clusters (``a`` cheap and small, ``b`` dearer,
larger, with one GPU; :mod:`tests.support.two_clusters`).

Starts go to the cheaper cluster while it has room, then to the other; a GPU lab goes where a GPU is free, and of two
starts racing for the last one only one pod gets it (the other waits Pending, never on a cluster without GPUs); a lab
no cluster could run is a 503 naming each cluster's reason, with nothing left behind.
Each session's namespace exists in its own cluster only; the learner's kubeconfig names its cluster's server (b's:
the learners' address its entry gives); a sweep meters the sessions of both clusters and ends only the session whose
namespace vanished; a stop removes the sandbox from its cluster; a cluster whose apiserver stops answering fails its
own readiness check (the service stays ready) while starts go to the other.
The tests run in order on one world.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from sqlalchemy import select

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes.client import api_client
from labctl.providers.kubernetes.clusters import Clusters
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from labctl.runtime import Runtime, build
from labctl.settings import Settings
from labctl.store.models import SandboxSession
from tests.support.outage import apiserver_stopped
from tests.support.server import ADMIN_TOKEN, LABCTL, Server
from tests.support.two_clusters import Pair, labs
from tests.support.wait import dead_kubeconfig, eventually


@pytest.fixture(scope="module")
def world(cluster_pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("clusters")
    labs_dir, manifests = labs(tmp)
    # A short connect timeout keeps the outage test's apiserver stop brief (the controllers' leases outlive seconds).
    # Cluster b's learners are given another name its apiserver's certificate carries, as a cluster labctl reaches
    # at a private endpoint would name its public one.
    clusters = f"{cluster_pair.env()['LABCTL_CLUSTERS']}@{_learners_server_of(cluster_pair.b)}"
    env = {"LABCTL_CLUSTERS": clusters, "LABCTL_LABS_DIR": str(labs_dir), "LABCTL_MANIFESTS_DIR": str(manifests),
           "LABCTL_KUBE_CONNECT_TIMEOUT_S": "1"}
    srv = Server(data_dir=tmp / "data", kubeconfig=None, extra_env=env)
    srv.data_dir.mkdir()
    srv.start()
    settings = Settings(data_dir=srv.data_dir, admin_token=ADMIN_TOKEN, labs_dir=labs_dir, manifests_dir=manifests,
                        clusters=env["LABCTL_CLUSTERS"],  # type: ignore[arg-type]  # parsed by its validator
                        replica_id="test-sweeper")
    # This process's runtime on the server's store, the sweep the tests drive: a second replica, with a name of its
    # own (a lease is free to its own holder, so sharing the server's hostname would let the server's 30-s reconcile
    # finish a stop this sweep holds, with the stop's reason).
    rt = build(settings)
    with api_client(cluster_pair.a.kubeconfig) as a, api_client(cluster_pair.b.kubeconfig) as b:
        yield {"server": srv, "runtime": rt, "kube": {"a": a, "b": b}, "sessions": {}, "env": env}
    rt.close()
    srv.close()


def _start(srv: Server, lab: str, learner: str) -> httpx.Response:
    with srv.client() as c:
        return c.post("/v1/sessions", json={"lab_id": lab, "learner_id": learner})


def _namespaces(world: dict[str, Any], cluster: str) -> set[str]:
    listed = client.CoreV1Api(world["kube"][cluster]).list_namespace(label_selector="labctl.dev/session")
    return {ns.metadata.name for ns in listed.items if ns.metadata.deletion_timestamp is None}


def _learners_server_of(cluster: LocalCluster) -> str:
    """The cluster's apiserver under another name its certificate carries (``localhost``)."""
    server = _server_of(cluster)
    assert "127.0.0.1" in server, server
    return server.replace("127.0.0.1", "localhost")


def _server_of(cluster: LocalCluster) -> str:
    return str(yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"])


def _kubectl(cluster: LocalCluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.tools.kubectl), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "KUBECONFIG": ""}, check=False)


def test_both_clusters_are_ready_checks(world: dict[str, Any]) -> None:
    with world["server"].client() as c:
        ready = c.get("/readyz").json()
    assert set(ready["checks"]) == {"store", "cluster:a", "cluster:b"} and ready["status"] == "ready"


def test_starts_go_to_the_cheaper_cluster_while_it_has_room_then_to_the_other(world: dict[str, Any]) -> None:
    srv = world["server"]
    placed = {}
    for learner in ("ada", "bob", "cy"):
        r = _start(srv, "tiny-web", learner)
        assert r.status_code == 201, r.text
        placed[learner] = r.json()
        world["sessions"][learner] = r.json()
    # a (spot) is cheaper: two sandboxes; the third's 1.5 cores do not fit in the 1 core left there.
    assert [placed[x]["cluster"] for x in ("ada", "bob", "cy")] == ["a", "a", "b"]
    assert all(s["state"] == "ready" for s in placed.values())


def test_each_namespace_exists_in_its_own_cluster_only(world: dict[str, Any]) -> None:
    in_a, in_b = _namespaces(world, "a"), _namespaces(world, "b")
    for session in world["sessions"].values():
        mine, other = (in_a, in_b) if session["cluster"] == "a" else (in_b, in_a)
        assert session["namespace"] in mine and session["namespace"] not in other


def test_a_gpu_lab_goes_where_a_gpu_is_free_and_two_racing_for_the_last_never_both_take_it(
        world: dict[str, Any]) -> None:
    srv = world["server"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda learner: _start(srv, "one-gpu", learner), ["dee", "eve"]))
    assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
    assert {r.json()["cluster"] for r in answers} == {"b"}  # a has no GPU at all: never placed there
    core = client.CoreV1Api(world["kube"]["b"])

    def pods() -> dict[str, str | None] | None:
        found = {r.json()["learner_id"]: [p.spec.node_name for p in core.list_namespaced_pod(
            r.json()["namespace"]).items] for r in answers}
        return {k: v[0] for k, v in found.items()} if all(len(v) == 1 for v in found.values()) else None

    placed = eventually(pods, timeout=60)
    time.sleep(2)  # the scheduler has had its chance at both
    placed = eventually(pods, timeout=60)
    bound = [learner for learner, node in placed.items() if node]
    assert len(bound) == 1, placed  # one pod holds the GPU; the other waits Pending for one
    waiting = next(r.json() for r in answers if r.json()["learner_id"] not in bound)
    world["sessions"][bound[0]] = next(r.json() for r in answers if r.json()["learner_id"] == bound[0])
    with srv.client() as c:
        assert c.delete(f"/v1/sessions/{waiting['id']}").status_code == 202
        eventually(lambda: c.get(f"/v1/sessions/{waiting['id']}").json()["state"] == "terminated" or None,
                   timeout=120)


def test_a_lab_no_cluster_could_run_is_a_503_naming_each_clusters_reason_and_leaves_nothing(
        world: dict[str, Any]) -> None:
    srv = world["server"]
    problem = _start(srv, "two-gpu", "zed")
    assert problem.status_code == 503 and problem.headers["content-type"].startswith("application/problem+json")
    assert problem.headers["retry-after"]
    detail = problem.json()["detail"]
    assert "no cluster can take a sandbox of lab two-gpu" in detail
    assert "a: no node in pool small-spot has 2 free nvidia.com/gpu for Deployment/train (most free: 0)" in detail
    assert "b: no node in pools cpu-ondemand, gpu-one has 2 free nvidia.com/gpu for Deployment/train" in detail
    with srv.client() as c:  # nothing left behind: no session, no namespace
        assert c.get("/v1/sessions", params={"learner_id": "zed"}).json() == []
    assert len(_namespaces(world, "a") | _namespaces(world, "b")) == len(world["sessions"])


def test_instructors_see_each_clusters_capacity_and_sessions(world: dict[str, Any]) -> None:
    srv = world["server"]

    def bound() -> dict[str, Any] | None:  # the GPU pod is scheduled a moment after its start answered
        with srv.client() as c:
            rows = {row["name"]: row for row in c.get("/v1/clusters").json()}
        return rows if rows["b"]["free"]["nvidia.com/gpu"] == 0 and rows["b"]["starting"] == 0 else None

    listed = eventually(bound, timeout=60)
    assert list(listed) == ["a", "b"]
    assert listed["a"]["sessions"] == 2 and listed["b"]["sessions"] == 2
    assert listed["a"]["free"]["cpu"] == pytest.approx(1.0) and listed["a"]["allocatable"]["cpu"] == 4
    assert listed["b"]["free"]["nvidia.com/gpu"] == 0 and listed["b"]["schedulable_nodes"] == 3
    env = {**os.environ, "LABCTL_URL": srv.url, "LABCTL_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"}
    table = subprocess.run([LABCTL, "clusters"], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert "1 of 4" in table.stdout and "0 of 1" in table.stdout  # a's free cores, b's free GPU
    ada = world["sessions"]["ada"]["id"]
    shown = subprocess.run([LABCTL, "sessions", "show", ada, "-o", "json"], capture_output=True, text=True, env=env,
                           timeout=60, check=True)
    assert yaml.safe_load(shown.stdout)["cluster"] == "a"


def test_the_learners_kubeconfig_names_its_clusters_server(world: dict[str, Any], cluster_pair: Pair,
                                                           tmp_path: Path) -> None:
    srv = world["server"]
    # a: the server of labctl's kubeconfig; b: the learners' address its LABCTL_CLUSTERS entry names.
    for learner, cluster, server in (("ada", cluster_pair.a, _server_of(cluster_pair.a)),
                                     ("cy", cluster_pair.b, _learners_server_of(cluster_pair.b))):
        session = world["sessions"][learner]
        with srv.client() as c:
            kubeconfig = c.get(f"/v1/sessions/{session['id']}/kubeconfig").text
        assert yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["server"] == server
        path = tmp_path / f"{learner}.yaml"
        path.write_text(kubeconfig)
        pods = _kubectl(cluster, path, "get", "deployments", "-o", "name")
        assert pods.returncode == 0 and "deployment.apps/web" in pods.stdout, pods.stderr


def test_a_sweep_meters_the_sessions_of_both_clusters(world: dict[str, Any]) -> None:
    rt: Runtime = world["runtime"]
    report = rt.sweeper.run_once()
    assert not report.errors, report.errors
    with rt.store.session() as db:
        rows = {row.learner_id: row for row in db.query(SandboxSession).filter(
            SandboxSession.id.in_([s["id"] for s in world["sessions"].values()]))}
    assert {row.cluster for row in rows.values()} == {"a", "b"}
    for row in rows.values():
        assert row.last_metered_at is not None and row.burn_rate_usd_per_hour > 0, row.id
    # The spot node makes the same pod cheaper in a than on-demand in b.
    assert rows["ada"].burn_rate_usd_per_hour < rows["cy"].burn_rate_usd_per_hour


def test_a_vanished_namespace_ends_its_session_only(world: dict[str, Any]) -> None:
    rt: Runtime = world["runtime"]
    cy = world["sessions"].pop("cy")
    client.CoreV1Api(world["kube"]["b"]).delete_namespace(cy["namespace"])
    eventually(lambda: cy["namespace"] not in _namespaces(world, "b") or None, timeout=60)
    rt.sweeper.run_once()
    with world["server"].client() as c:
        gone = c.get(f"/v1/sessions/{cy['id']}").json()
        others = [c.get(f"/v1/sessions/{s['id']}").json()["state"] for s in world["sessions"].values()]
    assert gone["state"] == "terminated" and "no longer exists" in gone["reason"]
    assert others == ["ready"] * len(others)


def test_a_stop_removes_the_sandbox_from_its_cluster_and_frees_its_room(world: dict[str, Any]) -> None:
    srv = world["server"]
    bob = world["sessions"].pop("bob")
    with srv.client() as c:
        assert c.delete(f"/v1/sessions/{bob['id']}").status_code == 202
        eventually(lambda: c.get(f"/v1/sessions/{bob['id']}").json()["state"] == "terminated" or None, timeout=120)
    assert bob["namespace"] not in _namespaces(world, "a")
    again = _start(srv, "tiny-web", "fay")  # a has room again, and is still the cheaper
    assert again.status_code == 201 and again.json()["cluster"] == "a", again.text
    world["sessions"]["fay"] = again.json()


def test_a_cluster_that_stops_answering_fails_its_check_and_starts_go_to_the_other(world: dict[str, Any],
                                                                                    cluster_pair: Pair) -> None:
    srv = world["server"]
    with srv.client() as c:  # make room in a, so only its outage sends the next start to b
        fay = world["sessions"].pop("fay")
        c.delete(f"/v1/sessions/{fay['id']}")
        eventually(lambda: c.get(f"/v1/sessions/{fay['id']}").json()["state"] == "terminated" or None, timeout=120)
    with apiserver_stopped(cluster_pair.a):
        started = time.monotonic()
        r = _start(srv, "tiny-web", "gus")
        took = time.monotonic() - started
        assert r.status_code == 201 and r.json()["cluster"] == "b", r.text
        assert took < 10, f"the start waited {took:.1f}s on the cluster that does not answer"
        world["sessions"]["gus"] = r.json()
        with srv.client() as c:
            ready = c.get("/readyz")
        # Still ready: starts that fit b go there; the check names a as failing.
        assert ready.status_code == 200
        assert ready.json()["checks"]["cluster:a"]["ok"] is False and ready.json()["checks"]["cluster:b"]["ok"]


def test_a_listing_names_the_clusters_that_answered_so_the_others_sessions_are_not_judged(
        world: dict[str, Any], cluster_pair: Pair, tmp_path: Path) -> None:
    rt: Runtime = world["runtime"]
    live = Clusters([KubernetesSandboxes(cluster_pair.b.kubeconfig, rt.settings.manifests_dir, cluster="b"),
                     KubernetesSandboxes(dead_kubeconfig(tmp_path), rt.settings.manifests_dir, cluster="gone",
                                         timeout=(1.0, 1.0))])
    listing = live.sandboxes()
    assert listing.clusters == {"b"}
    assert world["sessions"]["gus"]["id"] in listing.sessions
    with rt.store.session() as db:
        sweep_sees = db.scalars(select(SandboxSession.id).where(
            SandboxSession.cluster.is_(None) | SandboxSession.cluster.in_(listing.clusters))).all()
    assert world["sessions"]["ada"]["id"] not in sweep_sees  # a's session: not judged by this listing
