"""Pure: price a snapshot with the price sheet (OpenCost's model): the meter's arithmetic, no I/O.

:func:`price` takes the provider's unpriced :class:`~labctl.grading.snapshot.Snapshot` and returns a new, priced one
(the input is never changed) with the figures the sweeps accrue. Each node gets its hourly price (and what the same
node would cost on-demand), split into unit rates. Each pod that holds a node's resources (scheduled and neither
Succeeded nor Failed, so Pending on a node is billed too) costs its effective requests (what the scheduler holds for
it: init containers, sidecars, overhead and pod-level requests included, :func:`labctl.cost.model.effective_requests`)
with measured usage folded in per container; PVCs cost their requested size and LoadBalancer Services the sheet's
hourly rate. Cloud sandboxes' resources are priced from the same sheet: a running or pending ``Instance`` by its
(provider, region, instance type) row at its market's price (spot by the row's spot price; a stopped one costs no
compute), ``Volume`` and ``VolumeSnapshot`` by size at the storage rate, ``Address`` at the address rate. An instance
type the sheet does not list in its region is priced as the same type in another region of the sheet, else at the
dearest on-demand row of its provider (stated fallbacks, with a warning: an unlisted type never runs cheaper than a
listed one), never at zero. Nodes and resources get ``hourly_usd``, ``on_demand_hourly_usd`` and ``cost_usd`` so
graders and the receipt read prices from the snapshot.

Every number comes from the price sheet, the nodes (which the learner cannot write), the pods' resource specs and the
metrics pipeline's usage; no label or annotation is read as a figure. A resource that cannot be priced becomes a
warning, never an exception: one odd object must not stop the metering of a session. A node's rates are computed once
per node version and price sheet (both immutable values), however many sandboxes' snapshots carry it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from labctl.cost import model
from labctl.cost import prices as sheet_mod
from labctl.cost.prices import GIB, NodePrice, PriceSheet
from labctl.grading import receipt
from labctl.grading.snapshot import Container, Node, Resource, Snapshot

UNBILLED_PHASES = ("Succeeded", "Failed")
RUNNING_INSTANCE_PHASES = ("pending", "running")
CLOUD_STORAGE_KINDS = ("Volume", "VolumeSnapshot")
NO_USAGE = "no usage metrics in this cluster: containers are priced by their requests"


@dataclass(frozen=True)
class Priced:
    """A priced snapshot and the meter's figures: burn rate, warnings, pods holding nodes, idle cost per hour."""

    snapshot: Snapshot
    burn_rate_usd_per_hour: Decimal
    usage_known: bool
    warnings: tuple[str, ...] = ()
    running_pods: int = 0
    spot_pods: int = 0
    idle_usd_per_hour: Decimal = Decimal(0)


@dataclass(frozen=True)
class _NodeRates:
    node: Node
    rates: model.UnitRates
    on_demand: model.UnitRates
    gpu_memory_mib: int | None


def is_billed(res: Resource) -> bool:
    """A pod that holds its node's resources: scheduled (``node`` set) and not finished."""
    return res.kind == "Pod" and bool(res.node) and res.phase not in UNBILLED_PHASES


def _node_prices(node: Node, sheet: PriceSheet) -> tuple[NodePrice, NodePrice]:
    labels = node.labels
    cpu = node.capacity.get("cpu")
    memory = Decimal(str(node.capacity["memory"])) / GIB if "memory" in node.capacity else None
    price = sheet.node_price_from_labels(labels, cpu_cores=cpu, memory_gib=memory)
    on_demand = sheet.node_price(sheet_mod.provider_of(labels), sheet_mod.region_of(labels),
                                 sheet_mod.instance_type_of(labels), "on-demand", cpu_cores=cpu, memory_gib=memory,
                                 gpus=sheet_mod.gpu_count_of(labels), gpu_product=sheet_mod.gpu_product_of(labels))
    return price, on_demand


def _demand(container: Container, *, init: bool = False) -> model.ContainerDemand:
    usage = container.usage
    measured = {} if usage is None else {k: v for k, v in (("cpu", usage.cpu), ("memory", usage.memory))
                                         if v is not None}
    return model.ContainerDemand(requests=container.requests, usage=measured or None,
                                 sidecar=init and container.restart_policy == "Always")


def pod_amounts(pod: Resource) -> dict[str, Decimal]:
    """What ``pod`` holds on its node, per resource (its effective requests, usage folded in)."""
    return model.effective_requests([_demand(c) for c in pod.containers],
                                    [_demand(c, init=True) for c in pod.init_containers],
                                    pod_requests=pod.pod_requests, overhead=pod.overhead)


