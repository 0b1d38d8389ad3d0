"""Pure: a namespace's inventory as a provider-neutral snapshot (``labctl.snapshot/v1``, docs/SNAPSHOT.md).

Quantities become numbers (CPU in cores, memory and storage in bytes, GPU and MIG slices as counts), each pod names
its controller (a Deployment through its ReplicaSet), PVCs list the pods that mount them, Services count their ready
endpoints, and nodes carry the facts the meter prices by (instance type, capacity type, zone, GPU product). Prices
and costs are added by the meter, not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labctl.catalog.models import parse_quantity
from labctl.cost.prices import capacity_type
from labctl.providers.kubernetes.inventory import Inventory

SCHEMA = "labctl.snapshot/v1"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job", "CronJob")


def numbers(resources: dict[str, str] | None) -> dict[str, float]:
    """``{"cpu": "500m", "memory": "1Gi"}`` -> ``{"cpu": 0.5, "memory": 1073741824.0}``."""
    out: dict[str, float] = {}
    for name, value in (resources or {}).items():
        try:
            out[name] = float(parse_quantity(str(value)))
        except ValueError:
            continue
    return out


def build(inv: Inventory, *, session: dict[str, Any], budget: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The snapshot of one session's namespace at ``now`` (unpriced)."""
    by_uid = {w["metadata"].get("uid"): w for w in inv.workloads}
    resources: list[dict[str, Any]] = []
    for w in inv.workloads:
        resources.append(_workload(w))
    mounts: dict[str, list[str]] = {}
    for pod in inv.pods:
        resources.append(_pod(pod, by_uid, inv.usage, now))
        for vol in pod.get("spec", {}).get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and pod.get("status", {}).get("phase") in ("Running", "Pending"):
                mounts.setdefault(claim, []).append(pod["metadata"]["name"])
    for pvc in inv.pvcs:
        resources.append(_base(pvc) | {"running_hours": _age_hours(pvc, now),
            "storage": numbers((pvc.get("spec", {}).get("resources") or {}).get("requests")).get("storage", 0.0),
            "mounted_by": sorted(mounts.get(pvc["metadata"]["name"], [])),
        })
    endpoints = _ready_endpoints(inv.endpoint_slices)
    for svc in inv.services:
        spec = svc.get("spec", {})
        resources.append(_base(svc) | {"running_hours": _age_hours(svc, now),
                                        "service_type": spec.get("type", "ClusterIP"),
                                        "selector": _selector({"matchLabels": spec.get("selector") or {}}),
                                        "endpoints": endpoints.get(svc["metadata"]["name"], 0)})
    for pdb in inv.pdbs:
        spec = pdb.get("spec", {})
        resources.append({k: v for k, v in (_base(pdb) | {
            "selector": _selector(spec.get("selector")), "min_available": spec.get("minAvailable"),
            "max_unavailable": spec.get("maxUnavailable")}).items() if v is not None})
    return {
        "schema": SCHEMA,
        "session": session,
        "budget": budget,
        "cost": {"accrued_usd": 0.0, "burn_rate_usd_per_hour": 0.0, "usage_source": inv.usage_source},
        "nodes": [_node(n) for n in inv.nodes],
        "resources": resources,
    }


def _base(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    owners = meta.get("ownerReferences") or []
    owner = next(({"kind": o["kind"], "name": o["name"]} for o in owners if o.get("controller")), None)
    out = {"kind": obj["kind"], "name": meta["name"], "labels": meta.get("labels") or {},
           "annotations": meta.get("annotations") or {}}
    return out | ({"owner": owner} if owner else {})


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in pod_spec.get("containers") or []:
        item: dict[str, Any] = {"name": c["name"], "requests": numbers((c.get("resources") or {}).get("requests")),
                                "limits": numbers((c.get("resources") or {}).get("limits"))}
        for key in ("image", "command", "args"):
            if c.get(key):
                item[key] = c[key]
        out.append(item)
    return out


def _selector(sel: dict[str, Any] | None) -> dict[str, Any]:
    sel = sel or {}
    out: dict[str, Any] = {"matchLabels": sel.get("matchLabels") or {}}
    if sel.get("matchExpressions"):
        out["matchExpressions"] = sel["matchExpressions"]
    return out


def _claims(pod_spec: dict[str, Any]) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in pod_spec.get("volumes") or []
            if v.get("persistentVolumeClaim")]


def _template(spec: dict[str, Any]) -> dict[str, Any]:
    if "jobTemplate" in spec:
        return (spec["jobTemplate"].get("spec") or {}).get("template") or {}
    return spec.get("template") or {}


