"""Pure placement: which cluster a new sandbox goes to, and why each other cluster was refused.

A cluster has room for a lab when every pod the lab's starters make fits on a schedulable node that its node selector
and tolerations allow (the node's allocatable minus the requests of the pods bound to it and of the starts still in
flight there, GPUs and MIG slices included), and the lab's quota (cpu, memory, GPUs, MIG slices: what the learner may
grow to) fits in the cluster's free capacity. Among the clusters with room the cheapest wins: the hourly price, by
the price sheet, of the starters' pods on the nodes they would take (each pod on its cheapest fitting node); a tie
goes to the cluster listed first. When no cluster has room now, the start goes to the cheapest cluster that would
hold it were it empty, and waits there (``waiting``: its pods stay Pending until pods end or an autoscaler adds
nodes); only when none would (no cluster answers, or no node anywhere could run a pod) no cluster is chosen. The
decision names each refused cluster's reason, e.g.
``b: no node in pool gpu-a100-ondemand has 1 free nvidia.com/gpu for Deployment/llm-inference#2 (most free: 0)``.

No I/O here: the rooms (capacity summaries) and the holds of starts in flight come in, a :class:`Decision` goes out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from labctl.cost import model
from labctl.cost.prices import PriceError, PriceSheet, gpu_memory_mib_of
from labctl.ports import ClusterRoom, LabNeeds, NodeRoom, PodNeed

GIB = Decimal(2**30)
UNPRICED = Decimal("Infinity")  # a node the sheet cannot price is taken only when nothing priced fits
BLOCKING = ("NoSchedule", "NoExecute")
POOL_LABELS = ("labctl.dev/pool", "eks.amazonaws.com/nodegroup", "cloud.google.com/gke-nodepool",
               "karpenter.sh/nodepool", "node.kubernetes.io/instance-type")


@dataclass(frozen=True)
class Fit:
    """A cluster with room: what the lab's starters would cost there per hour, and the node each pod would take."""

    cluster: str
    hourly_usd: Decimal
    nodes: Mapping[str, str]  # pod -> node


@dataclass(frozen=True)
class Decision:
    chosen: str | None
    fits: tuple[Fit, ...]
    refusals: Mapping[str, str]  # cluster -> why it has no room now
    waiting: bool = False  # no cluster has room now: ``chosen`` holds it once pods end or nodes are added

    def reasons(self) -> str:
        """Every refused cluster's reason, one after another ("a: ...; b: ...")."""
        return "; ".join(f"{cluster}: {why}" for cluster, why in self.refusals.items())


def decide(*, needs: LabNeeds, rooms: Sequence[ClusterRoom], sheet: PriceSheet,
           held: Mapping[str, Sequence[LabNeeds]] | None = None) -> Decision:
    """The cheapest cluster of ``rooms`` with room for ``needs`` (``held``: per cluster, the needs of starts placed
    there and not yet seen bound in its room)."""
    fits: list[Fit] = []
    refusals: dict[str, str] = {}
    for room in rooms:
        verdict = _fit(room, needs, sheet=sheet, held=(held or {}).get(room.name, ()))
        if isinstance(verdict, Fit):
            fits.append(verdict)
        else:
            refusals[room.name] = verdict
    order = {room.name: index for index, room in enumerate(rooms)}
    best = min(fits, key=lambda f: (f.hourly_usd, order[f.cluster]), default=None)
    if best is not None:
        return Decision(chosen=best.cluster, fits=tuple(fits), refusals=refusals)
    # Full everywhere: the cheapest cluster that could hold it empty takes it, its pods Pending until room comes
    # (pods end, or an autoscaler adds nodes for them); none such (no cluster answers, no node anywhere could run
    # a pod): no cluster can take it.
    empty = [verdict for room in rooms if room.error is None
             and isinstance(verdict := _fit(_emptied(room), needs, sheet=sheet, held=()), Fit)]
    later = min(empty, key=lambda f: (f.hourly_usd, order[f.cluster]), default=None)
    return Decision(chosen=later.cluster if later else None, fits=tuple(empty), refusals=refusals,
                    waiting=later is not None)


def _emptied(room: ClusterRoom) -> ClusterRoom:
    """The cluster as if no pod were bound to it (its nodes, their allocatable)."""
    return dataclasses.replace(room, nodes=tuple(dataclasses.replace(node, requested={}) for node in room.nodes))


