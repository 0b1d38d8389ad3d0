"""Snapshots for grader tests, built from the labs' own manifests the way the snapshot producer would see them.

:func:`build` takes rendered Kubernetes objects (a lab's starter, its reference solution, or an edited copy: a
"wrong solution") and a placement (which nodes of ``labs/fleet.yaml`` each workload's pods landed on, as the
scheduler would have put them) and returns a ``labctl.snapshot/v1`` dict: workloads with their pod templates, pods
with their controller, requests, kwok-reported usage and prices, claims with the pods mounting them, Services with
their ready endpoints. Prices follow a simple OpenCost-like split (a pod pays the largest of its CPU, memory and GPU
shares of its node). The reference-solution snapshots are also stored as JSON fixtures (``fixtures/``); regenerate
them with ``python -m tests.grading.world`` after changing a solution manifest (a test fails until then).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from labctl.catalog import loader
from labctl.catalog.models import Lab, parse_quantity
from labctl.grading.snapshot import Snapshot, dump_snapshot
from labctl.localcluster import fleet
from labctl.settings import REPO_ROOT

Json = dict[str, Any]
LABS_DIR = REPO_ROOT / "labs"
MANIFESTS_DIR = REPO_ROOT / "manifests"
GRADERS_DIR = REPO_ROOT / "graders"
FIXTURES = Path(__file__).parent / "fixtures"
TAKEN_AT = datetime(2026, 7, 20, 10, 40, tzinfo=UTC)
STARTED_AT = TAKEN_AT - timedelta(hours=1)
HOURS = 0.5
# USD per hour by (instance type, capacity type): on-demand from docs/FINOPS.md section 4, spot at 35 % of it.
PRICES = {("m5.xlarge", "on-demand"): 0.192, ("m5.xlarge", "spot"): 0.0672,
          ("p4de.24xlarge", "on-demand"): 27.44705, ("p4de.24xlarge", "spot"): 9.6064675}
LOAD_BALANCER_HOURLY = 0.0225
STORAGE_GB_MONTH = 0.04
_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def catalog() -> dict[str, Lab]:
    return loader.load_catalog(LABS_DIR, MANIFESTS_DIR)


def context(lab_id: str) -> dict[str, str]:
    return {"namespace": f"lab-{lab_id}", "session_id": "s-test", "lab_id": lab_id, "learner_id": "ada"}


def starter_docs(lab: Lab) -> list[Json]:
    return loader.render_starter(lab, MANIFESTS_DIR, context(lab.id))


def solution_docs(lab: Lab) -> list[Json]:
    return loader.render_solution(lab, MANIFESTS_DIR, context(lab.id))


def fleet_nodes() -> dict[str, Json]:
    return {n["metadata"]["name"]: n for n in fleet.node_manifests(fleet.load(LABS_DIR / "fleet.yaml"))}


# --- editing manifests (wrong solutions) ----------------------------------------------------------------------------


def edit(docs: Iterable[Json], ref: str, change: Callable[[Json], None]) -> list[Json]:
    """A copy of ``docs`` with ``change`` applied to the object ``Kind/name``."""
    kind, name = ref.split("/")
    edited = copy.deepcopy(list(docs))
    targets = [d for d in edited if d["kind"] == kind and d["metadata"]["name"] == name]
    assert targets, f"no {ref} in the documents"
    for doc in targets:
        change(doc)
    return edited


def without(docs: Iterable[Json], *refs: str) -> list[Json]:
    """A copy of ``docs`` without the objects named ``Kind/name``."""
    return [copy.deepcopy(d) for d in docs if f"{d['kind']}/{d['metadata']['name']}" not in refs]


def pod_template(doc: Json) -> Json:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    template: Json = spec["template"]
    return template


# --- Kubernetes objects -> snapshot resources -----------------------------------------------------------------------


def resource(doc: Json) -> Json:
    """The snapshot resource of one Kubernetes object (workloads described by their pod template)."""
    meta, spec, kind = doc["metadata"], doc.get("spec") or {}, doc["kind"]
    res: Json = {"kind": kind, "name": meta["name"], "labels": dict(meta.get("labels") or {}),
                 "annotations": dict(meta.get("annotations") or {})}
    if kind in _WORKLOADS:
        res |= _template_fields(pod_template(doc))
        job = spec["jobTemplate"]["spec"] if kind == "CronJob" else spec
        if kind in ("Deployment", "StatefulSet"):
            res |= {"replicas": spec.get("replicas", 1), "selector": spec["selector"]}
        if kind in ("Job", "CronJob"):
            res |= {"parallelism": job.get("parallelism", 1), "completions": job.get("completions"),
                    "backoff_limit": job.get("backoffLimit", 6), "pod_failure_policy": job.get("podFailurePolicy")}
        if kind == "CronJob":
            res |= {"schedule": spec["schedule"], "suspend": spec.get("suspend", False),
                    "time_zone": spec.get("timeZone")}
    elif kind == "PodDisruptionBudget":
        res |= {"selector": spec.get("selector"), "min_available": spec.get("minAvailable"),
                "max_unavailable": spec.get("maxUnavailable")}
    elif kind == "Service":
        res |= {"service_type": spec.get("type", "ClusterIP"), "selector": spec.get("selector")}
    elif kind == "PersistentVolumeClaim":
        res |= {"storage": int(parse_quantity(str(spec["resources"]["requests"]["storage"])))}
    return {k: v for k, v in res.items() if v is not None}


def _template_fields(template: Json) -> Json:
    meta, spec = template.get("metadata") or {}, template["spec"]
    return {"pod_template_labels": dict(meta.get("labels") or {}),
            "pod_template_annotations": dict(meta.get("annotations") or {}),
            "node_selector": dict(spec.get("nodeSelector") or {}), "tolerations": list(spec.get("tolerations") or []),
            "affinity": spec.get("affinity"), "containers": [_container(c) for c in spec["containers"]],
            "volumes": [v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or []
                        if "persistentVolumeClaim" in v]}


def _container(spec: Json) -> Json:
    resources = spec.get("resources") or {}
    return {"name": spec["name"], "image": spec.get("image"), "command": list(spec.get("command") or []),
            "args": list(spec.get("args") or []), "requests": _quantities(resources.get("requests")),
            "limits": _quantities(resources.get("limits"))}


def _quantities(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {k: float(parse_quantity(str(v))) for k, v in (values or {}).items()}


# --- pods, prices, the whole snapshot -------------------------------------------------------------------------------


Placement = Mapping[str, Sequence[str | tuple[str, str]]]


def build(lab: Lab, docs: Iterable[Json], placement: Placement, *, hours: float = HOURS,
          starter_burn: float | None = None, reference_cost: float | None = None,
          extra_accrued: float = 0.0) -> Json:
    """The snapshot of a sandbox holding ``docs``, with each workload's pods on the nodes ``placement`` names.

    ``placement`` maps ``Kind/name`` to node names (or ``(node, phase)`` pairs; default phase Running).
    """
    nodes = fleet_nodes()
    resources = [resource(d) for d in docs]
    by_ref = {f"{r['kind']}/{r['name']}": r for r in resources}
    pods: list[Json] = []
    for ref, places in placement.items():
        assert ref in by_ref, f"placement names {ref}, which is not in the documents"
        pods += _pods(by_ref[ref], [(p, "Running") if isinstance(p, str) else p for p in places], nodes, hours)
    _wire_claims_and_services(resources, pods, hours)
    everything = resources + pods
    used = sorted({p["node"] for p in pods})
    burn = sum(r.get("hourly_usd", 0.0) for r in everything)
    snapshot = {
        "schema": "labctl.snapshot/v1",
        "session": {"id": "s-test", "lab_id": lab.id, "learner_id": "ada", "provider": "kubernetes",
                    "namespace": f"lab-{lab.id}", "started_at": STARTED_AT.isoformat(),
                    "taken_at": TAKEN_AT.isoformat()},
        "budget": {"budget_usd": float(lab.budget.usd), "reference_cost_usd": reference_cost,
                   "starter_burn_rate_usd_per_hour": starter_burn},
        "cost": {"accrued_usd": sum(r.get("cost_usd", 0.0) for r in everything) + extra_accrued,
                 "burn_rate_usd_per_hour": burn, "usage_source": "kwok"},
        "nodes": [_node_entry(nodes[name]) for name in used],
        "resources": everything,
    }
    return Snapshot.model_validate(snapshot).model_dump(mode="json", exclude_none=True)


def _pods(workload: Json, places: list[tuple[str, str]], nodes: Mapping[str, Json], hours: float) -> list[Json]:
    kind, name = workload["kind"], workload["name"]
    owner = {"Deployment": ("ReplicaSet", f"{name}-5d8f7"), "StatefulSet": ("StatefulSet", name),
             "Job": ("Job", name), "CronJob": ("Job", f"{name}-29200000")}[kind]
    annotations = workload.get("pod_template_annotations") or {}
    pods = []
    for index, (node_name, phase) in enumerate(places):
        containers = _with_usage(workload["containers"], annotations) if phase == "Running" else workload["containers"]
        hourly, on_demand = _pod_prices(containers, nodes[node_name])
        running = hours if phase == "Running" else hours / 2
        pods.append({"kind": "Pod", "name": f"{owner[1]}-{index}", "labels": dict(workload["pod_template_labels"]),
                     "annotations": dict(annotations), "owner": {"kind": owner[0], "name": owner[1]},
                     "controller": {"kind": kind, "name": name}, "node_selector": workload["node_selector"],
                     "tolerations": workload["tolerations"], "affinity": workload.get("affinity"),
                     "containers": containers, "volumes": workload["volumes"], "node": node_name, "phase": phase,
                     "running_hours": running, "cost_usd": hourly * running,
                     "hourly_usd": hourly if phase == "Running" else 0.0,
                     "on_demand_hourly_usd": on_demand if phase == "Running" else 0.0})
    return pods


def _with_usage(containers: list[Json], annotations: Mapping[str, str]) -> list[Json]:
    """kwok's simulated use (``kwok.x-k8s.io/usage-*`` annotations) on the first container, as the meter reads it."""
    usage: Json = {}
    if "kwok.x-k8s.io/usage-cpu" in annotations:
        usage["cpu"] = float(parse_quantity(annotations["kwok.x-k8s.io/usage-cpu"]))
    if "kwok.x-k8s.io/usage-memory" in annotations:
        usage["memory"] = int(parse_quantity(annotations["kwok.x-k8s.io/usage-memory"]))
    result = copy.deepcopy(containers)
    if usage and result:
        result[0]["usage"] = usage
    return result


