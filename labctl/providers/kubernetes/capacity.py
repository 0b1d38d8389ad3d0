"""Pure: a cluster's capacity summary from its Nodes and bound pods, and what a lab's sandbox takes from a cluster.

Placement (:mod:`labctl.service.placement`) decides on typed values; this module makes them from the Kubernetes JSON
the provider read. A node's room is its ``status.allocatable`` minus the effective requests (as the scheduler counts
them: :func:`labctl.cost.model.effective_requests`) of the non-terminal pods bound to it; a cordoned node, or one not
Ready, has no room. A lab's needs are the pods its rendered starters make (a Deployment's, ReplicaSet's or
StatefulSet's replicas, a Job's parallelism, a bare Pod; CronJobs and DaemonSets start nothing at the start) with
their node selectors and tolerations, a container without requests getting the lab's LimitRange defaults as the
apiserver would, and the compute part of its quota (``cpu``, ``memory``, GPUs, MIG slices).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from labctl.catalog.models import Lab, parse_quantity
from labctl.cost import model
from labctl.ports import ClusterRoom, LabNeeds, NodeRoom, PodNeed, Taint, Toleration

Json = dict[str, Any]
SCALED_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")
QUOTA_COMPUTE = {"cpu": "cpu", "memory": "memory", "requests.cpu": "cpu", "requests.memory": "memory"}
EXTENDED_PREFIX = "requests."  # requests.nvidia.com/gpu, requests.nvidia.com/mig-1g.10gb


def amounts(resources: Mapping[str, object] | None) -> dict[str, Decimal]:
    """Kubernetes quantities by resource name as Decimals; an unparsable one is left out."""
    found: dict[str, Decimal] = {}
    for name, value in (resources or {}).items():
        try:
            found[name] = parse_quantity(str(value))
        except (ValueError, ArithmeticError):
            continue
    return found


def _container_requests(container: Json, defaults: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """A container's requests as admitted: missing ones take the limit (the apiserver's defaulting), then the
    namespace's LimitRange default (cpu, memory)."""
    resources = container.get("resources") or {}
    requests = {**amounts(resources.get("limits")), **amounts(resources.get("requests"))}
    for name, value in defaults.items():
        requests.setdefault(name, value)
    return requests


def pod_requests(spec: Json, defaults: Mapping[str, Decimal] | None = None) -> dict[str, Decimal]:
    """What a pod spec holds on its node, per resource (init containers, sidecars, pod-level requests, overhead)."""
    given = defaults or {}
    apps = [model.ContainerDemand(_container_requests(c, given)) for c in spec.get("containers") or []]
    inits = [model.ContainerDemand(_container_requests(c, given), sidecar=c.get("restartPolicy") == "Always")
             for c in spec.get("initContainers") or []]
    return model.effective_requests(apps, inits, pod_requests=amounts((spec.get("resources") or {}).get("requests")),
                                    overhead=amounts(spec.get("overhead")))


def _tolerations(spec: Json) -> tuple[Toleration, ...]:
    return tuple(Toleration(key=t.get("key") or None, operator=t.get("operator") or "Equal", value=t.get("value"),
                            effect=t.get("effect") or None) for t in spec.get("tolerations") or [])


def _taints(node: Json) -> tuple[Taint, ...]:
    return tuple(Taint(key=t.get("key", ""), value=t.get("value"), effect=t.get("effect", ""))
                 for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") != "PreferNoSchedule")


def _ready(node: Json) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def room(name: str, *, nodes: Iterable[Json], pods: Iterable[Json], taken_at: datetime) -> ClusterRoom:
    """The cluster's summary from its Nodes and its non-terminal pods (only bound pods take room)."""
    requested: dict[str, dict[str, Decimal]] = {}
    bound: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed"):
            continue
        held = requested.setdefault(node, {})
        for resource, value in pod_requests(spec).items():
            held[resource] = held.get(resource, Decimal(0)) + value
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        bound[namespace] = bound.get(namespace, 0) + 1
    rooms = []
    for node in nodes:
        meta = node.get("metadata") or {}
        node_name = meta.get("name", "")
        rooms.append(NodeRoom(
            name=node_name, labels=dict(meta.get("labels") or {}),
            allocatable=amounts((node.get("status") or {}).get("allocatable")),
            requested=requested.get(node_name, {}), taints=_taints(node),
            schedulable=not (node.get("spec") or {}).get("unschedulable") and _ready(node)))
    return ClusterRoom(name=name, nodes=tuple(sorted(rooms, key=lambda r: r.name)), bound=bound, taken_at=taken_at)


def _pod_count(obj: Json) -> int:
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return 1
    if kind in SCALED_KINDS:
        replicas = spec.get("replicas")
        return int(replicas) if isinstance(replicas, int) else 1
    if kind == "Job":
        parallel = spec.get("parallelism")
        count = int(parallel) if isinstance(parallel, int) else 1
        completions = spec.get("completions")
        return min(count, int(completions)) if isinstance(completions, int) else count
    return 0


def _pod_spec(obj: Json) -> Json:
    if obj.get("kind") == "Pod":
        return dict(obj.get("spec") or {})
    return dict(((obj.get("spec") or {}).get("template") or {}).get("spec") or {})


def needs(lab: Lab, starters: Iterable[Json]) -> LabNeeds:
    """What one sandbox of ``lab`` takes: its rendered starters' pods and its quota's compute."""
    limits = lab.limit_range
    defaults = {"cpu": parse_quantity(limits.default_request.cpu),
                "memory": parse_quantity(limits.default_request.memory)}
    pods: list[PodNeed] = []
    for obj in starters:
        count = _pod_count(obj)
        if not count:
            continue
        spec = _pod_spec(obj)
        requests = pod_requests(spec, defaults)
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name', '')}"
        for index in range(count):
            pods.append(PodNeed(name=name if count == 1 else f"{name}#{index + 1}", requests=requests,
                                node_selector=dict(spec.get("nodeSelector") or {}), tolerations=_tolerations(spec)))
    quota: dict[str, Decimal] = {}
    for key, value in lab.quota.items():
        resource = QUOTA_COMPUTE.get(key) or (key.removeprefix(EXTENDED_PREFIX)
                                              if key.startswith(EXTENDED_PREFIX + "nvidia.com/") else None)
        if resource is not None:
            quota[resource] = parse_quantity(str(value))
    return LabNeeds(pods=tuple(pods), quota=quota)