def _pod_hourly(pod: Resource, node: _NodeRates, warnings: list[str]) -> tuple[Decimal, Decimal]:
    amounts = pod_amounts(pod)
    try:
        return (model.pod_hourly_usd(amounts, node.rates, node_gpu_memory_mib=node.gpu_memory_mib).hourly_usd,
                model.pod_hourly_usd(amounts, node.on_demand, node_gpu_memory_mib=node.gpu_memory_mib).hourly_usd)
    except ValueError as exc:
        _warn(warnings, f"Pod/{pod.name}: its GPUs could not be priced ({exc}); priced by CPU and memory only")
        plain = {k: v for k, v in amounts.items() if k in ("cpu", "memory")}
        return (model.pod_hourly_usd(plain, node.rates).hourly_usd,
                model.pod_hourly_usd(plain, node.on_demand).hourly_usd)


def _warn(warnings: list[str], text: str) -> None:
    if text not in warnings:
        warnings.append(text)


def instance_hourly(res: Resource, sheet: PriceSheet, provider: str,
                    warnings: list[str]) -> tuple[Decimal, Decimal]:
    """(hourly, on-demand hourly) of a cloud ``Instance``: its type's sheet row, else a stated fallback with a
    warning, plus the GPUs attached to it (GCP prices them apart from the machine type: the sheet's ``accelerators``,
    else the fallback GPU-hour rate with a warning); nothing while it is not running (stopped instances pay only for
    their volumes)."""
    if res.phase not in RUNNING_INSTANCE_PHASES:
        return Decimal(0), Decimal(0)
    capacity: sheet_mod.CapacityType = res.capacity_type or "on-demand"
    hourly, on_demand = _type_hourly(res, sheet, provider, capacity, warnings)
    for product, count in sorted(res.accelerators.items()):
        attached = sheet.accelerator(provider, res.region, product)
        if attached is not None:
            hourly += count * attached.hourly_usd(capacity)
            on_demand += count * attached.on_demand_hourly_usd
        else:
            rate = sheet.fallback.gpu_hourly_usd
            hourly, on_demand = hourly + count * rate, on_demand + count * rate
            _warn(warnings, f"Instance/{res.name}: {count} attached {product} GPU(s) in {provider} "
                            f"{res.region or '(no region)'} have no accelerators row in the price sheet; priced at "
                            f"the fallback ${rate} per GPU-hour")
    return hourly, on_demand


def _type_hourly(res: Resource, sheet: PriceSheet, provider: str, capacity: sheet_mod.CapacityType,
                 warnings: list[str]) -> tuple[Decimal, Decimal]:
    """(hourly, on-demand hourly) of the instance's type alone: its row, the same type elsewhere, or the dearest."""
    row = sheet.instance(provider, res.region, res.instance_type)
    if row is not None:
        return row.hourly_usd(capacity), row.on_demand_hourly_usd
    same_type = [r for r in sheet.instances if r.provider == provider and r.instance_type == res.instance_type]
    where = f"{res.instance_type or '(no type)'} in {provider} {res.region or '(no region)'}"
    if same_type:  # the same type in another region: near in price, and the market still counts
        near = max(same_type, key=lambda r: r.on_demand_hourly_usd)
        _warn(warnings, f"Instance/{res.name}: {where} is not in the price sheet; priced as in {near.region}")
        return near.hourly_usd(capacity), near.on_demand_hourly_usd
    rows = [r for r in sheet.instances if r.provider == provider] or list(sheet.instances)
    dearest = max(rows, key=lambda r: r.on_demand_hourly_usd)
    _warn(warnings, f"Instance/{res.name}: {where} is not in the price sheet; priced at the dearest on-demand "
                    f"{provider} row ({dearest.instance_type} in {dearest.region}, ${dearest.on_demand_hourly_usd}/h)")
    return dearest.on_demand_hourly_usd, dearest.on_demand_hourly_usd


def address_hourly(sheet: PriceSheet, warnings: list[str]) -> Decimal:
    """A public address per hour: the sheet's ``address`` row, else one fallback vCPU-hour with a warning."""
    if sheet.address is not None:
        return sheet.address.hourly_usd
    _warn(warnings, f"the price sheet has no `address` row; addresses are priced at one fallback vCPU-hour "
                    f"(${sheet.fallback.vcpu_hourly_usd}/h)")
    return sheet.fallback.vcpu_hourly_usd


