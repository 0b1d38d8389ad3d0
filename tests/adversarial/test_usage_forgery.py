"""The learner tries to forge resource usage; every figure must stay what labctl wrote.

Played with the real kubectl and the kubeconfig labctl issues, against the real control plane. kwok takes usage from
its ``ResourceUsage`` (namespaced, checked first), ``ClusterResourceUsage`` and ``Metric`` objects, behaves as its
``Stage`` objects say, and its stock rule reads ``kwok.x-k8s.io/usage-*`` pod annotations, which the learner writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes.usage import GROUP, PLURAL, VERSION, ContainerUsage, apply_usage, object_name
from labctl.settings import Settings
from tests.support.metrics_sandbox import LearnerSandbox, deployment, learner_sandbox
from tests.support.wait import eventually

MiB = 2**20
FORGED = {"kwok.x-k8s.io/usage-cpu": "3", "kwok.x-k8s.io/usage-memory": "8Gi"}
KWOK_KINDS = {  # resource -> (kind, namespaced)
    "resourceusages": ("ResourceUsage", True),
    "clusterresourceusages": ("ClusterResourceUsage", False),
    "metrics": ("Metric", False),
    "stages": ("Stage", False),
}


@pytest.fixture(scope="module")
def sandbox(local_cluster: LocalCluster, settings: Settings,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerSandbox]:
    with learner_sandbox(local_cluster, settings, tmp_path_factory.mktemp("forgery")) as box:
        yield box


@pytest.fixture(scope="module")
def forged_pods(kube: client.ApiClient, sandbox: LearnerSandbox) -> dict[str, str]:
    """Two annotated workloads: ``forger`` gets labctl's usage (100m, 64Mi), ``ghost`` gets none."""
    for name in ("forger", "ghost"):
        created = sandbox.run("apply", "-f", "-", stdin=deployment(name, annotations=FORGED))
        assert created.returncode == 0, created.stderr

    def running() -> dict[str, str] | None:
        pods = client.CoreV1Api(kube).list_namespaced_pod(sandbox.namespace).items
        found = {p.metadata.labels["app"]: p.metadata.name for p in pods if p.status.phase == "Running"}
        return found if set(found) == {"forger", "ghost"} else None

    pods: dict[str, str] = eventually(running, timeout=60)
    apply_usage(kube, namespace=sandbox.namespace,
                usage={pods["forger"]: {"app": ContainerUsage(cpu_cores=0.1, memory_bytes=64 * MiB)}})
    return pods


def _object(resource: str, namespace: str) -> str:
    kind, namespaced = KWOK_KINDS[resource]
    meta: dict[str, str] = {"name": "learner-made"}
    if namespaced:
        meta["namespace"] = namespace
    spec = {"usages": [{"usage": {"cpu": {"value": "3"}}}]} if "usage" in resource else {}
    return yaml.safe_dump({"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec})


@pytest.mark.parametrize("resource", sorted(KWOK_KINDS))
def test_learner_may_not_write_any_kwok_object(sandbox: LearnerSandbox, resource: str) -> None:
    for verb in ("create", "update", "patch", "delete", "deletecollection"):
        answer = sandbox.run("auth", "can-i", verb, f"{resource}.{GROUP}")
        assert answer.stdout.strip() == "no", (verb, resource, answer.stdout, answer.stderr)
    made = sandbox.run("create", "-f", "-", stdin=_object(resource, sandbox.namespace))
    assert made.returncode != 0
    # Forbidden where the kind is served; a Stage is not even served (kwok reads stages from its config file).
    assert "forbidden" in made.stderr.lower() or 'no matches for kind "Stage"' in made.stderr, made.stderr


def test_learner_may_not_change_or_remove_labctl_usage(kube: client.ApiClient, sandbox: LearnerSandbox,
                                                       forged_pods: dict[str, str]) -> None:
    name = object_name(sandbox.namespace, forged_pods["forger"])
    custom = client.CustomObjectsApi(kube)
    before = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    bigger = json.dumps({"spec": {"usages": [{"usage": {"cpu": {"value": "3"}}}]}})
    patched = sandbox.run("patch", "clusterresourceusage", name, "--type=merge", "-p", bigger)
    assert patched.returncode != 0 and "forbidden" in patched.stderr.lower(), patched.stderr
    deleted = sandbox.run("delete", "clusterresourceusage", name)
    assert deleted.returncode != 0 and "forbidden" in deleted.stderr.lower(), deleted.stderr
    listed = sandbox.run("get", "clusterresourceusages")
    assert listed.returncode != 0 and "forbidden" in listed.stderr.lower(), listed.stderr
    assert custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)["spec"] == before["spec"]


def _top(sandbox: LearnerSandbox) -> dict[str, tuple[str, str]]:
    proc = sandbox.run("top", "pods", "--no-headers")
    if proc.returncode != 0:
        assert "metrics not available yet" in proc.stderr, proc.stderr
        return {}
    return {row[0]: (row[1], row[2]) for row in (line.split() for line in proc.stdout.splitlines() if line)}


def test_pod_annotations_do_not_change_reported_usage(sandbox: LearnerSandbox, forged_pods: dict[str, str]) -> None:
    top = eventually(lambda: (t := _top(sandbox)) and forged_pods["forger"] in t and t, timeout=90, interval=2)
    cpu, memory = top[forged_pods["forger"]]
    assert abs(int(cpu.removesuffix("m")) - 100) <= 5, top  # labctl's 100m, not the annotated 3 cores
    assert memory == "64Mi", top  # not the annotated 8Gi
    # Both pods started together and metrics-server has scraped since: the annotations alone gave ghost nothing.
    assert forged_pods["ghost"] not in top, top


def test_up_removes_usage_rules_labctl_did_not_write(local_cluster: LocalCluster, sandbox: LearnerSandbox,
                                                     forged_pods: dict[str, str]) -> None:
    # kwok's stock rule, as an admin (or an older kwokctl) might install it: usage read from pod annotations.
    stock = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterResourceUsage",
             "metadata": {"name": "usage-from-annotation"},
             "spec": {"usages": [{"usage": {
                 "cpu": {"expression": '"kwok.x-k8s.io/usage-cpu" in pod.metadata.annotations ? '
                                       'Quantity(pod.metadata.annotations["kwok.x-k8s.io/usage-cpu"]) : '
                                       'Quantity("1m")'},
                 "memory": {"expression": '"kwok.x-k8s.io/usage-memory" in pod.metadata.annotations ? '
                                          'Quantity(pod.metadata.annotations["kwok.x-k8s.io/usage-memory"]) : '
                                          'Quantity("1Mi")'}}}]}}
    local_cluster.kubectl(["create", "-f", "-"], stdin=yaml.safe_dump(stock))
    try:
        # The threat is real: with the rule in place the learner's annotation is what `kubectl top` reports.
        ghost = forged_pods["ghost"]
        forged = eventually(lambda: _top(sandbox).get(ghost), timeout=90, interval=2)
        assert abs(int(forged[0].removesuffix("m")) - 3000) <= 150 and forged[1] == "8192Mi", forged
    finally:
        local_cluster.up()
    remaining = local_cluster.kubectl(["get", "clusterresourceusages,resourceusages", "-A", "-o", "name"]).stdout
    assert "usage-from-annotation" not in remaining
    assert all(line.startswith("clusterresourceusage.kwok.x-k8s.io/usage.") for line in remaining.split()), remaining
    eventually(lambda: ghost not in _top(sandbox), timeout=90, interval=2)
