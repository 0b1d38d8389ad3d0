"""Pure: a namespace's inventory as a provider-neutral, unpriced :class:`~labctl.grading.snapshot.Snapshot`.

Quantities become numbers (CPU in cores, memory and storage in bytes, GPU and MIG slices as counts), each pod names
its controller (a Deployment through its ReplicaSet), PVCs list the pods that mount them, Services count their ready
endpoints, and nodes carry the facts the meter prices by (instance type, capacity type, zone, GPU product, capacity).
Prices and costs are added by the meter (:mod:`labctl.cost.meter`), not here.

The step is total over what the apiserver accepts: the learner writes most of the inventory, so nothing in it may
make the snapshot fail. Optional fields may be missing, quantities come in any form the apiserver stores (``1500m``
of storage, ``1e3``, ``0.5Gi``, huge values), a taint may have no value, annotations hold any text. A quantity that
cannot be read (which the apiserver never stores) is left out, never guessed. Usage comes only from the cluster's
metrics pipeline (``inv.usage``); nothing the learner can write (annotations, labels) is read as a measurement.
ConfigMaps (text data, capped) and HorizontalPodAutoscalers go into their own sections as declarations.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from labctl.catalog.models import parse_quantity
from labctl.cost.prices import capacity_type
from labctl.grading.snapshot import (
    Autoscaler,
    BudgetInfo,
    ConfigMapData,
    Container,
    ContainerUsage,
    CostInfo,
    LabelSelector,
    Node,
    ObjectRef,
    Resource,
    SelectorRequirement,
    SessionInfo,
    Snapshot,
    Taint,
)
from labctl.providers.kubernetes.inventory import Inventory

Json = dict[str, Any]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job", "CronJob")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
MAX_QUANTITY = Decimal(2**63 - 1)
# ConfigMaps are the learner's text: the snapshot keeps enough of it to read a figure, not a whole file store.
MAX_CONFIG_MAPS = 64
MAX_CONFIG_KEYS = 32
MAX_CONFIG_VALUE = 1024  # characters


def quantity(value: object) -> float | None:
    """A Kubernetes quantity as a number in base units (``"500m"`` -> 0.5), or None when it is not one.

    The apiserver stores quantities of any size (``10e399`` bytes of storage is accepted); like Kubernetes'
    ``Quantity.Value()``, a figure saturates at the largest int64 (:data:`MAX_QUANTITY`), so it stays a finite,
    billable number.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _parsed(value)
    try:
        number = Decimal(value) if isinstance(value, int | float) else parse_quantity(str(value).strip())
    except (ValueError, ArithmeticError):
        return None
    return _bounded(number)


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> float | None:
    """A quantity's text as a number (sandboxes repeat a handful of spellings: parsed once each)."""
    try:
        return _bounded(parse_quantity(text.strip()))
    except (ValueError, ArithmeticError):
        return None


def _bounded(number: Decimal) -> float | None:
    if number.is_nan() or number < 0:
        return None
    return float(min(number, MAX_QUANTITY))


def numbers(resources: Mapping[str, object] | None) -> dict[str, float]:
    """``{"cpu": "500m", "memory": "1Gi"}`` -> ``{"cpu": 0.5, "memory": 1073741824.0}``; unreadable ones left out."""
    out: dict[str, float] = {}
    for name, value in (resources or {}).items():
        number = quantity(value)
        if number is not None:
            out[str(name)] = number
    return out


