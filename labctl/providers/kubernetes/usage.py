"""Simulated resource usage on a kwok cluster, written where the learner cannot write: kwok's cluster-scoped objects.

kwok runs no containers, so what a pod "uses" is whatever its usage objects say; kwok serves it on each node's
``/metrics/resource`` endpoint, metrics-server serves it as ``metrics.k8s.io`` (``kubectl top``, the HPA), and
labctl's meter and graders read it from there. The demand simulator decides the figures; this adapter writes them.

The object relied on (kwok v0.8.0, ``kwok.x-k8s.io/v1alpha1``), one per pod::

    kind: ClusterResourceUsage             # cluster-scoped: a namespaced Role can never grant it
    metadata:
      name: usage.<namespace>.<pod>        # (a hash of the pod name when that would be too long)
      labels: {app.kubernetes.io/managed-by: labctl, labctl.dev/usage-namespace: <namespace>}
      ownerReferences: [{apiVersion: v1, kind: Namespace, name: <namespace>, uid: <its uid>}]
    spec:
      selector: {matchNamespaces: [<namespace>], matchNames: [<pod>]}
      usages:                              # one entry per container, static values (no CEL)
      - containers: [<container>]
        usage:
          cpu: {value: 250000000n}         # cores, as a quantity in nano-cores
          memory: {value: "134217728"}     # bytes
          nvidia.com/gpu: {value: 370000000n}  # any other resource: its figure (e.g. engine-active ratio)

Why one object per pod with static values, not one per namespace: a ``ClusterResourceUsage`` applies its ``usages``
by container name to every pod its selector matches, so pods of one namespace with different figures need a CEL
expression keyed by pod name (``{"web-1": 0.25, ...}[pod.metadata.name]``) carrying the figures. kwok caches every
compiled CEL program by its source text and never evicts one, so figures that change every sweep would grow the
kwok controller without bound. Static values carry no program. ``bench/usage_apply.py`` measures both shapes.

kwok looks a container up first in namespaced ``ResourceUsage`` objects (by pod name), then in the
``ClusterResourceUsage`` objects whose selector matches; selectors here never overlap, so the order kwok lists them
in does not matter. metrics-server drops a pod whose CPU or memory figure is zero, so both are written at least at
their smallest unit (1 nano-core, 1 byte). A pod with no usage object has no metrics (``kubectl top`` omits it).
The Namespace owns its usage objects (both are cluster-scoped), so the garbage collector deletes them with the
namespace even when :func:`clear_usage` is never called.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL, KIND = "kwok.x-k8s.io", "v1alpha1", "clusterresourceusages", "ClusterResourceUsage"
FIELD_MANAGER = "labctl"
MANAGED_BY = {"app.kubernetes.io/managed-by": "labctl"}
NAMESPACE_LABEL = "labctl.dev/usage-namespace"
_MAX_NAME = 253


@dataclass(frozen=True)
class ContainerUsage:
    """What one container uses now: CPU in cores, memory in bytes, and any other resource by its name."""

    cpu_cores: float
    memory_bytes: int
    other: Mapping[str, float] = field(default_factory=dict)  # e.g. {"nvidia.com/gpu": 0.37} (engine-active ratio)

    def __post_init__(self) -> None:
        figures = {"cpu": self.cpu_cores, "memory": float(self.memory_bytes), **self.other}
        for name, value in figures.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"usage of {name} must be a finite number >= 0, got {value!r}")


PodUsage = Mapping[str, ContainerUsage]
"""Container name -> what it uses."""


@dataclass(frozen=True)
class Applied:
    """What one :func:`apply_usage` did: objects written (new or changed), unchanged, and removed (stale pods)."""

    written: int
    unchanged: int
    removed: int


def object_name(namespace: str, pod: str) -> str:
    """The usage object's name for one pod: readable when it fits, a hash of the pod name when it does not."""
    name = f"usage.{namespace}.{pod}"
    if len(name) <= _MAX_NAME:
        return name
    return f"usage.{namespace}.{hashlib.sha256(pod.encode()).hexdigest()[:32]}"


