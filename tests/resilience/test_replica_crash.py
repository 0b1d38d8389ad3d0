"""A replica killed (SIGKILL) in the middle of 100 concurrent starts leaves nothing behind once a replica runs again:
after its first reconcile, every namespace carrying labctl's session label belongs to a live session row, every live
row has its namespace, and no session is left ``provisioning``. The real ``labctl serve``, the real control plane."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes.render import SESSION_LABEL
from tests.adversarial.budget_world import labs_with
from tests.support.server import Server, every_session
from tests.support.wait import eventually

pytestmark = [pytest.mark.resilience, pytest.mark.cluster]

LAB = "tag-for-showback"
STARTS = 100
LIVE = {"provisioning", "ready", "suspended", "submitted", "graded", "terminating"}


@pytest.fixture
def replica(local_cluster: LocalCluster, tmp_path: Path) -> Iterator[Server]:
    """``labctl serve`` on a lab without starters (the namespaces are what this test counts; 100 starters' pods would
    only fill the simulated fleet), sweeping every 2 s so the restarted replica reconciles at once."""
    labs = labs_with(tmp_path, LAB, {"starter": []})
    srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_LABS_DIR": str(labs), "LABCTL_SWEEP_INTERVAL_S": "2",
                            "LABCTL_SIMULATE_DEMAND": "false"}).start()
    try:
        yield srv
    finally:
        srv.close(timeout_s=400)


def _labctl_namespaces(core: client.CoreV1Api) -> dict[str, str]:
    """Namespace name -> the session its label names, for every namespace labctl made (Terminating ones left out)."""
    items = core.list_namespace(label_selector=SESSION_LABEL).items
    return {ns.metadata.name: ns.metadata.labels[SESSION_LABEL] for ns in items if ns.status.phase != "Terminating"}


def test_a_replica_killed_during_100_starts_leaves_no_orphan_and_none_provisioning(
        replica: Server, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    before = set(_labctl_namespaces(core))
    answers: list[int | str] = []
    lock = threading.Lock()

    def start(i: int) -> None:
        try:
            with replica.client() as c:
                r = c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": f"crash-{i:03d}"}, timeout=60)
            outcome: int | str = r.status_code
        except httpx.TransportError as exc:  # the replica died under this request
            outcome = type(exc).__name__
        with lock:
            answers.append(outcome)

    with ThreadPoolExecutor(max_workers=STARTS) as pool:
        for i in range(STARTS):
            pool.submit(start, i)
        # Kill once some starts have finished and others are still provisioning.
        eventually(lambda: sum(1 for a in answers if a == 201) >= 10, timeout=120, interval=0.05)
        replica.kill()
    finished = sum(1 for a in answers if a == 201)
    assert 10 <= finished < STARTS, answers  # the kill fell in the middle of the starts
    assert all(a in (201, 503) or isinstance(a, str) for a in answers), answers

    replica.start()  # the same store and cluster; its first sweep reconciles what the killed one left

    def reconciled() -> list[dict[str, object]] | None:
        with replica.client() as c:
            rows = [s for s in every_session(c) if str(s["learner_id"]).startswith("crash-")]
        stuck = [s["id"] for s in rows if s["state"] == "provisioning"]
        assert not stuck, f"{len(stuck)} still provisioning"
        return rows

    rows = eventually(reconciled, timeout=240, interval=2)
    assert len(rows) > finished  # rows of starts the kill cut short were there to reconcile
    live = {str(s["id"]): str(s["namespace"]) for s in rows if s["state"] in LIVE - {"terminating"}}

    def agree() -> bool:
        owned = {name: sid for name, sid in _labctl_namespaces(core).items() if name not in before}
        orphans = {name: sid for name, sid in owned.items() if sid not in live}
        missing = {sid: ns for sid, ns in live.items() if ns not in owned}
        assert not orphans, f"namespaces without a live session: {orphans}"
        assert not missing, f"live sessions without their namespace: {missing}"
        return True

    eventually(agree, timeout=240, interval=2)  # stray namespaces of failed starts are being removed
    states = sorted({str(s["state"]) for s in rows})
    print(f"{finished} starts answered before the kill; after the restart: {len(rows)} rows, states {states}, "
          f"{len(live)} live with their namespaces")
    log = (replica.data_dir / "serve.log").read_text()
    assert "unhandled error" not in log
