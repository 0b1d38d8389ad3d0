"""Resource metrics end to end: usage labctl writes -> kwok -> metrics-server -> ``kubectl top`` and the real HPA.

Every figure is written with :func:`labctl.providers.kubernetes.usage.apply_usage` (labctl's identity) and read back
by the learner with the real kubectl, by the inventory, and by kube-controller-manager's HPA controller.
metrics-server scrapes every 10 s and needs two scrapes for a CPU rate, so reads wait (bounded) for a figure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import inventory
from labctl.providers.kubernetes.usage import (
    GROUP,
    NAMESPACE_LABEL,
    PLURAL,
    VERSION,
    ContainerUsage,
    apply_usage,
    clear_usage,
)
from labctl.settings import Settings
from tests.support.metrics_sandbox import LearnerSandbox, deployment, learner_sandbox
from tests.support.wait import eventually

MiB = 2**20


@pytest.fixture
def sandbox(local_cluster: LocalCluster, settings: Settings, tmp_path: Path) -> Iterator[LearnerSandbox]:
    with learner_sandbox(local_cluster, settings, tmp_path) as box:
        yield box


def _running_pods(kube: client.ApiClient, namespace: str, app: str) -> list[str]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return sorted(p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp)


def _top_pods(box: LearnerSandbox) -> dict[str, tuple[int, int]]:
    """``kubectl top pods`` as the learner: pod -> (millicores, MiB); empty while metrics are not there yet."""
    proc = box.run("top", "pods", "--no-headers")
    if proc.returncode != 0:
        assert "metrics not available yet" in proc.stderr, proc.stderr
        return {}
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    return {name: (int(cpu.removesuffix("m")), int(mem.removesuffix("Mi"))) for name, cpu, mem in rows}


def test_kubectl_top_as_the_learner_shows_the_usage_written(kube: client.ApiClient, sandbox: LearnerSandbox) -> None:
    created = sandbox.run("apply", "-f", "-", stdin=deployment("web", replicas=2))
    assert created.returncode == 0, created.stderr
    pods = eventually(lambda: (p := _running_pods(kube, sandbox.namespace, "web")) and len(p) == 2 and p, timeout=60)
    figures = {pods[0]: (250, 128), pods[1]: (400, 192)}  # millicores, MiB
    applied = apply_usage(kube, namespace=sandbox.namespace, usage={
        pod: {"app": ContainerUsage(cpu_cores=m / 1000, memory_bytes=mib * MiB)} for pod, (m, mib) in figures.items()})
    assert applied.written == 2

    def shown() -> dict[str, tuple[int, int]] | None:
        top = _top_pods(sandbox)
        return top if set(top) == set(figures) else None

    top = eventually(shown, timeout=90, interval=2)
    for pod, (millicores, mib) in figures.items():
        cpu, mem = top[pod]
        assert abs(cpu - millicores) <= max(5, millicores * 0.05), (pod, top[pod], figures[pod])
        assert mem == mib, (pod, top[pod], figures[pod])

    # Node figures too, through the learner's node-reader binding: a node uses at least what our pods on it use
    # (other tests' pods may share it).
    expected: dict[str, int] = {}
    for pod in client.CoreV1Api(kube).list_namespaced_pod(sandbox.namespace).items:
        expected[pod.spec.node_name] = expected.get(pod.spec.node_name, 0) + figures[pod.metadata.name][0]

    def node_cpu() -> dict[str, int] | None:
        proc = sandbox.run("top", "nodes", "--no-headers")
        assert proc.returncode == 0, proc.stderr
        rows = {row[0]: row[1] for row in (line.split() for line in proc.stdout.splitlines())}
        known = {n: int(rows[n].removesuffix("m")) for n in expected if rows.get(n, "").endswith("m")}
        return known if set(known) == set(expected) else None

    shown_nodes = eventually(node_cpu, timeout=60, interval=2)
    for node, millicores in expected.items():
        assert shown_nodes[node] >= millicores * 0.95, (node, shown_nodes[node], millicores)


def test_inventory_reads_usage_from_metrics_k8s_io(kube: client.ApiClient, sandbox: LearnerSandbox) -> None:
    created = sandbox.run("apply", "-f", "-", stdin=deployment("api"))
    assert created.returncode == 0, created.stderr
    (pod,) = eventually(lambda: _running_pods(kube, sandbox.namespace, "api"), timeout=60)
    apply_usage(kube, namespace=sandbox.namespace,
                usage={pod: {"app": ContainerUsage(cpu_cores=0.3, memory_bytes=200 * MiB)}})

    inv = eventually(lambda: (i := inventory.collect(kube, sandbox.namespace)).usage.get(pod) and i, timeout=90,
                     interval=2)
    assert inv.usage_source == "metrics"
    figures = inv.usage[pod]["app"]
    assert abs(_cores(figures["cpu"]) - 0.3) <= 0.015, figures
    assert _bytes(figures["memory"]) == 200 * MiB, figures

    assert clear_usage(kube, namespace=sandbox.namespace) == 1
    assert clear_usage(kube, namespace=sandbox.namespace) == 0


def _hpa(name: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource",
                         "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            # No stabilisation: the test's clock is compressed (the controller-manager syncs every 5 s).
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}]},
                "scaleDown": {"stabilizationWindowSeconds": 0,
                              "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}]},
            },
        }})


def test_the_hpa_scales_on_the_usage_written(kube: client.ApiClient, sandbox: LearnerSandbox) -> None:
    ns = sandbox.namespace
    for doc in (deployment("worker", cpu="500m", memory="128Mi"), _hpa("worker")):
        created = sandbox.run("apply", "-f", "-", stdin=doc)
        assert created.returncode == 0, created.stderr
    apps = client.AppsV1Api(kube)

    def feed(cores_per_pod: float) -> list[str]:
        """What the demand simulator does every sweep: a figure for every running pod of the workload."""
        pods = _running_pods(kube, ns, "worker")
        apply_usage(kube, namespace=ns, usage={
            p: {"app": ContainerUsage(cpu_cores=cores_per_pod, memory_bytes=64 * MiB)} for p in pods})
        return pods

    def replicas() -> int:
        return int(apps.read_namespaced_deployment("worker", ns).spec.replicas)

    # 90 % of the 500m request on every pod, against a 50 % target: 1 -> 2 -> 4 (the maximum).
    eventually(lambda: feed(0.45) and replicas() == 4, timeout=180, interval=2)
    hpa = json.loads(sandbox.run("get", "hpa", "worker", "-o", "json").stdout)
    assert hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] >= 50

    # 10 % on every pod: back down to the minimum, at once (no stabilisation window).
    eventually(lambda: feed(0.05) and replicas() == 1, timeout=180, interval=2)


def _cores(quantity: str) -> float:
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    return float(quantity[:-1]) * units[quantity[-1]] if quantity[-1] in units else float(quantity)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def test_usage_goes_with_its_namespace(kube: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    name = "t-usage-gc"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"labctl.dev/test": "1"})))
    figures = {"app": ContainerUsage(cpu_cores=0.1, memory_bytes=MiB)}
    assert apply_usage(kube, namespace=name, usage={"a": figures, "b": figures}).written == 2

    def listed() -> list[str]:
        found = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=f"{NAMESPACE_LABEL}={name}")
        return [item["metadata"]["name"] for item in found["items"]]

    assert len(listed()) == 2
    core.delete_namespace(name)
    eventually(lambda: not listed(), timeout=60)  # the garbage collector follows the Namespace owner
    # Writing usage for a namespace that is gone writes nothing.
    eventually(lambda: apply_usage(kube, namespace=name, usage={"a": figures}).written == 0 and not listed(),
               timeout=60)
