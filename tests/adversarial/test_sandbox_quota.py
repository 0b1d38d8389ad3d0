"""Count quotas and the LimitRange's bounds, played by the learner against the real apiserver.

Every Kubernetes lab's ResourceQuota carries the catalog's defaults for what the lab does not set (object counts,
node ports and load balancers, ephemeral storage, claims and storage); the LimitRange refuses containers below its
minimum (so ``requests.cpu: 0`` with big limits, which would run for free, is refused) and above its maximum (no
container bigger than the sandbox's quota), whoever makes the pod: the learner or a controller from a template.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client

from labctl.catalog.models import QUOTA_DEFAULTS
from labctl.localcluster.cluster import LocalCluster
from tests.support.sandbox import LearnerSandbox, deployment, lab_variant, learner_sandbox, pod, pod_spec, service
from tests.support.wait import eventually

SMALL_COUNTS = {"count/secrets": "2", "count/configmaps": "2", "services": "1", "count/deployments.apps": "1",
                "count/jobs.batch": "1"}


@pytest.fixture(scope="module")
def sandbox(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerSandbox]:
    """tag-for-showback's quota (3 CPU, 4 GiB) and defaults, with small object counts so they are quick to reach."""
    lab = lab_variant("tag-for-showback", quota=SMALL_COUNTS)
    with learner_sandbox(local_cluster, lab, tmp_path_factory.mktemp("quota")) as box:
        yield box


def exceeded(proc: subprocess.CompletedProcess[str], key: str) -> None:
    assert proc.returncode != 0, "admitted"
    assert "exceeded quota: sandbox" in proc.stderr and key in proc.stderr, proc.stderr


def test_the_quota_holds_the_lab_keys_and_the_defaults(sandbox: LearnerSandbox, kube: client.ApiClient) -> None:
    quota = client.CoreV1Api(kube).read_namespaced_resource_quota("sandbox", sandbox.namespace)
    hard = quota.status.hard
    assert set(QUOTA_DEFAULTS) | {"cpu", "memory", "pods"} <= set(hard)
    assert hard["count/secrets"] == "2" and hard["services.nodeports"] == "0" and hard["requests.storage"] == "0"
    assert hard["requests.ephemeral-storage"] == QUOTA_DEFAULTS["requests.ephemeral-storage"]


def _secret(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}}


def _configmap(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def _job(name: str) -> dict[str, object]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {**pod_spec(), "restartPolicy": "Never"}}}}


@pytest.mark.parametrize(("make", "allowed", "key"), [
    (_secret, 2, "count/secrets"),
    (_configmap, 1, "count/configmaps"),  # kube-root-ca.crt is the namespace's first
    (lambda name: service(name), 1, "services"),
    (lambda name: deployment(name), 1, "count/deployments.apps"),
    (_job, 1, "count/jobs.batch"),
], ids=["secrets", "configmaps", "services", "deployments", "jobs"])
def test_object_counts_stop_at_the_quota(sandbox: LearnerSandbox, make, allowed: int, key: str) -> None:  # type: ignore[no-untyped-def]
    prefix = key.split("/")[-1].split(".")[0][:8]
    for i in range(allowed):
        made = sandbox.create(make(f"{prefix}-{i}"))
        assert made.returncode == 0, made.stderr
    exceeded(sandbox.create(make(f"{prefix}-{allowed}")), key)


def test_claims_and_ephemeral_storage_are_bounded_by_default(sandbox: LearnerSandbox) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    exceeded(sandbox.create(claim), "persistentvolumeclaims")
    big_disk = {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "11Gi"},
                "limits": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "11Gi"}}
    exceeded(sandbox.create(pod("disk", resources=big_disk)), "requests.ephemeral-storage")
    wide_limit = {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
                  "limits": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "21Gi"}}
    exceeded(sandbox.create(pod("disk", resources=wide_limit)), "limits.ephemeral-storage")


@pytest.mark.parametrize(("resources", "message"), [
    ({"requests": {"cpu": "0", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
     "minimum cpu usage per Container is 10m, but request is 0"),
    ({"requests": {"cpu": "100m", "memory": "0"}, "limits": {"cpu": "1", "memory": "2Gi"}},
     "minimum memory usage per Container is 16Mi, but request is 0"),
    ({"requests": {"cpu": "5m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "64Mi"}},
     "minimum cpu usage per Container is 10m, but request is 5m"),
    ({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "4", "memory": "64Mi"}},
     "maximum cpu usage per Container is 3, but limit is 4"),
    ({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "5Gi"}},
     "maximum memory usage per Container is 4Gi, but limit is 5Gi"),
], ids=["zero-cpu-big-limit", "zero-memory", "below-min", "cpu-above-max", "memory-above-max"])
def test_the_limit_range_refuses_free_and_giant_containers(sandbox: LearnerSandbox, resources: dict[str, object],
                                                           message: str) -> None:
    proc = sandbox.create(pod("odd", resources=resources))
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_a_container_without_requests_gets_the_defaults(sandbox: LearnerSandbox, kube: client.ApiClient) -> None:
    made = sandbox.create(pod("plain", resources={}))
    assert made.returncode == 0, made.stderr
    created = client.CoreV1Api(kube).read_namespaced_pod("plain", sandbox.namespace)
    assert created.spec.containers[0].resources.requests == {"cpu": "100m", "memory": "128Mi"}


def test_a_zero_request_template_makes_no_pods(sandbox: LearnerSandbox, kube: client.ApiClient) -> None:
    """The controller that turns a template into pods meets the same LimitRange: the free pods never exist."""
    sandbox.kubectl("delete", "deployment", "--all", "--wait=true")
    free = deployment("free")
    free["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "0", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "64Mi"}}
    made = sandbox.create(free)
    assert made.returncode == 0, made.stderr
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)

    def refused() -> str:
        for rs in apps.list_namespaced_replica_set(sandbox.namespace, label_selector="app=free").items:
            for cond in rs.status.conditions or []:
                if cond.type == "ReplicaFailure" and "minimum cpu usage" in cond.message:
                    return str(cond.message)
        return ""

    assert "but request is 0" in eventually(refused, timeout=60)
    assert core.list_namespaced_pod(sandbox.namespace, label_selector="app=free").items == []