def _fit(room: ClusterRoom, needs: LabNeeds, *, sheet: PriceSheet, held: Sequence[LabNeeds]) -> Fit | str:
    if room.error is not None:
        return f"did not answer ({room.error})"
    nodes = [node for node in room.nodes if node.schedulable]
    if not nodes:
        return "has no schedulable node (every node is cordoned or not Ready)"
    free = {node.name: {r: node.free(r) for r in node.allocatable} for node in nodes}
    for earlier in held:  # starts in flight take their room first, as their pods will
        for pod in earlier.pods:
            target = _cheapest(pod, nodes, free, sheet)
            if isinstance(target, tuple):
                _take(free[target[0].name], pod)
    # The quota is what the sandbox may grow to, its starters included: judged on the room before they take theirs.
    totals = {resource: sum((room_free.get(resource, Decimal(0)) for room_free in free.values()), Decimal(0))
              for resource in needs.quota}
    placed: dict[str, str] = {}
    hourly = Decimal(0)
    for pod in needs.pods:
        target = _cheapest(pod, nodes, free, sheet)
        if isinstance(target, str):
            return target
        node, cost = target
        _take(free[node.name], pod)
        placed[pod.name] = node.name
        hourly += cost
    for resource, amount in sorted(needs.quota.items()):
        if amount > 0 and totals[resource] < amount:
            return (f"the lab's quota of {_show(resource, amount)} {resource} does not fit: the cluster has "
                    f"{_show(resource, max(totals[resource], Decimal(0)))} free")
    return Fit(cluster=room.name, hourly_usd=hourly, nodes=placed)


def _allowed(pod: PodNeed, node: NodeRoom) -> bool:
    if any(node.labels.get(key) != value for key, value in pod.node_selector.items()):
        return False
    return all(any(t.tolerates(taint) for t in pod.tolerations) for taint in node.taints if taint.effect in BLOCKING)


def _cheapest(pod: PodNeed, nodes: Sequence[NodeRoom], free: Mapping[str, Mapping[str, Decimal]],
              sheet: PriceSheet) -> tuple[NodeRoom, Decimal] | str:
    """The node where ``pod`` fits at the lowest price (ties: by name), or why it fits nowhere."""
    allowed = [node for node in nodes if _allowed(pod, node)]
    if not allowed:
        selector = ", ".join(f"{k}={v}" for k, v in sorted(pod.node_selector.items())) or "none"
        return f"no schedulable node matches {pod.name}'s node selector ({selector}) and tolerations"
    fitting = [node for node in allowed if all(free[node.name].get(r, Decimal(0)) >= amount
                                               for r, amount in pod.requests.items() if amount > 0)]
    if not fitting:
        return _short(pod, allowed, free)
    priced = sorted(((node, _price(pod, node, sheet)) for node in fitting), key=lambda p: (p[1], p[0].name))
    return priced[0]


def _short(pod: PodNeed, allowed: Sequence[NodeRoom], free: Mapping[str, Mapping[str, Decimal]]) -> str:
    """Why no allowed node fits: the first resource (extended resources first: GPUs, MIG slices) none has enough of."""
    pools = sorted({_pool(node) for node in allowed})
    where = f"pool {pools[0]}" if len(pools) == 1 else f"pools {', '.join(pools)}"
    wanted = sorted((r for r, a in pod.requests.items() if a > 0), key=lambda r: (r in ("cpu", "memory"), r))
    for resource in wanted:
        amount = pod.requests[resource]
        most = max(free[node.name].get(resource, Decimal(0)) for node in allowed)
        if most < amount:
            return (f"no node in {where} has {_show(resource, amount)} free {resource} for {pod.name} "
                    f"(most free: {_show(resource, max(most, Decimal(0)))})")
    return f"no node in {where} has room for all of {pod.name}'s requests at once"


def _pool(node: NodeRoom) -> str:
    return next((node.labels[key] for key in POOL_LABELS if node.labels.get(key)), node.name)


def _take(free: dict[str, Decimal], pod: PodNeed) -> None:
    for resource, amount in pod.requests.items():
        free[resource] = free.get(resource, Decimal(0)) - amount


def _price(pod: PodNeed, node: NodeRoom, sheet: PriceSheet) -> Decimal:
    """What ``pod`` would cost per hour on ``node``: OpenCost's split of the node's price by the pod's requests."""
    try:
        price = sheet.node_price_from_labels(node.labels, cpu_cores=node.allocatable.get("cpu"),
                                             memory_gib=node.allocatable.get("memory", Decimal(0)) / GIB)
        rates = model.unit_rates(price)
        return model.pod_hourly_usd(pod.requests, rates,
                                    node_gpu_memory_mib=gpu_memory_mib_of(node.labels)).hourly_usd
    except (PriceError, ValueError):  # the sheet cannot price this node (or a MIG slice without the GPU's memory)
        return UNPRICED


def _show(resource: str, amount: Decimal) -> str:
    if resource == "memory" or resource.endswith("storage"):
        return f"{format((amount / GIB).normalize(), 'f')}Gi"
    return format(amount.normalize(), "f")