def _nano(value: float) -> str:
    return f"{round(value * 1e9)}n"


def usage_object(*, namespace: str, namespace_uid: str, pod: str, containers: PodUsage) -> dict[str, Any]:
    """The ``ClusterResourceUsage`` that gives one pod's containers their figures (pure)."""
    usages = []
    for name, figures in sorted(containers.items()):
        usage = {
            # metrics-server drops a container whose CPU counter or memory is zero: keep both above zero.
            "cpu": {"value": _nano(figures.cpu_cores) if figures.cpu_cores >= 1e-9 else "1n"},
            "memory": {"value": str(max(1, int(figures.memory_bytes)))},
        }
        for resource, value in sorted(figures.other.items()):
            usage[resource] = {"value": _nano(value)}
        usages.append({"containers": [name], "usage": usage})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": object_name(namespace, pod), "labels": {**MANAGED_BY, NAMESPACE_LABEL: namespace},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": namespace,
                                          "uid": namespace_uid}]},
        "spec": {"selector": {"matchNamespaces": [namespace], "matchNames": [pod]}, "usages": usages},
    }


def usage_objects(*, namespace: str, namespace_uid: str, usage: Mapping[str, PodUsage]) -> list[dict[str, Any]]:
    """Every usage object of one namespace, pod by pod (pure)."""
    return [usage_object(namespace=namespace, namespace_uid=namespace_uid, pod=pod, containers=c)
            for pod, c in sorted(usage.items())]


def _listed(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    found: dict[str, Any] = client.CustomObjectsApi(api).list_cluster_custom_object(
        GROUP, VERSION, PLURAL, label_selector=f"{NAMESPACE_LABEL}={namespace}")
    return {item["metadata"]["name"]: item for item in found.get("items", [])}


def apply_usage(api: client.ApiClient, *, namespace: str, usage: Mapping[str, PodUsage]) -> Applied:
    """Make ``namespace``'s usage exactly ``usage`` (pod name -> containers): server-side apply what is new or
    changed, leave what is already so, delete the objects of pods no longer listed. Idempotent. A namespace that
    does not exist (any more) has no pods: its objects are removed and nothing is written."""
    custom = client.CustomObjectsApi(api)
    current = _listed(api, namespace)
    try:
        # The namespace's JSON, not the SDK's model of it: only its uid is wanted (every replay step asks).
        answer: Any = client.CoreV1Api(api).read_namespace(namespace, _preload_content=False)  # the raw response
        namespace_uid = str(json.loads(answer.data)["metadata"]["uid"])
    except ApiException as exc:
        if exc.status != 404:
            raise
        return Applied(written=0, unchanged=0, removed=sum(_delete(custom, name) for name in current))
    written = unchanged = 0
    for obj in usage_objects(namespace=namespace, namespace_uid=namespace_uid, usage=usage):
        name = obj["metadata"]["name"]
        same_owner = current.get(name, {}).get("metadata", {}).get("ownerReferences") == \
            obj["metadata"]["ownerReferences"]
        if name in current and same_owner and current[name].get("spec") == obj["spec"]:
            unchanged += 1
            continue
        custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, obj, field_manager=FIELD_MANAGER,
                                           force=True, _content_type="application/apply-patch+yaml")
        written += 1
    wanted = {object_name(namespace, pod) for pod in usage}
    removed = sum(_delete(custom, name) for name in current if name not in wanted)
    return Applied(written=written, unchanged=unchanged, removed=removed)


def clear_usage(api: client.ApiClient, *, namespace: str) -> int:
    """Delete every usage object of ``namespace`` (at sandbox destroy); returns how many there were."""
    custom = client.CustomObjectsApi(api)
    return sum(_delete(custom, name) for name in _listed(api, namespace))


def _delete(custom: client.CustomObjectsApi, name: str) -> int:
    try:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return 0
        raise
    return 1
