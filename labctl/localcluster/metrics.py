"""Resource metrics on the local cluster: what kwok must serve so metrics-server, ``kubectl top`` and the HPA work.

The chain is: labctl writes usage into kwok's cluster-scoped ``ClusterResourceUsage`` objects
(:mod:`labctl.providers.kubernetes.usage`) -> kwok-controller turns it into each simulated node's kubelet-style
``/metrics/resource`` endpoint, as described by a ``Metric`` object -> metrics-server scrapes every node at the path
named by the node annotation ``metrics.k8s.io/resource-metrics-path`` -> ``metrics.k8s.io`` is served through an
``APIService`` -> ``kubectl top`` and kube-controller-manager's HPA controller read it.

With the ``Metric``, ``ResourceUsage`` and ``ClusterResourceUsage`` CRDs enabled, kwokctl installs neither kwok's
stock ``Metric`` nor its ``usage-from-annotation`` rule (a usage read from pod annotations, which the learner
writes): this module provides the ``Metric`` labctl installs itself, and
:class:`~labctl.localcluster.cluster.LocalCluster` deletes every usage object labctl did not write, should anything
have put one there.

Facts relied on (kwok v0.8.0, metrics-server v0.8.0):

- metrics-server parses ``container_cpu_usage_seconds_total`` (a counter in core-seconds),
  ``container_memory_working_set_bytes``, ``container_start_time_seconds`` and the ``node_`` pair, each container
  labelled ``container``, ``namespace``, ``pod``; it drops a container (and with it the whole pod) whose CPU counter
  or memory is zero, and a node whose CPU or memory sum is zero.
- kwok evaluates each value as CEL over ``node``, ``pod`` and ``container``; ``pod.CumulativeUsage("cpu", name)``
  integrates the current usage over time, so a counter that metrics-server turns back into a rate.
- metrics-server refuses a ``--metric-resolution`` under 10 s, or under its kubelet request timeout / 0.9.

Pure: builds objects and file texts; applying them is the cluster's job.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

METRIC_NAME = "labctl-resource-metrics"
RESOURCE_METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
METRIC_RESOLUTION = "10s"  # metrics-server's minimum
KUBELET_REQUEST_TIMEOUT = "5s"
HPA_SYNC_PERIOD = "5s"  # kube-controller-manager's default is 15s; the simulated world runs on a short clock

_POD_LABELS = [{"name": "namespace", "value": "pod.metadata.namespace"}, {"name": "pod", "value": "pod.metadata.name"}]
_CONTAINER_LABELS = [{"name": "container", "value": "container.name"}, *_POD_LABELS]


def node_metrics_path(node_name: str) -> str:
    """Where kwok serves one node's resource metrics (the ``{nodeName}`` of the Metric's path, filled in)."""
    return f"/metrics/nodes/{node_name}/metrics/resource"


def with_metrics_path(node: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Node manifest that tells metrics-server where kwok serves its resource metrics."""
    meta = node["metadata"]
    annotations = {**meta.get("annotations", {}), RESOURCE_METRICS_PATH_ANNOTATION: node_metrics_path(meta["name"])}
    return {**node, "metadata": {**meta, "annotations": annotations}}


def _gauge_or_counter(name: str, kind: str, dimension: str, value: str, help_text: str) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": name, "kind": kind, "dimension": dimension, "help": help_text, "value": value}
    if dimension == "container":
        metric["labels"] = _CONTAINER_LABELS
    elif dimension == "pod":
        metric["labels"] = _POD_LABELS
    return metric


def resource_metric() -> dict[str, Any]:
    """kwok's ``Metric`` for the kubelet's ``/metrics/resource`` endpoint, the series metrics-server reads."""
    metrics = [
        _gauge_or_counter("scrape_error", "gauge", "node", "0", "1 if there was an error getting the node's metrics"),
        _gauge_or_counter("container_start_time_seconds", "gauge", "container", "pod.SinceSecond()",
                          "Start time of the container since unix epoch in seconds"),
        _gauge_or_counter("container_cpu_usage_seconds_total", "counter", "container",
                          'pod.CumulativeUsage("cpu", container.name)',
                          "Cumulative cpu time consumed by the container in core-seconds"),
        _gauge_or_counter("container_memory_working_set_bytes", "gauge", "container",
                          'pod.Usage("memory", container.name)', "Current working set of the container in bytes"),
        _gauge_or_counter("pod_cpu_usage_seconds_total", "counter", "pod", 'pod.CumulativeUsage("cpu")',
                          "Cumulative cpu time consumed by the pod in core-seconds"),
        _gauge_or_counter("pod_memory_working_set_bytes", "gauge", "pod", 'pod.Usage("memory")',
                          "Current working set of the pod in bytes"),
        _gauge_or_counter("node_cpu_usage_seconds_total", "counter", "node", 'node.CumulativeUsage("cpu")',
                          "Cumulative cpu time consumed by the node in core-seconds"),
        _gauge_or_counter("node_memory_working_set_bytes", "gauge", "node", 'node.Usage("memory")',
                          "Current working set of the node in bytes"),
    ]
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Metric",
        "metadata": {"name": METRIC_NAME, "labels": {"app.kubernetes.io/managed-by": "labctl"}},
        "spec": {"path": node_metrics_path("{nodeName}"), "metrics": metrics},
    }


def apiservice_manifest() -> str:
    """The ``v1beta1.metrics.k8s.io`` APIService and its Service, as kwokctl's metrics-server manifest.

    kwokctl rewrites them for the binary runtime: the Service becomes an ExternalName pointing at loopback and the
    APIService gets the port metrics-server listens on (chosen by kwokctl, so clusters never collide).
    """
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "metrics-server", "namespace": "kube-system",
                     "labels": {"app.kubernetes.io/managed-by": "labctl"}},
        "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]},
    }
    apiservice = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": {"app.kubernetes.io/managed-by": "labctl"}},
        "spec": {
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "service": {"name": "metrics-server", "namespace": "kube-system"},
            # metrics-server serves with the cluster's admin certificate, not one signed for this Service's name.
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    return yaml.safe_dump_all([service, apiservice], sort_keys=False)


def kustomization_files() -> dict[str, str]:
    """The files of a kustomize directory holding :func:`apiservice_manifest` (kwokctl builds local manifests so)."""
    return {"kustomization.yaml": "resources:\n  - metrics-server.yaml\n",
            "metrics-server.yaml": apiservice_manifest()}


def kustomization_dirname() -> str:
    """A directory name that changes with the content: kwokctl caches a built manifest by its source path."""
    digest = hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(kustomization_files().items())).encode())
    return f"metrics-server-manifest-{digest.hexdigest()[:12]}"


def component_patches() -> list[dict[str, Any]]:
    """kwokctl component patches: nodes reachable on loopback (kwokctl leaves kwok's ``--node-ip`` empty, so nodes
    would get no InternalIP to scrape), metrics-server at its shortest resolution, a short HPA sync period."""
    return [
        {"name": "kwok-controller", "extraArgs": [{"key": "node-ip", "value": "127.0.0.1", "override": True}]},
        {"name": "metrics-server",
         "extraArgs": [{"key": "metric-resolution", "value": METRIC_RESOLUTION, "override": True},
                       # it must stay under 90 % of the resolution (its default is 10s)
                       {"key": "kubelet-request-timeout", "value": KUBELET_REQUEST_TIMEOUT}]},
        {"name": "kube-controller-manager",
         "extraArgs": [{"key": "horizontal-pod-autoscaler-sync-period", "value": HPA_SYNC_PERIOD}]},
    ]