def _pod_prices(containers: list[Json], node: Json) -> tuple[float, float]:
    """(hourly, on-demand hourly): the node's price times the largest of the pod's CPU, memory and GPU shares."""
    capacity = node["status"]["capacity"]
    labels = node["metadata"]["labels"]
    gpus = float(labels.get("nvidia.com/gpu.count", "0") or 0)
    requests: dict[str, float] = {}
    for container in containers:
        for key, value in {**container["requests"], **container["limits"]}.items():
            if key in ("cpu", "memory") and key not in container["requests"]:
                continue
            requests[key] = requests.get(key, 0.0) + value
    shares = [requests.get("cpu", 0.0) / float(parse_quantity(capacity["cpu"])),
              requests.get("memory", 0.0) / float(parse_quantity(capacity["memory"]))]
    if gpus:
        shares.append(requests.get("nvidia.com/gpu", 0.0) / gpus)
        for key, count in requests.items():
            if key.startswith("nvidia.com/mig-"):
                compute = int(key.removeprefix("nvidia.com/mig-").split("g.")[0])
                shares.append(count * compute / 7 / gpus)
    instance = labels["node.kubernetes.io/instance-type"]
    capacity_type = labels["karpenter.sh/capacity-type"]
    share = max(shares)
    return share * PRICES[(instance, capacity_type)], share * PRICES[(instance, "on-demand")]


