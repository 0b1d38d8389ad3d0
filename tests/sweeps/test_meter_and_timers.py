"""The meter, budgets and timers against the real cluster, driven one sweep at a time with a fake clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from api.app import create_app
from labctl.catalog import loader
from labctl.cost import model
from labctl.cost.prices import load_sheet
from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT, Settings
from tests.support.clock import FakeClock
from tests.support.server import ADMIN_TOKEN
from tests.support.wait import eventually

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A Wednesday inside every lab's working window (Europe/Berlin 11:00).
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)



@dataclass
class World:
    client: TestClient
    clock: FakeClock
    app: Any
    settings: Settings

    def sweep(self) -> Any:
        return self.app.state.parts.runtime.sweeper.run_once()

    def session(self, sid: str) -> dict[str, Any]:
        return dict(self.client.get(f"/v1/sessions/{sid}", headers=HEADERS).json())

    def start(self, lab: str, learner: str) -> dict[str, Any]:
        r = self.client.post("/v1/sessions", json={"lab_id": lab, "learner_id": learner}, headers=HEADERS)
        assert r.status_code == 201, r.text
        return dict(r.json())


def _labs_with(tmp: Path, lab: str, edit: dict[str, Any]) -> Path:
    labs = tmp / "labs"
    shutil.copytree(REPO_ROOT / "labs", labs)
    path = labs / lab / "lab.yaml"
    doc = yaml.safe_load(path.read_text())
    for key, value in edit.items():
        doc[key] = {**doc.get(key, {}), **value}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return labs


def _world(tmp_path: Path, cluster: LocalCluster, labs: Path | None = None, *, db: Path | None = None) -> World:
    settings = Settings(data_dir=tmp_path, kubeconfig=cluster.kubeconfig, admin_token=ADMIN_TOKEN,
                        labs_dir=labs or REPO_ROOT / "labs", fleet_file=REPO_ROOT / "labs" / "fleet.yaml",
                        database_url=f"sqlite:///{db or tmp_path / 'labctl.db'}")
    app = create_app(settings, background=False)
    clock = FakeClock(WEDNESDAY)
    app.state.parts.runtime.sessions.clock = clock
    return World(client=TestClient(app), clock=clock, app=app, settings=settings)


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    w = _world(tmp_path, local_cluster)
    with w.client:
        yield w
        _stop_all(w)


def _stop_all(w: World) -> None:
    for s in w.client.get("/v1/sessions", headers=HEADERS).json():
        if s["state"] not in ("terminated", "failed"):
            w.client.delete(f"/v1/sessions/{s['id']}", headers=HEADERS)


def _pods_running(kube: client.ApiClient, ns: str, selector: str, count: int) -> bool:
    pods = client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=selector).items
    return len(pods) == count and all(p.status.phase == "Running" for p in pods)


def test_whole_a100_burn_rate_matches_the_sheet_then_mig_spot_is_cheaper(world: World,
                                                                          kube: client.ApiClient) -> None:
    session = world.start("gpu-rightsizing", "gpu-learner")
    ns = session["namespace"]
    apps = client.AppsV1Api(kube)
    deployment = apps.list_namespaced_deployment(ns).items[0]
    replicas = deployment.spec.replicas
    selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
    eventually(lambda: _pods_running(kube, ns, selector, replicas), timeout=90)
    world.sweep()
    burn = world.session(session["id"])["cost"]["burn_rate_usd_per_hour"]

    # Expected from the sheet by hand: each replica's share of the p4de.24xlarge on-demand price.
    sheet = load_sheet(REPO_ROOT / "labs" / "prices.yaml")
    rates = model.unit_rates(sheet.node_price("aws", "us-east-1", "p4de.24xlarge", "on-demand"))
    req = deployment.spec.template.spec.containers[0].resources.requests
    cpu = Decimal(req["cpu"])
    mem_gib = Decimal(int(req["memory"].removesuffix("Gi")))
    per_replica = rates.gpu_hourly_usd + cpu * rates.cpu_core_hourly_usd + mem_gib * rates.memory_gib_hourly_usd
    assert burn == pytest.approx(float(per_replica * replicas), rel=0.01)

    # The learner applies the lab's reference solution: one 1g.10gb slice on the spot MIG node, rightsized CPU/memory.
    rt = world.app.state.parts.runtime
    lab = rt.catalog["gpu-rightsizing"]
    context = {"namespace": ns, "session_id": session["id"], "lab_id": lab.id, "learner_id": "gpu-learner"}
    solution = loader.render_solution(lab, world.settings.manifests_dir, context)
    rt.provider.apply(solution)
    moved = next(d for d in solution if d["kind"] == "Deployment")
    new_req = moved["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    new_cpu = Decimal(new_req["cpu"].removesuffix("m")) / 1000
    new_mem_gib = Decimal(int(new_req["memory"].removesuffix("Gi")))

    def on_mig() -> bool:
        pods = [p for p in client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=selector).items
                if p.metadata.deletion_timestamp is None]
        return len(pods) == replicas and all(
            p.status.phase == "Running" and (p.spec.node_name or "").startswith("gpu-a100-mig-spot") for p in pods)

    eventually(on_mig, timeout=120)
    world.clock.advance(minutes=1)
    world.sweep()
    spot = model.unit_rates(sheet.node_price("aws", "us-east-1", "p4de.24xlarge", "spot"))
    slice_rate = model.mig_slice_hourly_usd("1g.10gb", spot, gpu_memory_mib=81920)
    expected = (slice_rate + new_cpu * spot.cpu_core_hourly_usd + new_mem_gib * spot.memory_gib_hourly_usd) * replicas
    after = world.session(session["id"])["cost"]["burn_rate_usd_per_hour"]
    assert after == pytest.approx(float(expected), rel=0.01)
    assert after < burn / 3


def test_budget_suspend_within_one_sweep_and_resume_restores_replicas(tmp_path: Path, local_cluster: LocalCluster,
                                                                      kube: client.ApiClient) -> None:
    labs = _labs_with(tmp_path, "idle-hunter",
                      {"budget": {"usd": 1, "thresholds": [{"percent": 50, "action": "notify"},
                                                           {"percent": 100, "action": "suspend"}]},
                       # Only the budget may act here: no expiry, idle or off-hours in the hours this test skips.
                       "time": {"limit": "30d", "max_extension": "0", "idle_timeout": None, "off_hours": None}})
    w = _world(tmp_path, local_cluster, labs)
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    with w.client:
        try:
            session = w.start("idle-hunter", "spender")
            ns, sid = session["namespace"], session["id"]
            before = {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items}
            w.sweep()
            rate = w.session(sid)["cost"]["burn_rate_usd_per_hour"]
            assert rate > 0
            hours_to_budget = 1 / rate
            w.clock.advance(hours=hours_to_budget * 0.9)
            w.sweep()
            s = w.session(sid)
            assert s["state"] == "ready"
            assert 0.85 < s["cost"]["accrued_usd"] < 1.0
            w.clock.advance(hours=hours_to_budget * 0.2)  # crosses 100 % during this interval
            w.sweep()
            s = w.session(sid)
            assert s["state"] == "suspended", s
            assert s["suspend_reason"] == "budget"
            assert all(d.spec.replicas == 0 for d in apps.list_namespaced_deployment(ns).items)
            assert core.read_namespaced_resource_quota("sandbox", ns).spec.hard["pods"] == "0"
            kinds = [e["kind"] for e in w.client.get(f"/v1/sessions/{sid}/events", headers=HEADERS).json()]
            assert kinds.count("budget_threshold_crossed") == 2  # 50 % and 100 %, each once

            # A learner cannot resume a budget suspension; nor can an instructor while spending is at the suspend
            # level. More budget (an approved request) lifts it, and the old replicas come back exactly.
            token = w.client.post("/v1/tokens", json={"name": "sp", "role": "learner", "learner_id": "spender"},
                                  headers=HEADERS).json()["token"]
            learner = {"Authorization": f"Bearer {token}"}
            refused = w.client.post(f"/v1/sessions/{sid}/resume", headers=learner)
            assert refused.status_code == 409
            assert "budget" in refused.json()["detail"]
            assert w.client.post(f"/v1/sessions/{sid}/resume", headers=HEADERS).status_code == 409
            asked = w.client.post(f"/v1/sessions/{sid}/budget-requests", json={"usd": 1, "reason": "finish"},
                                  headers=learner).json()
            r = w.client.post(f"/v1/sessions/{sid}/budget-requests/approve",
                              json={"request_id": asked["budget_request_id"]}, headers=HEADERS)
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "ready"
            after = {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items}
            assert after == before
            assert core.read_namespaced_resource_quota("sandbox", ns).spec.hard["pods"] != "0"
        finally:
            _stop_all(w)


def test_ledger_never_double_counts_across_a_restart(tmp_path: Path, local_cluster: LocalCluster) -> None:
    db = tmp_path / "shared.db"
    # Nobody touches the sandbox for an hour: without an idle timeout it keeps running (and costing) all along.
    labs = _labs_with(tmp_path, "tag-for-showback", {"time": {"idle_timeout": None}})
    first = _world(tmp_path / "a", local_cluster, labs, db=db)
    with first.client:
        session = first.start("tag-for-showback", "restarter")
        sid = session["id"]
        first.sweep()
        first.clock.advance(minutes=30)
        first.sweep()
        halfway = Decimal(str(first.session(sid)["cost"]["accrued_usd"]))
    # The service restarts (a new process over the same store) at the same instant, and sweeps twice.
    second = _world(tmp_path / "b", local_cluster, labs, db=db)
    second.clock.now = first.clock.now
    with second.client:
        try:
            second.sweep()
            assert Decimal(str(second.session(sid)["cost"]["accrued_usd"])) == halfway
            # The next half hour is charged at the rate this sweep measured (the starter may still have been
            # starting pods at the first one), once.
            rate = Decimal(str(second.session(sid)["cost"]["burn_rate_usd_per_hour"]))
            second.clock.advance(minutes=30)
            second.sweep()
            total = Decimal(str(second.session(sid)["cost"]["accrued_usd"]))
            assert float(total - halfway) == pytest.approx(float(rate) / 2, rel=0.01)
        finally:
            _stop_all(second)


def test_expiry_while_the_service_was_down_is_acted_on_at_the_first_sweep(world: World, kube: client.ApiClient) -> None:
    session = world.start("tag-for-showback", "late")
    expires = datetime.fromisoformat(session["expires_at"])
    world.clock.now = expires + timedelta(hours=3)  # nobody swept at the deadline: the service was down
    report = world.sweep()
    assert (session["id"], "terminate") in [(s, k) for s, k, _ in report.actions]
    assert world.session(session["id"])["state"] == "terminated"
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(kube).read_namespace(session["namespace"])
    assert gone.value.status == 404


def test_warning_before_expiry_then_extension_up_to_the_deadline(world: World) -> None:
    session = world.start("tag-for-showback", "extender")
    sid = session["id"]
    expires = datetime.fromisoformat(session["expires_at"])
    deadline = datetime.fromisoformat(session["deadline_at"])
    world.clock.now = expires - timedelta(minutes=5)
    world.sweep()
    world.sweep()
    kinds = [e["kind"] for e in world.client.get(f"/v1/sessions/{sid}/events", headers=HEADERS).json()]
    assert kinds.count("expiring") == 1
    r = world.client.post(f"/v1/sessions/{sid}/extend", json={"seconds": 100_000}, headers=HEADERS)
    assert r.status_code == 200
    assert datetime.fromisoformat(r.json()["expires_at"]) == deadline
    again = world.client.post(f"/v1/sessions/{sid}/extend", json={"seconds": 60}, headers=HEADERS)
    assert again.status_code == 409
    assert "deadline" in again.json()["detail"]


def test_off_hours_suspend_and_resume(tmp_path: Path, local_cluster: LocalCluster, kube: client.ApiClient) -> None:
    # idle-hunter works Mon-Fri 07:00-21:00 Europe/Berlin; a two-day limit lets the session live to the next morning.
    labs = _labs_with(tmp_path, "idle-hunter", {"time": {"limit": "2d", "max_extension": "0", "idle_timeout": None}})
    w = _world(tmp_path, local_cluster, labs)
    w.clock.now = datetime(2026, 11, 25, 19, 30, tzinfo=UTC)  # 20:30 in Berlin
    apps = client.AppsV1Api(kube)
    with w.client:
        try:
            session = w.start("idle-hunter", "night-owl")
            sid, ns = session["id"], session["namespace"]
            before = {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items}
            w.sweep()
            assert w.session(sid)["state"] == "ready"
            w.clock.now = datetime(2026, 11, 25, 20, 15, tzinfo=UTC)  # 21:15 in Berlin
            w.sweep()
            s = w.session(sid)
            assert (s["state"], s["suspend_reason"]) == ("suspended", "off-hours")
            assert all(d.spec.replicas == 0 for d in apps.list_namespaced_deployment(ns).items)
            w.clock.now = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)  # 07:30 in Berlin, Thursday
            w.sweep()
            assert w.session(sid)["state"] == "ready"
            assert {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items} == before
        finally:
            _stop_all(w)


def test_unknown_instance_type_prices_at_fallback_with_a_warning(world: World, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "mystery-0", "annotations": {"kwok.x-k8s.io/node": "fake"},
        "labels": {"node.kubernetes.io/instance-type": "x9.mystery", "topology.kubernetes.io/region": "us-east-1",
                   "kubernetes.io/hostname": "mystery-0", "type": "kwok"}},
        "spec": {"taints": [{"key": "labctl.dev/test", "value": "mystery", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                   "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}}
    core.create_node(node)
    try:
        session = world.start("tag-for-showback", "mystery")
        ns = session["namespace"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd"}, "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "mystery-0"},
            "tolerations": [{"key": "labctl.dev/test", "operator": "Exists"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {
                "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}
        core.create_namespaced_pod(ns, pod)
        eventually(lambda: core.read_namespaced_pod("odd", ns).status.phase == "Running", timeout=60)
        world.sweep()
        events = world.client.get(f"/v1/sessions/{session['id']}/events", headers=HEADERS).json()
        warnings = [e["detail"]["reason"] for e in events if e["kind"] == "pricing_warning"]
        assert any("x9.mystery" in w for w in warnings), warnings
        sweeper = world.app.state.parts.runtime.sweeper
        snap = sweeper.meter(session["id"], sweeper.prices())
        odd = snap.resource("Pod", "odd")
        # 1 vCPU and 1 GiB at OpenCost's fallback unit rates: never zero.
        assert odd is not None and odd.hourly_usd == pytest.approx(0.031611 + 0.004237, rel=0.01)
    finally:
        core.delete_node("mystery-0")


def test_cost_report_and_metrics_follow_the_ledger(world: World) -> None:
    session = world.start("tag-for-showback", "reporter")
    world.sweep()
    rate = world.session(session["id"])["cost"]["burn_rate_usd_per_hour"]
    world.clock.advance(minutes=30)
    world.sweep()
    by_lab = world.client.get("/v1/costs", params={"group_by": "lab"}, headers=HEADERS).json()
    row = next(r for r in by_lab if r["key"] == "tag-for-showback")
    assert row["spend_usd"] == pytest.approx(rate / 2, rel=0.02)
    assert row["live"] == 1
    assert 0 <= row["spot_share"] <= 1
    by_learner = world.client.get("/v1/costs", params={"group_by": "learner"}, headers=HEADERS).json()
    assert [r["key"] for r in by_learner] == ["reporter"]
    bad = world.client.get("/v1/costs", params={"group_by": "team"}, headers=HEADERS)
    assert bad.status_code == 422
    metrics = world.client.get("/metrics", headers=HEADERS).text  # per-session gauges: instructors only
    line = next(ln for ln in metrics.splitlines()
                if ln.startswith("labctl_session_accrued_usd{") and session["id"] in ln)
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(rate / 2, rel=0.02)


def test_submission_policy_errors_are_problem_documents(world: World) -> None:
    session = world.start("gpu-rightsizing", "submitter")  # 2 attempts
    sid = session["id"]
    first = world.client.post(f"/v1/sessions/{sid}/submissions", headers=HEADERS)
    assert first.status_code == 202, first.text
    graded = world.client.get(f"/v1/submissions/{first.json()['id']}", headers=HEADERS).json()
    assert graded["state"] == "graded"
    assert world.session(sid)["state"] == "ready"  # an attempt is left: writable again
    second = world.client.post(f"/v1/sessions/{sid}/submissions", headers=HEADERS)
    assert second.status_code == 202
    assert world.session(sid)["state"] == "graded"  # the last attempt: stays frozen
    third = world.client.post(f"/v1/sessions/{sid}/submissions", headers=HEADERS)
    assert third.status_code == 409
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["detail"] == "no attempts left: 2 of 2 used for lab gpu-rightsizing"
    world.clock.now = datetime.fromisoformat(session["deadline_at"]) + timedelta(minutes=1)
    world.sweep()  # expiry
    late = world.client.post(f"/v1/sessions/{sid}/submissions", headers=HEADERS)
    assert late.status_code == 409
    assert "submissions are closed" in late.json()["detail"]
    assert [s["attempt"] for s in world.client.get(f"/v1/sessions/{sid}/submissions", headers=HEADERS).json()] \
        == [1, 2]