def build(inv: Inventory, *, session: SessionInfo, budget: BudgetInfo, now: datetime) -> Snapshot:
    """The snapshot of one session's namespace at ``now`` (unpriced: ``cost`` is zero, nodes carry no price)."""
    by_uid = {_meta(w).get("uid"): w for w in inv.workloads}
    resources: list[Resource] = [_workload(w) for w in inv.workloads if _name(w)]
    mounts: dict[str, list[str]] = {}
    for pod in inv.pods:
        if not _name(pod):
            continue
        resources.append(_pod(pod, by_uid, inv.usage, now))
        if (pod.get("status") or {}).get("phase") in ("Running", "Pending"):
            for claim in _claims(pod.get("spec") or {}):
                mounts.setdefault(claim, []).append(_name(pod))
    for pvc in inv.pvcs:
        if not _name(pvc):
            continue
        requests = ((pvc.get("spec") or {}).get("resources") or {}).get("requests")
        resources.append(_resource(pvc, running_hours=_age_hours(pvc, now),
                                   storage=numbers(requests).get("storage", 0.0),
                                   mounted_by=sorted(mounts.get(_name(pvc), []))))
    endpoints = _ready_endpoints(inv.endpoint_slices)
    for svc in inv.services:
        if not _name(svc):
            continue
        spec = svc.get("spec") or {}
        resources.append(_resource(svc, running_hours=_age_hours(svc, now),
                                   service_type=str(spec.get("type") or "ClusterIP"),
                                   selector=_selector({"matchLabels": spec.get("selector") or {}}),
                                   endpoints=endpoints.get(_name(svc), 0)))
    for pdb in inv.pdbs:
        if not _name(pdb):
            continue
        spec = pdb.get("spec") or {}
        resources.append(_resource(pdb, selector=_selector(spec.get("selector")),
                                   min_available=_int_or_percent(spec.get("minAvailable")),
                                   max_unavailable=_int_or_percent(spec.get("maxUnavailable"))))
    config_maps = sorted((_config_map(c) for c in inv.config_maps if _name(c)), key=lambda c: c.name)
    autoscalers = sorted((_autoscaler(a) for a in inv.autoscalers if _name(a)), key=lambda a: a.name)
    return Snapshot(session=session, budget=budget,
                    cost=CostInfo(accrued_usd=0.0, burn_rate_usd_per_hour=0.0, usage_source=inv.usage_source),
                    nodes=[_node_once(n) for n in inv.nodes if _name(n)], resources=_unique(resources),
                    config_maps=config_maps[:MAX_CONFIG_MAPS] or None, autoscalers=autoscalers or None)


# --- pieces -------------------------------------------------------------------------------------------------------


def _meta(obj: Json) -> Json:
    meta: Json = obj.get("metadata") or {}
    return meta


def _name(obj: Json) -> str:
    return str(_meta(obj).get("name") or "")