def _wire_claims_and_services(resources: list[Json], pods: list[Json], hours: float) -> None:
    running = [p for p in pods if p["phase"] == "Running"]
    for res in resources:
        if res["kind"] == "PersistentVolumeClaim":
            hourly = res["storage"] / 1e9 * STORAGE_GB_MONTH / 730
            res |= {"mounted_by": [p["name"] for p in running if res["name"] in p["volumes"]],
                    "running_hours": hours, "hourly_usd": hourly, "cost_usd": hourly * hours}
        if res["kind"] == "Service":
            selector = res.get("selector") or {}
            matched = [p for p in running if selector and all(p["labels"].get(k) == v for k, v in selector.items())]
            res["endpoints"] = len(matched)
            if res["service_type"] == "LoadBalancer":
                res |= {"running_hours": hours, "hourly_usd": LOAD_BALANCER_HOURLY,
                        "cost_usd": LOAD_BALANCER_HOURLY * hours}


def _node_entry(node: Json) -> Json:
    labels = node["metadata"]["labels"]
    instance, capacity_type = labels["node.kubernetes.io/instance-type"], labels["karpenter.sh/capacity-type"]
    return {"name": node["metadata"]["name"], "instance_type": instance, "capacity_type": capacity_type,
            "zone": labels["topology.kubernetes.io/zone"], "region": labels["topology.kubernetes.io/region"],
            "gpu_product": labels.get("nvidia.com/gpu.product"), "labels": dict(labels),
            "taints": node["spec"]["taints"], "hourly_usd": PRICES[(instance, capacity_type)],
            "on_demand_hourly_usd": PRICES[(instance, "on-demand")], "price_source": "sheet"}


