"""Proof that the control plane is real: quota and LimitRange admission, RBAC, scheduling, namespace finalization."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from labctl.localcluster.cluster import LocalCluster
from tests.support.wait import eventually


def _pod(name: str, cpu: str | None = None, **spec: Any) -> client.V1Pod:
    resources = client.V1ResourceRequirements(requests={"cpu": cpu}, limits={"cpu": cpu}) if cpu else None
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox", resources=resources)],
                              **spec),
    )


def test_resource_quota_rejects_an_over_quota_pod(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="q"), spec=client.V1ResourceQuotaSpec(hard={"requests.cpu": "1",
                                                                                     "limits.cpu": "1"})))
    # The controller-manager computes the quota's status; until then admission answers "status unknown".
    eventually(lambda: core.read_namespaced_resource_quota("q", namespace).status.hard)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, _pod("big", cpu="2"))
    assert err.value.status == 403
    assert "exceeded quota" in err.value.body
    core.create_namespaced_pod(namespace, _pod("small", cpu="500m"))  # within quota: admitted


def test_limit_range_defaults_requests(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_limit_range(namespace, client.V1LimitRange(
        metadata=client.V1ObjectMeta(name="lr"),
        spec=client.V1LimitRangeSpec(limits=[client.V1LimitRangeItem(
            type="Container", default_request={"cpu": "125m", "memory": "64Mi"},
            default={"cpu": "250m", "memory": "128Mi"})])))
    created = core.create_namespaced_pod(namespace, _pod("plain"))
    assert created.spec.containers[0].resources.requests == {"cpu": "125m", "memory": "64Mi"}
    assert created.spec.containers[0].resources.limits == {"cpu": "250m", "memory": "128Mi"}


def test_rbac_forbids_a_non_admin_user(local_cluster: LocalCluster, namespace: str, tmp_path: Path,
                                       kubectl) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "learner.yaml"
    proc = subprocess.run([str(local_cluster.tools.kwokctl), "get", "kubeconfig", "--name", local_cluster.name,
                           "--user", "learner-ada", "--group", "learners"], env=local_cluster.env(),
                          capture_output=True, text=True, check=True, timeout=60)
    cfg.write_text(proc.stdout)
    denied = kubectl("get", "pods", "-n", namespace, kubeconfig=cfg)
    assert denied.returncode != 0
    assert 'User "learner-ada" cannot list resource "pods"' in denied.stderr
    assert kubectl("auth", "can-i", "create", "namespaces", kubeconfig=cfg).stdout.strip() == "no"
    # The same user is allowed once a RoleBinding says so: authorization is real, not a blanket deny.
    kubectl("create", "rolebinding", "view", "--clusterrole=view", "--user=learner-ada", "-n", namespace,
            check=True)
    eventually(lambda: kubectl("get", "pods", "-n", namespace, kubeconfig=cfg).returncode == 0, timeout=30)


def test_deployment_is_scheduled_onto_spot_nodes_and_runs(kube: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    labels = {"app": "batch"}
    apps.create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="batch"),
        spec=client.V1DeploymentSpec(
            replicas=3, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    node_selector={"karpenter.sh/capacity-type": "spot"},
                    tolerations=[client.V1Toleration(key="cloud.google.com/gke-spot", operator="Equal",
                                                     value="true", effect="NoSchedule")],
                    containers=[client.V1Container(name="c", image="busybox", resources=client.V1ResourceRequirements(
                        requests={"cpu": "500m", "memory": "256Mi"}))])))))

    def running() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=batch").items
        ok = len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
        return pods if ok else []

    pods = eventually(running, timeout=90)
    for pod in pods:
        node = core.read_node(pod.spec.node_name)
        assert node.metadata.labels["karpenter.sh/capacity-type"] == "spot"
        assert node.metadata.labels["eks.amazonaws.com/capacityType"] == "SPOT"
        assert "nvidia.com/gpu.product" not in node.metadata.labels  # the CPU spot pool, not the MIG node


def test_untolerated_pod_stays_off_tainted_spot_nodes(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(namespace, _pod("no-toleration", node_selector={"karpenter.sh/capacity-type": "spot"}))

    def unschedulable() -> bool:
        pod = core.read_namespaced_pod("no-toleration", namespace)
        conds = {c.type: c for c in (pod.status.conditions or [])}
        return "PodScheduled" in conds and conds["PodScheduled"].reason == "Unschedulable"

    eventually(unschedulable, timeout=60)


def test_mig_slice_request_lands_on_the_mig_node(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    pod = _pod("infer", tolerations=[client.V1Toleration(operator="Exists")])
    pod.spec.containers[0].resources = client.V1ResourceRequirements(limits={"nvidia.com/mig-1g.10gb": "1"})
    core.create_namespaced_pod(namespace, pod)
    placed = eventually(lambda: core.read_namespaced_pod("infer", namespace).spec.node_name, timeout=60)
    labels = core.read_node(placed).metadata.labels
    assert labels["nvidia.com/mig.strategy"] == "mixed"
    assert labels["karpenter.sh/capacity-type"] == "spot"


def test_job_pods_complete(kube: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(kube)
    batch.create_namespaced_job(namespace, client.V1Job(
        metadata=client.V1ObjectMeta(name="once"),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="busybox")])))))
    eventually(lambda: (batch.read_namespaced_job_status("once", namespace).status.succeeded or 0) >= 1, timeout=90)


def test_namespace_deletion_completes(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    name = f"t-del-{int(time.time() * 1000) % 10**8}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"), data={"a": "b"}))
    core.delete_namespace(name)
    assert core.read_namespace(name).status.phase == "Terminating"

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, timeout=90)
