"""The unit-economics labs' acceptance: for the reference solution of ``autoscale-to-demand`` and of
``cost-per-inference``, the cost per 1,000 requests and the served share labctl meters are within 1 % of an
independent computation from the lab's demand model and the price sheet.

*Metered*: the reference solution is applied to a fresh namespace of the tests' live cluster and inventoried
(:func:`tests.grading.live.collect`: the real scheduler placed the pods on the fleet's nodes), then taken the
product's way (:func:`tests.grading.live.priced`): the producer's snapshot an hour after the objects were made, the
lab's demand played on its pods over that hour by the simulator, the meter's prices, and the service figures the
sweeper derives from both.

*Independent*: this file reads ``labs/<lab>/lab.yaml`` and ``labs/prices.yaml`` as plain YAML and computes with
fractions, calling nothing of labctl: the daily curve integrated exactly (piecewise linear, clipped at what the
Ready pods can serve), each pod's capacity from its CPU limit and GPU slice, and each pod's price from its node's
sheet row split in the ratio of the fallback unit rates (a MIG slice at max(g/7, slice memory / GPU memory) of a
GPU). The only inputs taken from the cluster are facts of placement: which pods run, with what limits, on which
node type and capacity type.
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from labctl.providers.kubernetes.inventory import Inventory
from tests.grading import live

pytestmark = pytest.mark.cluster

Json = dict[str, Any]
LABS = {"autoscale-to-demand": "Deployment/storefront", "cost-per-inference": "Deployment/chat-inference"}
HOUR = 3600
TOLERANCE = Fraction(1, 100)
SPOT_LABEL = "karpenter.sh/capacity-type"
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?$")
_FACTOR = {None: Fraction(1), "m": Fraction(1, 1000), "Ki": Fraction(2**10), "Mi": Fraction(2**20),
           "Gi": Fraction(2**30)}
_MIG = re.compile(r"^nvidia\.com/mig-(\d)g\.(\d+)gb$")


def _yaml(path: Path) -> Json:
    data: Json = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def _quantity(value: object) -> Fraction:
    match = _QUANTITY.match(str(value))
    assert match, f"unexpected quantity {value!r}"
    return Fraction(match[1]) * _FACTOR[match[2]]


# --- the independent side -------------------------------------------------------------------------------------------


def _points(declaration: Json) -> list[tuple[Fraction, Fraction]]:
    """The day's curve as (seconds since midnight, rps), closed round midnight; a constant demand is flat."""
    if "rps" in declaration:
        rate = Fraction(str(declaration["rps"]))
        return [(Fraction(0), rate), (Fraction(86400), rate)]
    points = sorted((Fraction(int(t[:2]) * 3600 + int(t[3:]) * 60), Fraction(str(v)))
                    for t, v in declaration["daily"].items())
    return [*points, (points[0][0] + 86400, points[0][1])] if points[0][0] == 0 else \
        [(Fraction(0), _at_midnight(points)), *points, (Fraction(86400), _at_midnight(points))]


def _at_midnight(points: list[tuple[Fraction, Fraction]]) -> Fraction:
    (t_last, v_last), (t_first, v_first) = points[-1], points[0]
    span = 86400 - t_last + t_first
    return v_last + (v_first - v_last) * (86400 - t_last) / span


def _clipped(t0: Fraction, v0: Fraction, t1: Fraction, v1: Fraction, cap: Fraction) -> Fraction:
    """The exact integral of min(line, cap) from t0 to t1."""
    if v0 <= cap and v1 <= cap:
        return (v0 + v1) / 2 * (t1 - t0)
    if v0 >= cap and v1 >= cap:
        return cap * (t1 - t0)
    cross = t0 + (cap - v0) / (v1 - v0) * (t1 - t0)
    return _clipped(t0, v0, cross, cap, cap) + _clipped(cross, cap, t1, v1, cap)


def _day(points: list[tuple[Fraction, Fraction]], cap: Fraction | None) -> Fraction:
    """Requests (rps x simulated seconds) over one simulated day, each instant capped at ``cap``."""
    total = Fraction(0)
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        total += _clipped(t0, v0, t1, v1, cap) if cap is not None else (v0 + v1) / 2 * (t1 - t0)
    return total


def _pod_capacity(declaration: Json, limits: Json) -> Fraction:
    """Requests per second one pod serves at most: the tighter of its CPU and GPU, x max_utilisation."""
    per = declaration["per_request"]
    caps = [_quantity(limits["cpu"]) / Fraction(str(per["cpu_core_seconds"]))]
    if per.get("gpu_seconds"):
        caps.append(_gpu_share(limits)[0] / Fraction(str(per["gpu_seconds"])))
    return min(caps) * Fraction(str(declaration.get("max_utilisation", 1)))


def _gpu_share(limits: Json) -> tuple[Fraction, int]:
    """(compute share of a GPU, GPU memory in MiB) of a pod's limits: whole GPUs or one MIG profile."""
    for name, count in limits.items():
        if name == "nvidia.com/gpu":
            return Fraction(int(count)), 81920 * int(count)
        if match := _MIG.match(name):
            return Fraction(int(match[1]), 7) * int(count), int(match[2]) * 1024 * int(count)
    return Fraction(0), 0