def _workload(w: dict[str, Any]) -> dict[str, Any]:
    spec, status = w.get("spec") or {}, w.get("status") or {}
    template = _template(spec)
    pod_spec = template.get("spec") or {}
    out = _base(w) | {
        "pod_template_labels": (template.get("metadata") or {}).get("labels") or {},
        "pod_template_annotations": (template.get("metadata") or {}).get("annotations") or {},
        "node_selector": pod_spec.get("nodeSelector") or {},
        "tolerations": pod_spec.get("tolerations") or [],
        "affinity": pod_spec.get("affinity"),
        "containers": _containers(pod_spec),
        "volumes": _claims(pod_spec),
    }
    if spec.get("selector"):
        out["selector"] = _selector(spec["selector"])
    if w["kind"] in ("Deployment", "StatefulSet", "ReplicaSet"):
        out |= {"replicas": spec.get("replicas", 1), "ready_replicas": status.get("readyReplicas") or 0}
    job_spec = spec if w["kind"] == "Job" else (spec.get("jobTemplate") or {}).get("spec") or {}
    if w["kind"] in ("Job", "CronJob"):
        out |= {"parallelism": job_spec.get("parallelism"), "completions": job_spec.get("completions"),
                "backoff_limit": job_spec.get("backoffLimit"), "pod_failure_policy": job_spec.get("podFailurePolicy")}
    if w["kind"] == "Job":
        out["suspend"] = bool(spec.get("suspend"))
    if w["kind"] == "CronJob":
        out |= {"schedule": spec.get("schedule"), "suspend": bool(spec.get("suspend")),
                "time_zone": spec.get("timeZone")}
    return {k: v for k, v in out.items() if v is not None}


def _controller(owner: dict[str, Any] | None, pod_meta: dict[str, Any],
                by_uid: dict[str | None, dict[str, Any]]) -> dict[str, str] | None:
    """The top-level workload of a pod: Deployment over ReplicaSet, CronJob over Job."""
    refs = [o for o in pod_meta.get("ownerReferences") or [] if o.get("controller")]
    if not refs:
        return None
    current = by_uid.get(refs[0].get("uid"))
    top = owner
    while current is not None:
        top = {"kind": current["kind"], "name": current["metadata"]["name"]}
        parents = [o for o in current["metadata"].get("ownerReferences") or [] if o.get("controller")]
        current = by_uid.get(parents[0].get("uid")) if parents else None
    return top


def _pod(pod: dict[str, Any], by_uid: dict[str | None, dict[str, Any]],
         usage: dict[str, dict[str, dict[str, str]]], now: datetime) -> dict[str, Any]:
    base = {k: v for k, v in _base(pod).items() if v is not None}
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    containers = _containers(spec)
    measured = usage.get(base["name"], {})
    for c in containers:
        if c["name"] in measured:
            c["usage"] = numbers(measured[c["name"]])
    hours = _hours_since(status.get("startTime"), now)
    controller = _controller(base.get("owner"), pod["metadata"], by_uid)
    return base | ({"controller": controller} if controller else {}) | {
        "phase": status.get("phase"),
        "running_hours": hours if status.get("phase") in ("Running", "Succeeded", "Failed") else 0.0,
        "node_selector": spec.get("nodeSelector") or {},
        "tolerations": spec.get("tolerations") or [],
        "containers": containers,
        "volumes": _claims(spec),
    } | ({"node": spec["nodeName"]} if spec.get("nodeName") else {}) | (
        {"affinity": spec["affinity"]} if spec.get("affinity") else {})


def _hours_since(stamp: object, now: datetime) -> float:
    if not stamp:
        return 0.0
    begun = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return round(max(0.0, (now - begun).total_seconds() / 3600), 6)


def _age_hours(obj: dict[str, Any], now: datetime) -> float:
    return _hours_since(obj["metadata"].get("creationTimestamp"), now)


def _ready_endpoints(slices: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sl in slices:
        service = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if not service:
            continue
        ready = sum(1 for e in sl.get("endpoints") or [] if (e.get("conditions") or {}).get("ready", True))
        counts[service] = counts.get(service, 0) + ready
    return counts


def _node(node: dict[str, Any]) -> dict[str, Any]:
    labels = node["metadata"].get("labels") or {}
    capacity = (node.get("status") or {}).get("capacity") or {}
    return {
        "name": node["metadata"]["name"],
        "instance_type": labels.get("node.kubernetes.io/instance-type", "unknown"),
        "capacity_type": capacity_type(labels),
        "zone": labels.get("topology.kubernetes.io/zone", "unknown"),
        "region": labels.get("topology.kubernetes.io/region", "unknown"),
        "gpu_product": labels.get("nvidia.com/gpu.product"),
        "labels": labels,
        "taints": [{"key": t.get("key"), "value": t.get("value"), "effect": t.get("effect")}
                   for t in (node.get("spec") or {}).get("taints") or []],
        "capacity": numbers(capacity),
    }
