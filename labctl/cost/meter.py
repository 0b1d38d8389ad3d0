"""Pure: price a snapshot with the price sheet (OpenCost's model): the meter's arithmetic, no I/O.

Each node gets its hourly price (and what the same node would cost on-demand), split into unit rates; each running
pod costs the sum of its containers at max(request, usage) on its node's rates; PVCs cost their requested size and
LoadBalancer Services the sheet's hourly rate. The snapshot's nodes and resources are annotated in place with
``hourly_usd``, ``on_demand_hourly_usd`` and ``cost_usd`` (so graders and the receipt read prices from the snapshot),
and the result is the burn rate with the warnings to show the learner (unknown instance types priced at the fallback
rates, never at zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from labctl.cost import model
from labctl.cost import prices as sheet_mod
from labctl.cost.prices import GIB, NodePrice, PriceSheet

BILLED_PHASES = ("Running",)


@dataclass
class Priced:
    burn_rate_usd_per_hour: Decimal
    usage_known: bool
    warnings: list[str] = field(default_factory=list)
    running_pods: int = 0
    spot_pods: int = 0
    idle_usd_per_hour: Decimal = Decimal(0)


def _node_prices(node: dict[str, Any], sheet: PriceSheet) -> tuple[NodePrice, NodePrice]:
    labels = node.get("labels") or {}
    cap = node.get("capacity") or {}
    cpu = cap.get("cpu")
    memory = Decimal(str(cap["memory"])) / GIB if cap.get("memory") else None
    price = sheet.node_price_from_labels(labels, cpu_cores=cpu, memory_gib=memory)
    on_demand = sheet.node_price(sheet_mod.provider_of(labels), sheet_mod.region_of(labels),
                                 sheet_mod.instance_type_of(labels), "on-demand", cpu_cores=cpu, memory_gib=memory,
                                 gpus=sheet_mod.gpu_count_of(labels), gpu_product=sheet_mod.gpu_product_of(labels))
    return price, on_demand


def price_snapshot(snapshot: dict[str, Any], sheet: PriceSheet) -> Priced:
    """Annotate ``snapshot`` with prices; return its burn rate (USD per hour) and the pricing warnings."""
    warnings: list[str] = []
    rates: dict[str, tuple[model.UnitRates, model.UnitRates, int | None]] = {}
    for node in snapshot.get("nodes", []):
        price, on_demand = _node_prices(node, sheet)
        if price.warning and price.warning not in warnings:
            warnings.append(price.warning)
        node["hourly_usd"] = float(price.hourly_usd)
        node["on_demand_hourly_usd"] = float(on_demand.hourly_usd)
        node["price_source"] = price.source
        gpu_memory = (node.get("labels") or {}).get("nvidia.com/gpu.memory")
        rates[node["name"]] = (model.unit_rates(price), model.unit_rates(on_demand),
                               int(gpu_memory) if gpu_memory else None)
        node.pop("capacity", None)  # only needed to price an unknown instance type
    burn = Decimal(0)
    usage_known = snapshot.get("cost", {}).get("usage_source") in ("metrics", "kwok")
    for res in snapshot.get("resources", []):
        hourly = on_demand_hourly = Decimal(0)
        if res["kind"] == "Pod" and res.get("phase") in BILLED_PHASES and res.get("node") in rates:
            node_rates, od_rates, gpu_memory = rates[res["node"]]
            for c in res.get("containers", []):
                usage = c.get("usage")
                hourly += model.container_hourly_usd(c.get("requests", {}), usage, node_rates,
                                                     node_gpu_memory_mib=gpu_memory).hourly_usd
                on_demand_hourly += model.container_hourly_usd(c.get("requests", {}), usage, od_rates,
                                                               node_gpu_memory_mib=gpu_memory).hourly_usd
        elif res["kind"] == "PersistentVolumeClaim":
            hourly = on_demand_hourly = model.pvc_hourly_usd(res.get("storage", 0), sheet)
        elif res["kind"] == "Service" and res.get("service_type") == "LoadBalancer":
            hourly = on_demand_hourly = model.load_balancer_hourly_usd(sheet)
        else:
            continue
        res["hourly_usd"] = float(hourly)
        res["on_demand_hourly_usd"] = float(on_demand_hourly)
        res["cost_usd"] = float(hourly * Decimal(str(res.get("running_hours", 0))))
        burn += hourly
    if not usage_known:
        warnings.append("no usage metrics in this cluster: containers are priced by their requests")
    snapshot.setdefault("cost", {})["burn_rate_usd_per_hour"] = float(burn)
    priced = Priced(burn_rate_usd_per_hour=burn, usage_known=usage_known, warnings=warnings)
    capacity = {n["name"]: n.get("capacity_type") for n in snapshot.get("nodes", [])}
    for res in snapshot.get("resources", []):
        if res["kind"] == "Pod" and res.get("phase") in BILLED_PHASES:
            priced.running_pods += 1
            priced.spot_pods += capacity.get(res.get("node")) == "spot"
    return priced
