"""Read what a sandbox holds, and suspend, resume or freeze it: the Kubernetes side of the meter and the graders.

``collect`` lists every cost-relevant object of one namespace (plus the nodes its pods run on) as plain dicts, and
asks metrics.k8s.io for usage when the cluster serves it; turning that into a priced snapshot is pure work done
elsewhere. ``suspend`` scales every workload to zero, remembering replicas in an annotation, suspends CronJobs and
Jobs, and sets the quota's pod count to zero so nothing new starts; ``resume`` restores exactly what was there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labctl.grading.snapshot import UsageSource

REPLICAS_BEFORE = "labctl.dev/replicas-before-suspend"
SUSPEND_BEFORE = "labctl.dev/suspend-before-suspend"
QUOTA_PODS_BEFORE = "labctl.dev/quota-pods-before-suspend"


@dataclass
class Inventory:
    """Plain API objects of one namespace (``to_dict`` form, camelCase as the API writes them)."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)  # Deployments, StatefulSets, ReplicaSets, Jobs...
    pvcs: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    endpoint_slices: list[dict[str, Any]] = field(default_factory=list)
    pdbs: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # pod -> container -> {cpu, memory}
    usage_source: UsageSource = "requests"


def _plain(api: client.ApiClient, items: list[Any], kind: str, api_version: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        obj: dict[str, Any] = api.sanitize_for_serialization(item)
        obj["kind"], obj["apiVersion"] = kind, api_version
        out.append(obj)
    return out


def collect(api: client.ApiClient, namespace: str) -> Inventory:
    """Everything the meter and the graders need from ``namespace``.

    Usage is only ever the metrics pipeline's measurement: nothing the learner can write in the namespace (kwok's
    ``kwok.x-k8s.io/usage-*`` pod annotations included) is read as one.
    """
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    policy, discovery = client.PolicyV1Api(api), client.DiscoveryV1Api(api)
    inv = Inventory()
    inv.pods = _plain(api, core.list_namespaced_pod(namespace).items, "Pod", "v1")
    for lister, kind, version in (
        (apps.list_namespaced_deployment, "Deployment", "apps/v1"),
        (apps.list_namespaced_stateful_set, "StatefulSet", "apps/v1"),
        (apps.list_namespaced_replica_set, "ReplicaSet", "apps/v1"),
        (apps.list_namespaced_daemon_set, "DaemonSet", "apps/v1"),
        (batch.list_namespaced_job, "Job", "batch/v1"),
        (batch.list_namespaced_cron_job, "CronJob", "batch/v1"),
    ):
        inv.workloads += _plain(api, lister(namespace).items, kind, version)
    inv.pvcs = _plain(api, core.list_namespaced_persistent_volume_claim(namespace).items, "PersistentVolumeClaim", "v1")
    inv.services = _plain(api, core.list_namespaced_service(namespace).items, "Service", "v1")
    inv.endpoint_slices = _plain(api, discovery.list_namespaced_endpoint_slice(namespace).items, "EndpointSlice",
                                 "discovery.k8s.io/v1")
    inv.pdbs = _plain(api, policy.list_namespaced_pod_disruption_budget(namespace).items, "PodDisruptionBudget",
                      "policy/v1")
    wanted = {(p.get("spec") or {}).get("nodeName") for p in inv.pods} - {None}
    inv.nodes = [n for n in _plain(api, core.list_node().items, "Node", "v1") if n["metadata"]["name"] in wanted]
    inv.usage, inv.usage_source = _usage(api, namespace)
    return inv


def _usage(api: client.ApiClient, namespace: str) -> tuple[dict[str, dict[str, dict[str, str]]], UsageSource]:
    """Per-container CPU and memory from metrics.k8s.io, or nothing (the meter then prices requests)."""
    try:
        data: dict[str, Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", namespace, "pods", _request_timeout=5)
    except ApiException as exc:
        if exc.status in (404, 503):
            return {}, "requests"
        raise
    usage = {item["metadata"]["name"]: {c["name"]: c.get("usage", {}) for c in item.get("containers", [])}
             for item in data.get("items", [])}
    return usage, "metrics"


# -- suspend / resume ----------------------------------------------------------------------------------------------

Lister = Callable[..., Any]


def _scalable(api: client.ApiClient) -> list[tuple[Lister, Lister]]:
    """(list, patch) of the workloads that scale by replicas."""
    apps = client.AppsV1Api(api)
    return [(apps.list_namespaced_deployment, apps.patch_namespaced_deployment),
            (apps.list_namespaced_stateful_set, apps.patch_namespaced_stateful_set),
            (apps.list_namespaced_replica_set, apps.patch_namespaced_replica_set)]


def _suspendable(api: client.ApiClient) -> list[tuple[Lister, Lister, str]]:
    """(list, patch, counter) of the workloads that stop by ``spec.suspend``."""
    batch = client.BatchV1Api(api)
    return [(batch.list_namespaced_cron_job, batch.patch_namespaced_cron_job, "cronjobs"),
            (batch.list_namespaced_job, batch.patch_namespaced_job, "jobs")]


def suspend(api: client.ApiClient, namespace: str) -> dict[str, int]:
    """Scale workloads to zero (remembering replicas), suspend CronJobs and Jobs, stop new pods via the quota."""
    core = client.CoreV1Api(api)
    counts = {"scaled": 0, "cronjobs": 0, "jobs": 0}
    for lister, patcher in _scalable(api):
        for obj in lister(namespace).items:
            if obj.metadata.owner_references:  # a Deployment's ReplicaSets follow their Deployment
                continue
            annotations = obj.metadata.annotations or {}
            if REPLICAS_BEFORE in annotations:
                continue  # already suspended: keep the first remembered count
            replicas = obj.spec.replicas if obj.spec.replicas is not None else 1
            patcher(obj.metadata.name, namespace, {"metadata": {"annotations": {REPLICAS_BEFORE: str(replicas)}},
                                                   "spec": {"replicas": 0}})
            counts["scaled"] += 1
    for lister, patcher, key in _suspendable(api):
        for obj in lister(namespace).items:
            annotations = obj.metadata.annotations or {}
            if SUSPEND_BEFORE in annotations:
                continue
            if key == "jobs" and (obj.status.completion_time or obj.metadata.owner_references):
                continue  # finished Jobs cost nothing; CronJob children stop with their CronJob
            before = bool(obj.spec.suspend)
            patcher(obj.metadata.name, namespace, {"metadata": {"annotations": {SUSPEND_BEFORE: json.dumps(before)}},
                                                   "spec": {"suspend": True}})
            counts[key] += 1
    quota = core.read_namespaced_resource_quota("sandbox", namespace)
    annotations = quota.metadata.annotations or {}
    if QUOTA_PODS_BEFORE not in annotations:
        before_pods = (quota.spec.hard or {}).get("pods", "")
        core.patch_namespaced_resource_quota("sandbox", namespace, {
            "metadata": {"annotations": {QUOTA_PODS_BEFORE: before_pods}}, "spec": {"hard": {"pods": "0"}}})
    return counts


def resume(api: client.ApiClient, namespace: str) -> dict[str, int]:
    """Undo :func:`suspend` exactly: the quota first (so pods may start), then replicas and suspend flags."""
    core = client.CoreV1Api(api)
    counts = {"scaled": 0, "cronjobs": 0, "jobs": 0}
    quota = core.read_namespaced_resource_quota("sandbox", namespace)
    annotations = quota.metadata.annotations or {}
    if QUOTA_PODS_BEFORE in annotations:
        before = annotations[QUOTA_PODS_BEFORE]
        hard: dict[str, str | None] = {"pods": before or None}
        core.patch_namespaced_resource_quota("sandbox", namespace, {
            "metadata": {"annotations": {QUOTA_PODS_BEFORE: None}}, "spec": {"hard": hard}})
    for lister, patcher in _scalable(api):
        for obj in lister(namespace).items:
            annotations = obj.metadata.annotations or {}
            if REPLICAS_BEFORE not in annotations:
                continue
            patcher(obj.metadata.name, namespace, {"metadata": {"annotations": {REPLICAS_BEFORE: None}},
                                                   "spec": {"replicas": int(annotations[REPLICAS_BEFORE])}})
            counts["scaled"] += 1
    for lister, patcher, key in _suspendable(api):
        for obj in lister(namespace).items:
            annotations = obj.metadata.annotations or {}
            if SUSPEND_BEFORE not in annotations:
                continue
            patcher(obj.metadata.name, namespace, {"metadata": {"annotations": {SUSPEND_BEFORE: None}},
                                                   "spec": {"suspend": json.loads(annotations[SUSPEND_BEFORE])}})
            counts[key] += 1
    return counts