def _strings(value: object) -> dict[str, str]:
    """Labels or annotations: every key and value as text (the apiserver stores them as strings)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _ref(value: Mapping[str, Any] | None) -> ObjectRef | None:
    if not value or not value.get("kind") or not value.get("name"):
        return None
    return ObjectRef(kind=str(value["kind"]), name=str(value["name"]))


def _owner(obj: Json) -> ObjectRef | None:
    return next((r for o in _meta(obj).get("ownerReferences") or [] if o.get("controller")
                 and (r := _ref(o)) is not None), None)


def _resource(obj: Json, **fields: Any) -> Resource:
    """The fields every kind shares (kind, name, labels, annotations, owner) plus ``fields``; None means unset."""
    return Resource(kind=str(obj.get("kind") or "Unknown"), name=_name(obj), labels=_strings(_meta(obj).get("labels")),
                    annotations=_strings(_meta(obj).get("annotations")), owner=_owner(obj),
                    **{k: v for k, v in fields.items() if v is not None})


def _unique(resources: list[Resource]) -> list[Resource]:
    """One resource per ``Kind/name`` (the apiserver guarantees it; a list answered twice must not break the model)."""
    seen: dict[str, Resource] = {}
    for res in resources:
        seen.setdefault(res.ref, res)
    return list(seen.values())


def _container(c: Json) -> Container | None:
    if not c.get("name"):
        return None
    resources = c.get("resources") or {}
    return Container(name=str(c["name"]), image=str(c["image"]) if c.get("image") else None,
                     command=[str(a) for a in c.get("command") or []], args=[str(a) for a in c.get("args") or []],
                     requests=numbers(resources.get("requests")), limits=numbers(resources.get("limits")),
                     restart_policy=str(c["restartPolicy"]) if c.get("restartPolicy") else None)


def _containers(pod_spec: Json, key: str = "containers") -> list[Container]:
    return [c for raw in pod_spec.get(key) or [] if (c := _container(raw)) is not None]


def _scheduling(pod_spec: Json) -> Json:
    """Scheduling and container fields shared by pods and pod templates."""
    return {"node_selector": _strings(pod_spec.get("nodeSelector")),
            "tolerations": [dict(t) for t in pod_spec.get("tolerations") or [] if isinstance(t, Mapping)],
            "affinity": pod_spec.get("affinity") or None, "containers": _containers(pod_spec),
            "init_containers": _containers(pod_spec, "initContainers"),
            "pod_requests": numbers((pod_spec.get("resources") or {}).get("requests")),
            "overhead": numbers(pod_spec.get("overhead")), "volumes": _claims(pod_spec)}


def _selector(sel: Mapping[str, Any] | None) -> LabelSelector:
    sel = sel or {}
    requirements = [SelectorRequirement(key=str(e["key"]), operator=e["operator"],
                                        values=[str(v) for v in e.get("values") or []])
                    for e in sel.get("matchExpressions") or []
                    if e.get("key") and e.get("operator") in SELECTOR_OPERATORS]
    return LabelSelector(matchLabels=_strings(sel.get("matchLabels")), matchExpressions=requirements)


def _int_or_percent(value: object) -> int | str | None:
    if value is None or isinstance(value, int):
        return value
    text = str(value)
    return text if text.endswith("%") and text[:-1].isdigit() else None


def _claims(pod_spec: Json) -> list[str]:
    return [str(claim) for v in pod_spec.get("volumes") or []
            if (claim := (v.get("persistentVolumeClaim") or {}).get("claimName"))]


def _template(spec: Json) -> Json:
    if "jobTemplate" in spec:
        template: Json = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return template
    return spec.get("template") or {}


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _workload(w: Json) -> Resource:
    spec, status, kind = w.get("spec") or {}, w.get("status") or {}, w.get("kind")
    template = _template(spec)
    fields: Json = {"pod_template_labels": _strings(_meta(template).get("labels")),
                    "pod_template_annotations": _strings(_meta(template).get("annotations")),
                    **_scheduling(template.get("spec") or {})}
    if spec.get("selector"):
        fields["selector"] = _selector(spec["selector"])
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        replicas = spec.get("replicas", 1)
        fields |= {"replicas": _count(replicas), "ready_replicas": _count(status.get("readyReplicas") or 0)}
    job_spec = spec if kind == "Job" else (spec.get("jobTemplate") or {}).get("spec") or {}
    if kind in ("Job", "CronJob"):
        fields |= {"parallelism": _count(job_spec.get("parallelism")),
                   "completions": _count(job_spec.get("completions")),
                   "backoff_limit": _count(job_spec.get("backoffLimit")),
                   "pod_failure_policy": job_spec.get("podFailurePolicy") or None}
    if kind in ("Job", "CronJob"):
        fields["suspend"] = bool(spec.get("suspend"))
    if kind == "CronJob":
        fields |= {"schedule": str(spec.get("schedule") or "") or None,
                   "time_zone": str(spec["timeZone"]) if spec.get("timeZone") else None}
    return _resource(w, **fields)


def _controller(pod: Json, by_uid: Mapping[object, Json]) -> ObjectRef | None:
    """The top-level workload of a pod: Deployment over ReplicaSet, CronJob over Job (cycles cannot loop)."""
    top = _owner(pod)
    refs = [o for o in _meta(pod).get("ownerReferences") or [] if o.get("controller")]
    current = by_uid.get(refs[0].get("uid")) if refs else None
    visited: set[int] = set()
    while current is not None and id(current) not in visited:
        visited.add(id(current))
        top = _ref({"kind": current.get("kind"), "name": _name(current)}) or top
        parents = [o for o in _meta(current).get("ownerReferences") or [] if o.get("controller")]
        current = by_uid.get(parents[0].get("uid")) if parents else None
    return top


def _usage(figures: Mapping[str, object]) -> ContainerUsage:
    cpu, memory = quantity(figures.get("cpu")), quantity(figures.get("memory"))
    return ContainerUsage(cpu=cpu, memory=math.ceil(memory) if memory is not None else None)


def _pod(pod: Json, by_uid: Mapping[object, Json], usage: Mapping[str, Mapping[str, Mapping[str, object]]],
         now: datetime) -> Resource:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = str(status["phase"]) if status.get("phase") else None
    fields = _scheduling(spec)
    measured = usage.get(_name(pod), {})
    for group in ("containers", "init_containers"):
        fields[group] = [c.model_copy(update={"usage": _usage(measured[c.name])}) if c.name in measured else c
                         for c in fields[group]]
    started = status.get("startTime") or _meta(pod).get("creationTimestamp")
    billed = bool(spec.get("nodeName")) or phase in ("Running", "Succeeded", "Failed")
    return _resource(pod, controller=_controller(pod, by_uid), phase=phase,
                     running_hours=_hours_since(started, now) if billed else 0.0,
                     node=str(spec["nodeName"]) if spec.get("nodeName") else None, **fields)


def _hours_since(stamp: object, now: datetime) -> float:
    if not stamp:
        return 0.0
    try:
        begun = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        return round(max(0.0, (now - begun).total_seconds() / 3600), 6)
    except (TypeError, ValueError):
        return 0.0


def _age_hours(obj: Json, now: datetime) -> float:
    return _hours_since(_meta(obj).get("creationTimestamp"), now)


def _ready_endpoints(slices: list[Json]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sl in slices:
        service = _strings(_meta(sl).get("labels")).get("kubernetes.io/service-name")
        if not service:
            continue
        ready = sum(1 for e in sl.get("endpoints") or [] if (e.get("conditions") or {}).get("ready") is not False)
        counts[service] = counts.get(service, 0) + ready
    return counts


_NODES: dict[tuple[str, str], Node] = {}
_NODES_KEPT = 1024  # nodes of a cluster; the oldest go first beyond it
_NODES_LOCK = threading.Lock()


def _node_once(node: Json) -> Node:
    """:func:`_node`, built once per node version: every sandbox of a sweep reads the same few nodes, and a
    ``(uid, resourceVersion)`` pair names one content (the apiserver's guarantee). The shared model is never changed
    in place (the meter prices a copy)."""
    meta = _meta(node)
    key = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
    if not all(key):
        return _node(node)
    with _NODES_LOCK:
        built = _NODES.get(key)
    if built is None:
        built = _node(node)
        with _NODES_LOCK:
            if len(_NODES) >= _NODES_KEPT:
                _NODES.pop(next(iter(_NODES)))
            _NODES[key] = built
    return built


def _node(node: Json) -> Node:
    labels = _strings(_meta(node).get("labels"))
    taints = [Taint(key=str(t["key"]), value=str(t.get("value") or ""), effect=t["effect"])
              for t in (node.get("spec") or {}).get("taints") or []
              if t.get("key") and t.get("effect") in TAINT_EFFECTS]
    return Node(name=_name(node), instance_type=labels.get("node.kubernetes.io/instance-type") or "unknown",
                capacity_type=capacity_type(labels), zone=labels.get("topology.kubernetes.io/zone") or "unknown",
                region=labels.get("topology.kubernetes.io/region") or "unknown",
                gpu_product=labels.get("nvidia.com/gpu.product") or None, labels=labels, taints=taints,
                capacity=numbers((node.get("status") or {}).get("capacity")))


def _config_map(cm: Json) -> ConfigMapData:
    """A ConfigMap's text data, capped: the first :data:`MAX_CONFIG_KEYS` keys in order, each value cut at
    :data:`MAX_CONFIG_VALUE` characters (``truncated`` says so)."""
    data = _strings(cm.get("data"))
    kept = {k: v[:MAX_CONFIG_VALUE] for k, v in sorted(data.items())[:MAX_CONFIG_KEYS]}
    truncated = len(kept) < len(data) or any(len(v) > MAX_CONFIG_VALUE for v in data.values())
    return ConfigMapData(name=_name(cm), labels=_strings(_meta(cm).get("labels")), data=kept, truncated=truncated)


def _autoscaler(hpa: Json) -> Autoscaler:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    metrics = [dict(m) for m in spec.get("metrics") or [] if isinstance(m, Mapping)]
    behavior = spec.get("behavior")
    return Autoscaler(name=_name(hpa), target=_ref(spec.get("scaleTargetRef")),
                      min_replicas=_count(spec.get("minReplicas")), max_replicas=_count(spec.get("maxReplicas")),
                      metrics=metrics, behavior=dict(behavior) if isinstance(behavior, Mapping) else None,
                      current_replicas=_count(status.get("currentReplicas")),
                      desired_replicas=_count(status.get("desiredReplicas")))
