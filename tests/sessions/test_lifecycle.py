"""Starting, stopping and resetting sessions through the running service, against the real cluster."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT
from tests.support.server import Server
from tests.support.wait import dead_kubeconfig, eventually, namespace_gone


def test_twenty_concurrent_starts_give_twenty_ready_sessions(server: Server, kube: client.ApiClient) -> None:
    learners = [f"crowd-{i:02d}" for i in range(20)]

    def start(learner: str) -> httpx.Response:
        with server.client() as c:
            return c.post("/v1/sessions", json={"lab_id": "idle-hunter", "learner_id": learner})

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(start, learners))
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    bodies = [r.json() for r in responses]
    assert len({b["id"] for b in bodies}) == 20
    assert {b["state"] for b in bodies} == {"ready"}
    assert {b["learner_id"] for b in bodies} == set(learners)
    namespaces = {n.metadata.name for n in client.CoreV1Api(kube).list_namespace(
        label_selector="labctl.dev/lab=idle-hunter").items}
    assert {b["namespace"] for b in bodies} <= namespaces
    with server.client() as c:
        listed = c.get("/v1/sessions", params={"lab_id": "idle-hunter"}).json()
    assert len([s for s in listed if s["learner_id"].startswith("crowd-")]) == 20


def test_five_concurrent_starts_for_one_learner_give_one_session(server: Server) -> None:
    def start(_: int) -> httpx.Response:
        with server.client() as c:
            return c.post("/v1/sessions", json={"lab_id": "move-batch-to-spot", "learner_id": "eager"})

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(start, range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    with server.client() as c:
        sessions = c.get("/v1/sessions", params={"learner_id": "eager"}).json()
    assert len(sessions) == 1


def test_stop_waits_for_real_namespace_finalization(server: Server, kube: client.ApiClient) -> None:
    with server.client() as c:
        session = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "leaver"}).json()
        r = c.delete(f"/v1/sessions/{session['id']}")
        assert r.status_code == 202
        assert r.json()["state"] in ("terminating", "terminated")
        final = eventually(lambda: c.get(f"/v1/sessions/{session['id']}").json()["state"] == "terminated",
                           timeout=120)
        assert final
        kinds = [e["kind"] for e in c.get(f"/v1/sessions/{session['id']}/events").json()]
        assert kinds == ["created", "ready", "terminating", "terminated"]
        # The learner can start the lab again: a new session, not the terminated one.
        again = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "leaver"})
        assert again.status_code == 201
        assert again.json()["id"] != session["id"]
    assert namespace_gone(kube, session["namespace"])
    bindings = client.RbacAuthorizationV1Api(kube).list_cluster_role_binding(
        label_selector=f"labctl.dev/session={session['id']}").items
    assert bindings == []


def test_reset_recreates_the_sandbox_from_scratch(server: Server, kube: client.ApiClient) -> None:
    apps = client.AppsV1Api(kube)
    with server.client() as c:
        session = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "resetter"}).json()
        ns = session["namespace"]
        before = client.CoreV1Api(kube).read_namespace(ns).metadata.uid
        starters = sorted(d.metadata.name for d in apps.list_namespaced_deployment(ns).items)
        apps.delete_namespaced_deployment(starters[0], ns)  # the learner broke something
        r = c.post(f"/v1/sessions/{session['id']}/reset")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "ready"
        kinds = [e["kind"] for e in c.get(f"/v1/sessions/{session['id']}/events").json()]
    assert kinds == ["created", "ready", "provisioning", "ready"]
    assert client.CoreV1Api(kube).read_namespace(ns).metadata.uid != before
    assert sorted(d.metadata.name for d in apps.list_namespaced_deployment(ns).items) == starters


def test_learner_token_sees_only_its_own_sessions(server: Server) -> None:
    with server.client() as admin:
        mine = admin.post("/v1/sessions", json={"lab_id": "gpu-rightsizing", "learner_id": "lin"}).json()
        theirs = admin.post("/v1/sessions", json={"lab_id": "gpu-rightsizing", "learner_id": "max"}).json()
        token = admin.post("/v1/tokens", json={"name": "lin", "role": "learner", "learner_id": "lin"}).json()["token"]
    with server.client(token) as lin:
        assert lin.get(f"/v1/sessions/{mine['id']}").status_code == 200
        hidden = lin.get(f"/v1/sessions/{theirs['id']}")
        assert hidden.status_code == 404
        assert hidden.json()["detail"] == f"there is no session '{theirs['id']}'"
        assert lin.get(f"/v1/sessions/{theirs['id']}/kubeconfig").status_code == 404
        assert lin.delete(f"/v1/sessions/{theirs['id']}").status_code == 404
        assert {s["learner_id"] for s in lin.get("/v1/sessions").json()} == {"lin"}
        assert lin.post("/v1/sessions", json={"lab_id": "idle-hunter", "learner_id": "max"}).status_code == 404
        assert lin.post("/v1/tokens", json={"name": "x", "role": "instructor"}).status_code == 403


def test_bad_input_gets_problem_documents(server: Server) -> None:
    with server.client() as c:
        unknown = c.post("/v1/sessions", json={"lab_id": "no-such-lab", "learner_id": "ada"})
        malformed = c.post("/v1/sessions", json={"lab_id": "idle-hunter", "learner_id": "ada lovelace!"})
        missing = c.get("/v1/sessions/no-such-session")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "no-such-lab" in unknown.json()["detail"]
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "learner_id"
    assert missing.status_code == 404
    with httpx.Client(base_url=server.url) as anonymous:
        r = anonymous.get("/v1/sessions")
    assert r.status_code == 401
    assert "Authorization" in r.json()["detail"]


def test_unreachable_cluster_gives_503_and_records_nothing(tmp_path: Path) -> None:
    dead = dead_kubeconfig(tmp_path)
    srv = Server(data_dir=tmp_path, kubeconfig=dead).start(wait_ready=False)
    try:
        with srv.client() as c:
            r = c.post("/v1/sessions", json={"lab_id": "idle-hunter", "learner_id": "ada"})
            listed = c.get("/v1/sessions").json()
    finally:
        srv.stop()
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert "unreachable" in r.json()["detail"]
    assert listed == []


def test_killed_mid_start_ends_ready_or_failed_and_clean(local_cluster: LocalCluster, kube: client.ApiClient,
                                                          tmp_path: Path) -> None:
    # A pause between applied objects makes the start last seconds, so the kill lands in the middle of it.
    srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_PROVISION_STEP_DELAY_S": "0.5"}).start()
    results: list[Any] = []

    def start() -> None:
        try:
            with srv.client() as c:
                results.append(c.post("/v1/sessions", json={"lab_id": "idle-hunter", "learner_id": "interrupted"}))
        except httpx.TransportError as exc:
            results.append(exc)

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(start)
        labelled = "labctl.dev/learner=interrupted"
        eventually(lambda: client.CoreV1Api(kube).list_namespace(label_selector=labelled).items, timeout=30,
                   interval=0.1)
        srv.kill()
        future.result(timeout=30)
    assert isinstance(results[0], httpx.TransportError), "the start should have been cut off"

    srv.start()  # same data dir: the reconciler finds the interrupted start
    try:
        with srv.client() as c:
            def settled() -> dict[str, Any] | None:
                rows = c.get("/v1/sessions", params={"learner_id": "interrupted"}).json()
                assert len(rows) == 1
                return rows[0] if rows[0]["state"] in ("ready", "failed") else None

            session = eventually(settled, timeout=120)
            if session["state"] == "ready":  # converged: every object is there
                ns = session["namespace"]
                assert client.CoreV1Api(kube).read_namespaced_resource_quota("sandbox", ns).status.hard
                assert client.RbacAuthorizationV1Api(kube).read_namespaced_role_binding("learner", ns)
                assert client.AppsV1Api(kube).list_namespaced_deployment(ns).items
                assert c.get(f"/v1/sessions/{session['id']}/kubeconfig").status_code == 200
            else:  # failed and clean
                assert namespace_gone(kube, session["namespace"])
            kinds = [e["kind"] for e in c.get(f"/v1/sessions/{session['id']}/events").json()]
            assert kinds[0] == "created"
            assert kinds[-1] == session["state"]
    finally:
        srv.stop_all_sessions()
        srv.stop()


def test_a_start_that_fails_part_way_says_why_and_leaves_nothing(tmp_path: Path, local_cluster: LocalCluster,
                                                                  kube: client.ApiClient) -> None:
    # A lab whose starter holds a privileged pod: the namespace, quota and RBAC are made, then Pod Security
    # admission (restricted) refuses the pod. The session must end failed, with the apiserver's reason, and clean.
    labs, manifests = tmp_path / "labs", tmp_path / "manifests"
    shutil.copytree(REPO_ROOT / "labs", labs)
    shutil.copytree(REPO_ROOT / "manifests", manifests)
    (manifests / "labs" / "tag-for-showback" / "zz-privileged.yaml.j2").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: root-shell\n  namespace: {{ namespace }}\nspec:\n"
        "  containers:\n    - name: sh\n      image: busybox\n      securityContext: {privileged: true}\n")
    lab_file = labs / "tag-for-showback" / "lab.yaml"
    doc = yaml.safe_load(lab_file.read_text())
    doc["starter"].append("labs/tag-for-showback/zz-privileged.yaml.j2")
    lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    srv = Server(data_dir=tmp_path / "data", kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_LABS_DIR": str(labs), "LABCTL_MANIFESTS_DIR": str(manifests)})
    srv.data_dir.mkdir()
    srv.start()
    try:
        with srv.client() as c:
            r = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "unlucky"})
            session = r.json()
            events = c.get(f"/v1/sessions/{session['id']}/events").json()
            again = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "unlucky"})
    finally:
        srv.stop()
    assert r.status_code == 201
    assert session["state"] == "failed"
    assert "PodSecurity" in session["reason"] or "forbidden" in session["reason"].lower()
    assert [e["kind"] for e in events] == ["created", "failed"]
    assert namespace_gone(kube, session["namespace"])
    bindings = client.RbacAuthorizationV1Api(kube).list_cluster_role_binding(
        label_selector=f"labctl.dev/session={session['id']}").items
    assert bindings == []
    # A failed session does not block a new start (which fails the same way here, as a new session).
    assert again.json()["id"] != session["id"]