def _pod_hourly(prices: Json, node: Json, requests: Json, limits: Json) -> Fraction:
    """A pod's price per hour: its node's sheet price split by the fallback rates' ratio, times what it holds."""
    labels = node["metadata"]["labels"]
    row = next(r for r in prices["instances"] if r["instance_type"] == labels["node.kubernetes.io/instance-type"])
    spot = labels[SPOT_LABEL] == "spot"
    price = Fraction(str(row["spot_hourly_usd" if spot else "on_demand_hourly_usd"]))
    weights = {k: Fraction(str(prices["fallback"][k]))
               for k in ("vcpu_hourly_usd", "memory_gib_hourly_usd", "gpu_hourly_usd")}
    gpus = int(row.get("gpus") or 0)
    whole = (Fraction(row["vcpu"]) * weights["vcpu_hourly_usd"] + Fraction(row["memory_gib"])
             * weights["memory_gib_hourly_usd"] + gpus * weights["gpu_hourly_usd"])
    scale = price / whole
    cost = (_quantity(requests["cpu"]) * weights["vcpu_hourly_usd"]
            + _quantity(requests["memory"]) / 2**30 * weights["memory_gib_hourly_usd"]) * scale
    share, slice_mib = _gpu_share(limits)
    if share:
        device_mib = int(labels["nvidia.com/gpu.memory"])
        fraction = share if share >= 1 else max(share, Fraction(slice_mib, device_mib))
        cost += fraction * weights["gpu_hourly_usd"] * scale
    return cost


def _independent(lab_id: str, inv: Inventory, workload: str) -> tuple[Fraction, Fraction]:
    """(served share, USD per 1,000 requests served) of the workload's running pods over whole simulated days."""
    lab = _yaml(live.LABS_DIR / lab_id / "lab.yaml")
    prices = _yaml(live.LABS_DIR / "prices.yaml")
    declaration = next(w for w in lab["demand"]["workloads"] if w["workload"] == workload)
    name = workload.split("/")[1]
    pods = [p for p in inv.pods if p["status"].get("phase") == "Running"
            and p["metadata"].get("labels", {}).get("app") == name]
    assert pods, f"no running pod of {workload}"
    containers = [p["spec"]["containers"][0]["resources"] for p in pods]
    capacities = {_pod_capacity(declaration, c["limits"]) for c in containers}
    assert len(capacities) == 1, "the reference's replicas are alike"
    per_pod = capacities.pop()
    ready = len(pods)
    memory = _quantity(declaration["per_replica"]["memory"])
    per_rps = _quantity(declaration["per_request"].get("memory_per_rps", 0))
    peak = max(v for _, v in _points(declaration)) / ready
    for c in containers:  # the model's assumptions for this reference: nothing fails, usage stays under requests
        assert all(_quantity(c["requests"][r]) == _quantity(c["limits"][r]) for r in ("cpu", "memory"))
        assert memory + per_rps * min(peak, per_pod) <= _quantity(c["limits"]["memory"])
        assert declaration["per_replica"].get("gpu_memory_mib", 0) <= _gpu_share(c["limits"])[1]
    points = _points(declaration)
    offered_day, served_day = _day(points, None), _day(points, per_pod * ready)
    # Demand is in requests per real second, so a simulated day of requests is its rps-seconds over time_scale
    # real seconds: per real hour, offered = day x 3600 / 86400 whatever the time scale.
    served_per_hour = served_day * HOUR / 86400
    nodes = {n["metadata"]["name"]: n for n in inv.nodes}
    hourly = sum((_pod_hourly(prices, nodes[p["spec"]["nodeName"]], c["requests"], c["limits"])
                  for p, c in zip(pods, containers, strict=True)), Fraction(0))
    return served_day / offered_day, hourly / served_per_hour * 1000


# --- the metered side -----------------------------------------------------------------------------------------------


def _metered(lab_id: str, inv: Inventory, workload: str) -> tuple[float, float]:
    """(served share, USD per 1,000 requests) as labctl meters an hour of the lab's demand on the inventoried pods."""
    snap = live.priced(live.catalog()[lab_id], inv, hours=1)  # 12 simulated days at a time scale of 288
    figures = next(f for f in snap.service or [] if f.workload == workload)
    assert figures.served_share is not None and figures.cost_per_1000_requests is not None
    return figures.served_share, figures.cost_per_1000_requests


@pytest.mark.parametrize("lab_id", sorted(LABS))
def test_reference_unit_economics_match_an_independent_computation(lab_id: str, kube: client.ApiClient) -> None:
    lab = live.catalog()[lab_id]
    inv = live.collect(kube, lab, live.solution_docs(lab), prefix=f"ue-{lab_id}")
    workload = LABS[lab_id]
    share, unit = _independent(lab_id, inv, workload)
    metered_share, metered_unit = _metered(lab_id, inv, workload)
    assert share == 1, "the reference solution serves every request"
    assert abs(Fraction(metered_share) - share) <= TOLERANCE * share, (metered_share, float(share))
    assert abs(Fraction(metered_unit) - unit) <= TOLERANCE * unit, (metered_unit, float(unit))
