"""Read what a sandbox holds: the Kubernetes side of the meter and the graders.

``collect`` lists every cost-relevant object of one namespace (plus the nodes its pods run on) as plain dicts, and
asks metrics.k8s.io for usage when the cluster serves it; turning that into a priced snapshot is pure work done
elsewhere. It also lists the namespace's ConfigMaps (but the cluster's CA bundle) and HorizontalPodAutoscalers:
declarations the learner writes, which graders may compare with measurements but never take as one. Suspend and
resume live in :mod:`labctl.providers.kubernetes.suspension`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labctl.grading.snapshot import UsageSource

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"  # the controller-manager puts it in every namespace: not the learner's


@dataclass
class Inventory:
    """Plain API objects of one namespace (their JSON, camelCase as the API writes them)."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)  # Deployments, StatefulSets, ReplicaSets, Jobs...
    pvcs: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    endpoint_slices: list[dict[str, Any]] = field(default_factory=list)
    pdbs: list[dict[str, Any]] = field(default_factory=list)
    config_maps: list[dict[str, Any]] = field(default_factory=list)  # declarations the learner writes
    autoscalers: list[dict[str, Any]] = field(default_factory=list)  # HorizontalPodAutoscalers (autoscaling/v2)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # pod -> container -> {cpu, memory}
    usage_source: UsageSource = "requests"


def _listed(lister: Callable[..., Any], *args: str, kind: str, api_version: str) -> list[dict[str, Any]]:
    """One list's items as the API wrote them (its JSON, decoded once: the SDK's typed models would be built and
    turned back into dicts), each with its kind and apiVersion (a list's items carry neither)."""
    page = json.loads(lister(*args, _preload_content=False).data)
    items: list[dict[str, Any]] = page.get("items") or []
    for obj in items:
        obj["kind"], obj["apiVersion"] = kind, api_version
    return items


def collect(api: client.ApiClient, namespace: str) -> Inventory:
    """Everything the meter and the graders need from ``namespace``.

    Usage is only ever the metrics pipeline's measurement: nothing the learner can write in the namespace (the usage
    annotations kwok can read from pods included) is read as one.
    """
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    policy, discovery = client.PolicyV1Api(api), client.DiscoveryV1Api(api)
    inv = Inventory()
    inv.pods = _listed(core.list_namespaced_pod, namespace, kind="Pod", api_version="v1")
    for lister, kind, version in (
        (apps.list_namespaced_deployment, "Deployment", "apps/v1"),
        (apps.list_namespaced_stateful_set, "StatefulSet", "apps/v1"),
        (apps.list_namespaced_replica_set, "ReplicaSet", "apps/v1"),
        (apps.list_namespaced_daemon_set, "DaemonSet", "apps/v1"),
        (batch.list_namespaced_job, "Job", "batch/v1"),
        (batch.list_namespaced_cron_job, "CronJob", "batch/v1"),
    ):
        inv.workloads += _listed(lister, namespace, kind=kind, api_version=version)
    inv.pvcs = _listed(core.list_namespaced_persistent_volume_claim, namespace, kind="PersistentVolumeClaim",
                       api_version="v1")
    inv.services = _listed(core.list_namespaced_service, namespace, kind="Service", api_version="v1")
    inv.endpoint_slices = _listed(discovery.list_namespaced_endpoint_slice, namespace, kind="EndpointSlice",
                                  api_version="discovery.k8s.io/v1")
    inv.pdbs = _listed(policy.list_namespaced_pod_disruption_budget, namespace, kind="PodDisruptionBudget",
                       api_version="policy/v1")
    inv.config_maps = [c for c in _listed(core.list_namespaced_config_map, namespace, kind="ConfigMap",
                                          api_version="v1")
                       if c["metadata"].get("name") != ROOT_CA_CONFIGMAP]
    inv.autoscalers = _listed(client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler, namespace,
                              kind="HorizontalPodAutoscaler", api_version="autoscaling/v2")
    wanted = {(p.get("spec") or {}).get("nodeName") for p in inv.pods} - {None}
    inv.nodes = [n for n in _listed(core.list_node, kind="Node", api_version="v1") if n["metadata"]["name"] in wanted]
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