# --- each lab's starter and reference solution, placed ----------------------------------------------------------------

SPOT = ["cpu-spot-0", "cpu-spot-1"]
ON_DEMAND = ["cpu-ondemand-0", "cpu-ondemand-1"]
STARTER_PLACEMENT: dict[str, Placement] = {
    "tag-for-showback": {"Deployment/web-frontend": ON_DEMAND, "Deployment/recommender-api": ["cpu-ondemand-1",
                         "cpu-ondemand-2"], "Deployment/model-cache": ["cpu-ondemand-2"],
                         "CronJob/feature-store-sync": [("cpu-ondemand-0", "Succeeded")]},
    "move-batch-to-spot": {"Job/embeddings-backfill": ["cpu-ondemand-0", "cpu-ondemand-1", "cpu-ondemand-2",
                                                       "cpu-ondemand-3"], "Deployment/thumbnailer": ON_DEMAND},
    "gpu-rightsizing": {"Deployment/llm-inference": ["gpu-a100-ondemand-0", "gpu-a100-ondemand-0"]},
    "idle-hunter": {"Deployment/legacy-dashboard": ["cpu-ondemand-0", "cpu-ondemand-1", "cpu-ondemand-2"],
                    "Deployment/orders-worker": ON_DEMAND},
}
SOLUTION_PLACEMENT: dict[str, Placement] = {
    "tag-for-showback": STARTER_PLACEMENT["tag-for-showback"],
    "move-batch-to-spot": {"Job/embeddings-backfill": ["cpu-spot-0", "cpu-spot-1", "cpu-spot-2", "cpu-spot-3"],
                           "Deployment/thumbnailer": SPOT},
    "gpu-rightsizing": {"Deployment/llm-inference": ["gpu-a100-mig-spot-0", "gpu-a100-mig-spot-0"]},
    "idle-hunter": {"Deployment/orders-worker": ON_DEMAND},
}


def starter_snapshot(lab: Lab) -> Json:
    return build(lab, starter_docs(lab), STARTER_PLACEMENT[lab.id])


def starter_burn(lab: Lab) -> float:
    return float(starter_snapshot(lab)["cost"]["burn_rate_usd_per_hour"])


def solution_snapshot(lab: Lab) -> Json:
    """The reference solution's snapshot, built from the manifests (compare with the stored fixture)."""
    return build(lab, solution_docs(lab), SOLUTION_PLACEMENT[lab.id], starter_burn=starter_burn(lab),
                 extra_accrued=starter_burn(lab) * HOURS)


def fixture_path(lab_id: str) -> Path:
    return FIXTURES / f"{lab_id}-solution.json"


def load_fixture(lab_id: str) -> Json:
    data: Json = json.loads(fixture_path(lab_id).read_text(encoding="utf-8"))
    return data


def write_fixtures() -> None:
    for lab in catalog().values():
        text = dump_snapshot(Snapshot.model_validate(solution_snapshot(lab)), indent=1)
        fixture_path(lab.id).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_fixtures()