def _price_node(node: Node, sheet: PriceSheet) -> tuple[_NodeRates | None, str | None]:
    """One node's rates by the sheet (None: it cannot be priced), with the warning that goes with them."""
    try:
        price, on_demand = _node_prices(node, sheet)
        rates, od_rates = model.unit_rates(price), model.unit_rates(on_demand)
    except ValueError as exc:
        return None, f"node {node.name} could not be priced ({exc}); its pods are not billed"
    updated = node.model_copy(update={"hourly_usd": float(price.hourly_usd),
                                      "on_demand_hourly_usd": float(on_demand.hourly_usd),
                                      "price_source": price.source})
    return _NodeRates(node=updated, rates=rates, on_demand=od_rates,
                      gpu_memory_mib=sheet_mod.gpu_memory_mib_of(node.labels)), price.warning


class _PricedNodes:
    """Each node priced once per price sheet. Every sandbox of a cluster carries the same node objects (the snapshot
    builds one per node version), so without this a sweep priced the cluster's nodes again for every sandbox: two
    thirds of a 1,000-sandbox sweep. Keyed by the identity of the node and of the sheet, both kept with the entry
    (so an identity is never reused while its entry lives); bounded; safe across the sweep's and requests' threads."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, int], tuple[Node, PriceSheet, _NodeRates | None, str | None]] = \
            OrderedDict()

    def of(self, node: Node, sheet: PriceSheet) -> tuple[_NodeRates | None, str | None]:
        key = (id(node), id(sheet))
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is node and hit[1] is sheet:
                self._entries.move_to_end(key)
                return hit[2], hit[3]
        rates, warning = _price_node(node, sheet)
        with self._lock:
            self._entries[key] = (node, sheet, rates, warning)
            while len(self._entries) > self.kept:
                self._entries.popitem(last=False)
        return rates, warning


_PRICED_NODES = _PricedNodes(kept=4096)


def _price_nodes(nodes: Sequence[Node], sheet: PriceSheet, warnings: list[str]) -> dict[str, _NodeRates]:
    priced: dict[str, _NodeRates] = {}
    for node in nodes:
        rates, warning = _PRICED_NODES.of(node, sheet)
        if warning:
            _warn(warnings, warning)
        if rates is not None:
            priced[node.name] = rates
    return priced


def price(snapshot: Snapshot, sheet: PriceSheet) -> Priced:
    """``snapshot`` priced (a new snapshot), with its burn rate (USD per hour) and the pricing warnings."""
    warnings: list[str] = []
    nodes = _price_nodes(snapshot.nodes, sheet, warnings)
    burn = Decimal(0)
    running = spot = 0
    resources: list[Resource] = []
    for res in snapshot.resources:
        if is_billed(res) and res.node in nodes:
            node = nodes[res.node]
            hourly, on_demand_hourly = _pod_hourly(res, node, warnings)
            running += 1
            spot += node.node.capacity_type == "spot"
        elif res.kind == "PersistentVolumeClaim":
            hourly = on_demand_hourly = model.pvc_hourly_usd(res.storage or 0, sheet)
        elif res.kind == "Service" and res.service_type == "LoadBalancer":
            hourly = on_demand_hourly = model.load_balancer_hourly_usd(sheet)
        elif res.kind == "Instance" and snapshot.session.provider != "kubernetes":
            hourly, on_demand_hourly = instance_hourly(res, sheet, snapshot.session.provider, warnings)
        elif res.kind in CLOUD_STORAGE_KINDS and snapshot.session.provider != "kubernetes":
            hourly = on_demand_hourly = model.volume_hourly_usd(
                res.storage or 0, sheet.disk_gb_month_usd(snapshot.session.provider, res.region, res.volume_type))
        elif res.kind == "Address" and snapshot.session.provider != "kubernetes":
            hourly = on_demand_hourly = address_hourly(sheet, warnings)
        else:
            resources.append(res)
            continue
        burn += hourly
        resources.append(res.model_copy(update={
            "hourly_usd": float(hourly), "on_demand_hourly_usd": float(on_demand_hourly),
            "cost_usd": float(hourly * Decimal(str(res.running_hours or 0)))}))
    usage_known = snapshot.cost.usage_source in ("simulator", "metrics")
    if not usage_known and snapshot.session.provider == "kubernetes":
        warnings.append(NO_USAGE)
    priced = snapshot.model_copy(update={
        "nodes": [nodes[n.name].node if n.name in nodes else n for n in snapshot.nodes], "resources": resources,
        "cost": snapshot.cost.model_copy(update={"burn_rate_usd_per_hour": float(burn)})})
    idle = sum((Decimal(str(r.hourly_usd)) for r in priced.resources
                if r.hourly_usd and receipt.idle_reason(priced, r)), Decimal(0))
    return Priced(snapshot=priced, burn_rate_usd_per_hour=burn, usage_known=usage_known, warnings=tuple(warnings),
                  running_pods=running, spot_pods=spot, idle_usd_per_hour=idle)
