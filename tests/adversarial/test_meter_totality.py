"""Every object the apiserver accepts is metered: the learner (its kubeconfig, the real kubectl) and, where only an
administrator can, the admin client write odd but valid objects, and the product's sweep still prices the session.

Before the producer was made total, any one of these made the snapshot model reject the whole inventory, so metering
of the session failed on every sweep: a claim of ``1500m`` bytes, a node taint without a value, odd quantity
spellings. Editing labels and annotations (kwok's usage annotations and the labs' ``labctl.dev/expected-*`` hints
included) must change no cost figure: nothing the learner writes is a measurement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from labctl.grading import receipt
from labctl.grading.runner import grade
from labctl.grading.snapshot import Snapshot, dump_snapshot, load_snapshot
from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT
from tests.adversarial.metering import Sandbox, learner_sandbox, pod, resource, resources
from tests.support.wait import eventually

pytestmark = pytest.mark.cluster
UNICODE = "Ünïcødé ✓ 数据 — ok"


@pytest.fixture
def idle_hunter(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[Sandbox]:
    """An idle-hunter session (its quota allows two claims, 10Gi in all)."""
    with learner_sandbox(tmp_path, local_cluster, "idle-hunter", "odd-one") as box:
        yield box


def _settled(box: Sandbox) -> bool:
    pods = box.kubectl("get", "pods", "-o", "jsonpath={range .items[*]}{.status.phase} {.metadata.deletionTimestamp}"
                                              "{\"\\n\"}{end}").stdout.splitlines()
    return bool(pods) and all(line.strip() in ("Running", "Succeeded") for line in pods)


def _claim(name: str, size: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def test_odd_objects_the_apiserver_accepts_are_metered(idle_hunter: Sandbox) -> None:
    box = idle_hunter
    gone = box.kubectl("delete", "pvc", "scratch-data", "--wait=true")
    assert gone.returncode == 0, gone.stderr
    long_key = "a" * 63
    odd_pod = pod("odd-pod", containers=[{"name": "app", "resources": {
        "requests": {"cpu": "1e-2", "memory": "17e6"}, "limits": {"cpu": "0.5", "memory": "0.5Gi"}}}])
    odd_pod["metadata"] |= {
        "labels": {f"{'x' * 50}.example.com/{long_key}": "v" * 63, "empty": ""},
        "annotations": {"note": UNICODE, "blob": "z" * 100_000, "kwok.x-k8s.io/usage-cpu": "not a quantity"}}
    bare_deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "defaults-only"}, "spec": {
        "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["defaults-only"]}]},
        "template": {"metadata": {"labels": {"app": "defaults-only"}},
                     "spec": pod("x", containers=[{"name": "app"}])["spec"]}}}  # LimitRange fills the requests
    headless = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "no-selector"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "half"},
           "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "defaults-only"}}}}
    suspended = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "later"}, "spec": {
        "suspend": True, "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [
            {"type": "DisruptionTarget"}]}]},
        "template": {"spec": {**pod("x", containers=[{"name": "w", "resources": resources("100m")}])["spec"],
                              "restartPolicy": "Never"}}}}
    box.apply(_claim("milli-bytes", "1500m"), _claim("half-gib", "0.5Gi"), odd_pod, bare_deployment, headless, pdb,
              suspended)
    eventually(lambda: _settled(box), timeout=90)

    assert box.sweep_errors() == []
    snap = box.meter()
    assert resource(snap, "PersistentVolumeClaim", "milli-bytes").storage == 2  # 1.5 bytes, rounded up
    assert resource(snap, "PersistentVolumeClaim", "half-gib").storage == 2**29
    odd = resource(snap, "Pod", "odd-pod")
    assert odd.containers[0].requests == {"cpu": 0.01, "memory": 17e6}
    assert odd.containers[0].usage is None  # an annotation is not a measurement
    assert odd.annotations["note"] == UNICODE and odd.labels["empty"] == ""
    assert resource(snap, "PodDisruptionBudget", "half").min_available == "50%"
    assert resource(snap, "Job", "later").suspend is True
    assert all(p.hourly_usd for p in snap.of_kind("Pod") if p.phase == "Running")
    assert box.cost()["burn_rate_usd_per_hour"] == pytest.approx(snap.cost.burn_rate_usd_per_hour, abs=1e-6)
    assert load_snapshot(dump_snapshot(snap)) == snap
    # and the graders read it: no grader errors on it
    rt = box.app.state.parts.runtime
    graded = grade(rt.catalog["idle-hunter"], snap, rt.settings.graders_dir, REPO_ROOT)
    assert [c.feedback for c in graded.checks if c.status == "error"] == []


def test_a_node_taint_without_a_value_is_metered(idle_hunter: Sandbox, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "valueless-0", "annotations": {"kwok.x-k8s.io/node": "fake"},
        "labels": {"node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/region": "us-east-1",
                   "karpenter.sh/capacity-type": "on-demand", "kubernetes.io/hostname": "valueless-0",
                   "type": "kwok"}},
        "spec": {"taints": [{"key": "labctl.dev/dedicated", "effect": "NoSchedule"}]},  # no value: valid
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                   "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}}
    core.create_node(node)
    try:
        placed = pod("on-valueless", containers=[{"name": "app", "resources": resources("250m")}],
                     nodeSelector={"kubernetes.io/hostname": "valueless-0"},
                     tolerations=[{"key": "labctl.dev/dedicated", "operator": "Exists", "effect": "NoSchedule"}])
        idle_hunter.apply(placed)
        eventually(lambda: idle_hunter.kubectl("get", "pod", "on-valueless", "-o",
                                               "jsonpath={.status.phase}").stdout == "Running", timeout=60)
        assert idle_hunter.sweep_errors() == []
        snap = idle_hunter.meter()
        taken = snap.node("valueless-0")
        assert taken is not None and [(t.key, t.value) for t in taken.taints] == [("labctl.dev/dedicated", "")]
        assert resource(snap, "Pod", "on-valueless").hourly_usd
    finally:
        core.delete_node("valueless-0")


def _figures(snap: Snapshot) -> tuple[float, Counter[tuple[str, float | None]], float]:
    """Every cost figure of a snapshot, pods by their price (a rollout renames them), other resources by name."""
    priced = Counter((r.kind if r.kind == "Pod" else r.ref, r.hourly_usd) for r in snap.resources
                     if r.hourly_usd is not None and (r.kind != "Pod" or r.phase == "Running"))
    return snap.cost.burn_rate_usd_per_hour, priced, receipt.receipt(snap).idle_waste_usd


def test_editing_every_label_and_annotation_changes_no_cost_figure(idle_hunter: Sandbox) -> None:
    box = idle_hunter
    eventually(lambda: _settled(box), timeout=90)
    before = box.meter()
    # Whatever measures use (metrics.k8s.io, the simulator, or nothing), annotations written below must change none of
    # the figures: the cost figures after equal those before.
    loud = ["kwok.x-k8s.io/usage-cpu=64", "kwok.x-k8s.io/usage-memory=256Gi", "labctl.dev/expected-cpu-millicores=1",
            "labctl.dev/expected-memory-mib=1", "labctl.dev/expected-gpu-engine-active=0", f"note={UNICODE}"]
    for verb, pairs in (("annotate", loud), ("label", ["team=nobody", "cost-center=free", "env=none"])):
        for kind in ("pods", "deployments", "pvc", "services"):
            proc = box.kubectl(verb, kind, "--all", "--overwrite", *pairs)
            assert proc.returncode == 0, proc.stderr
    # Pod templates too: a rollout to pods that carry the annotations from birth.
    for name in ("legacy-dashboard", "orders-worker"):
        patch = box.kubectl("patch", "deployment", name, "--type=merge", "-p",
                            '{"spec":{"template":{"metadata":{"annotations":{"kwok.x-k8s.io/usage-cpu":"64",'
                            '"labctl.dev/expected-cpu-millicores":"1"}}}}}')
        assert patch.returncode == 0, patch.stderr
        rolled = box.kubectl("rollout", "status", f"deployment/{name}", "--timeout=90s")
        assert rolled.returncode == 0, rolled.stderr
    eventually(lambda: _settled(box), timeout=90)
    after = box.meter()
    assert all(c.usage is None for p in after.of_kind("Pod") for c in p.containers)
    assert _figures(after) == _figures(before)
