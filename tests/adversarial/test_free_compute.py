"""Nothing runs for free: the learner, with the kubeconfig labctl issued and the real kubectl, tries to hold node
capacity the meter does not bill, and the product's sweeper prices what the scheduler really holds.

Each pod's expected price is worked out here from the price sheet: its effective requests (as the scheduler computes
them: the larger of the init steps and the steady state of app containers plus sidecars; pod-level requests when set)
times the unit rates of the node it landed on (OpenCost's split of the m5.xlarge price).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from kubernetes import client

from labctl.cost import model
from labctl.cost.prices import GIB, load_sheet
from labctl.grading.snapshot import Snapshot
from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT
from tests.adversarial.metering import Sandbox, learner_sandbox, pod, resource, resources
from tests.support.wait import eventually

pytestmark = pytest.mark.cluster
MI = 2**20
SHEET = load_sheet(REPO_ROOT / "labs" / "prices.yaml")


@pytest.fixture
def sandbox(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[Sandbox]:
    """A move-batch-to-spot session (6 cores of quota) whose starter the learner has deleted: a clean slate."""
    with learner_sandbox(tmp_path, local_cluster, "move-batch-to-spot", "free-rider") as box:
        gone = box.kubectl("delete", "deployments,jobs,cronjobs", "--all", "--wait=true", "--timeout=60s")
        assert gone.returncode == 0, gone.stderr
        eventually(lambda: not box.kubectl("get", "pods", "-o", "name").stdout.strip(), timeout=60)
        yield box


def _running(box: Sandbox, *names: str) -> None:
    def ready() -> bool:
        return all(box.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout == "Running"
                   for name in names)
    eventually(ready, timeout=90)


def expected_hourly(snap: Snapshot, pod_name: str, *, cpu: float, memory: int) -> float:
    """``cpu`` cores and ``memory`` bytes at the unit rates of the node the pod landed on."""
    node = snap.node(resource(snap, "Pod", pod_name).node)
    assert node is not None and node.instance_type == "m5.xlarge", node
    rates = model.unit_rates(SHEET.node_price("aws", node.region, node.instance_type, node.capacity_type))
    return float(Decimal(str(cpu)) * rates.cpu_core_hourly_usd
                 + Decimal(memory) / GIB * rates.memory_gib_hourly_usd)


def test_init_containers_and_sidecars_are_billed_at_the_effective_requests(sandbox: Sandbox) -> None:
    # Steady state 100m + 500m (the sidecar keeps running); while the 2-core init container runs the sidecar runs
    # beside it: the scheduler holds max(0.6, 2.5) = 2.5 cores, and 128Mi of memory (64Mi + 64Mi either way).
    sidecar = pod("with-sidecar", containers=[{"name": "app", "resources": resources("100m")}],
                  init=[{"name": "proxy", "restartPolicy": "Always", "resources": resources("500m")},
                        {"name": "migrate", "resources": resources("2")}])
    # A plain init container that needs more than the app: the node holds its 1.5 cores for the pod's whole life.
    heavy_init = pod("heavy-init", containers=[{"name": "app", "resources": resources("100m")}],
                     init=[{"name": "warm-cache", "resources": resources("1500m", "1Gi")}])
    sandbox.apply(sidecar, heavy_init)
    _running(sandbox, "with-sidecar", "heavy-init")
    snap = sandbox.meter()
    with_sidecar = resource(snap, "Pod", "with-sidecar")
    assert with_sidecar.hourly_usd == pytest.approx(expected_hourly(snap, "with-sidecar", cpu=2.5, memory=128 * MI))
    heavy = resource(snap, "Pod", "heavy-init")
    assert heavy.hourly_usd == pytest.approx(expected_hourly(snap, "heavy-init", cpu=1.5, memory=2**30))
    # Priced by the app containers alone (the old meter) they would have cost a fraction of that.
    assert heavy.hourly_usd > 10 * expected_hourly(snap, "heavy-init", cpu=0.1, memory=64 * MI)
    assert snap.cost.burn_rate_usd_per_hour == pytest.approx(with_sidecar.hourly_usd + heavy.hourly_usd, abs=1e-6)
    assert sandbox.cost()["burn_rate_usd_per_hour"] == pytest.approx(snap.cost.burn_rate_usd_per_hour, abs=1e-6)


def test_pod_level_requests_are_billed(sandbox: Sandbox) -> None:
    # Pod-level resources: the scheduler holds 2 cores although the one container asks for 100m.
    body = pod("pod-level", containers=[{"name": "app", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
               resources={"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    sandbox.apply(body)
    _running(sandbox, "pod-level")
    snap = sandbox.meter()
    assert resource(snap, "Pod", "pod-level").hourly_usd == pytest.approx(
        expected_hourly(snap, "pod-level", cpu=2, memory=2**30))


def test_a_pod_pending_on_its_node_is_billed_and_finished_pods_are_not(sandbox: Sandbox,
                                                                       kube: client.ApiClient) -> None:
    held = pod("stuck-init", containers=[{"name": "app", "resources": resources("100m")}],
               init=[{"name": "never-done", "resources": resources("1", "1Gi")}])
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "done"}, "spec": {
        "backoffLimit": 0, "template": {"spec": {**pod("x", containers=[
            {"name": "work", "resources": resources("2", "1Gi")}])["spec"], "restartPolicy": "Never"}}}}
    sandbox.apply(held, job)
    _running(sandbox, "stuck-init")
    eventually(lambda: sandbox.kubectl("get", "job", "done", "-o", "jsonpath={.status.succeeded}").stdout == "1",
               timeout=90)
    # kwok finishes init containers at once; a real kubelet whose init container never ends reports this status
    # (the pod bound, Pending, its init container running). The learner cannot write pod status: the test does,
    # with the admin client, as the kubelet would.
    core = client.CoreV1Api(kube)
    core.patch_namespaced_pod_status("stuck-init", sandbox.namespace, {"status": {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"},
                       {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"},
                       {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
        "initContainerStatuses": [{"name": "never-done", "image": "registry.k8s.io/pause:3.10", "imageID": "",
                                   "ready": False, "restartCount": 0,
                                   "state": {"running": {"startedAt": "2026-11-25T09:00:00Z"}}}]}})
    eventually(lambda: core.read_namespaced_pod("stuck-init", sandbox.namespace).status.phase == "Pending",
               timeout=10)
    snap = sandbox.meter()
    stuck = resource(snap, "Pod", "stuck-init")
    assert (stuck.phase, bool(stuck.node)) == ("Pending", True)
    assert stuck.hourly_usd == pytest.approx(expected_hourly(snap, "stuck-init", cpu=1, memory=2**30))
    finished = [p for p in snap.of_kind("Pod") if p.controller is not None and p.controller.name == "done"]
    assert [p.phase for p in finished] == ["Succeeded"]
    assert finished[0].hourly_usd is None  # a finished pod holds nothing: not billed
    assert snap.cost.burn_rate_usd_per_hour == pytest.approx(stuck.hourly_usd, abs=1e-6)
