"""OpenCost's cost model over the price sheet: node price -> unit rates -> container, PVC and load balancer cost.

In docs/FINOPS.md section 4: a node's hourly price is split into a price per vCPU-hour, per GiB-hour of memory and
per GPU-hour, in the ratio of OpenCost's fallback unit rates and scaled so that the parts add up exactly to the node
price (:func:`unit_rates`). A container then pays, per hour, max(request, usage) of CPU and memory times those rates
(what it reserved, or more when it used more), plus its GPUs by request: whole GPUs at the GPU-hour rate, MIG slices
at their share of it (:func:`mig_fraction`, max(compute share g/7, memory share) unless the sheet overrides it). PVCs
cost their requested size at the sheet's storage rate, a LoadBalancer Service the sheet's hourly rate.

A pod is billed for what the scheduler holds for it on its node: its **effective requests** per resource
(:func:`effective_requests`), the larger of its longest-running init step (an init container plus the sidecars started
before it) and its steady state (every app container and sidecar), plus the RuntimeClass overhead; pod-level requests,
when set, are the floor. Measured use folds in per container (max(request, usage)), so a container that requests
nothing but uses cores pays for the cores. :func:`pod_hourly_usd` prices those amounts.

The meter turns hourly figures into money with :func:`accrue` (elapsed time x burn rate), and looks ahead with
:func:`forecast` and :func:`budget_share`. Money is :class:`~decimal.Decimal` throughout so a ledger adds up to the
cent; every function is pure and takes ``now`` from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from labctl.catalog.models import parse_quantity
from labctl.cost.prices import GIB, HOURS_PER_MONTH, MIG_PROFILE, NodePrice, PriceSheet, to_decimal

GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
SECONDS_PER_HOUR = Decimal(3600)

Amount = Decimal | int | float | str


@dataclass(frozen=True)
class UnitRates:
    """A node's hourly price split into unit rates (USD per hour), and the parts that sum to the node price.

    ``cpu_part_usd + memory_part_usd + gpu_part_usd == node_hourly_usd`` exactly; each rate is its part divided by
    the node's count of that unit (a unit the node has none of gets the scaled weight, so the rate is still defined).
    """

    node_hourly_usd: Decimal
    cpu_core_hourly_usd: Decimal
    memory_gib_hourly_usd: Decimal
    gpu_hourly_usd: Decimal
    cpu_part_usd: Decimal
    memory_part_usd: Decimal
    gpu_part_usd: Decimal
    cpu_cores: Decimal
    memory_gib: Decimal
    gpus: int
    capacity_type: str
    gpu_product: str | None = None
    mig_overrides: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class CostBreakdown:
    """What one container costs per hour, by resource, and the amounts it is billed for."""

    cpu_cores: Decimal          # max(request, usage)
    memory_gib: Decimal         # max(request, usage)
    gpus: Decimal               # whole-GPU equivalents: whole GPUs plus MIG slices at their share
    cpu_hourly_usd: Decimal
    memory_hourly_usd: Decimal
    gpu_hourly_usd: Decimal
    hourly_usd: Decimal
    usage_known: bool           # False: priced by requests alone (no metrics)
    unpriced: tuple[str, ...] = ()  # extended resources requested that the model does not price


def unit_rates(node_price: NodePrice, *, cpu_cores: Amount | None = None, memory_gib: Amount | None = None,
               gpus: int | None = None) -> UnitRates:
    """Split ``node_price.hourly_usd`` into per-vCPU, per-GiB and per-GPU hourly rates (OpenCost's method).

    With node price P, capacity c vCPUs, m GiB and g GPUs, and the fallback unit rates r_c, r_m, r_g as weights::

        W = c * r_c + m * r_m + g * r_g          (what the node would cost at the fallback rates)
        k = P / W                                 (how much dearer or cheaper this node is than that)
        cpu rate = k * r_c,  memory rate = k * r_m,  GPU rate = k * r_g
        parts:  cpu = P * c r_c / W,  memory = P * m r_m / W,  GPU = P - cpu - memory

    so c * cpu rate + m * memory rate + g * GPU rate = k * W = P; the last part with a non-zero count takes the
    rounding remainder so the parts sum to P exactly. The capacity defaults to the node price's (the sheet row's, or
    the capacity the fallback was priced from); pass the Node's own capacity when it differs. ``gpus`` counts
    physical GPUs (the ``nvidia.com/gpu.count`` label), also on a MIG node that advertises slices instead.
    """
    cores = to_decimal(cpu_cores) if cpu_cores is not None else node_price.vcpu
    gib = to_decimal(memory_gib) if memory_gib is not None else node_price.memory_gib
    gpu_count = gpus if gpus is not None else node_price.gpus
    if cores < 0 or gib < 0 or gpu_count < 0:
        raise ValueError(f"capacity cannot be negative (cpu {cores}, memory {gib} GiB, gpus {gpu_count})")
    weights = node_price.weights
    price = node_price.hourly_usd
    counts = (cores, gib, Decimal(gpu_count))
    rates = (weights.vcpu_hourly_usd, weights.memory_gib_hourly_usd, weights.gpu_hourly_usd)
    weighted = [count * rate for count, rate in zip(counts, rates, strict=True)]
    total = sum(weighted, Decimal(0))
    if total <= 0:
        raise ValueError(f"cannot split the price of {node_price.instance_type}: the node has no capacity")
    parts = [price * w / total for w in weighted]
    last = max(index for index, count in enumerate(counts) if count > 0)
    parts[last] = price - sum((p for i, p in enumerate(parts) if i != last), Decimal(0))
    scale = price / total
    unit = [part / count if count > 0 else rate * scale
            for part, count, rate in zip(parts, counts, rates, strict=True)]
    return UnitRates(
        node_hourly_usd=price, cpu_core_hourly_usd=unit[0], memory_gib_hourly_usd=unit[1], gpu_hourly_usd=unit[2],
        cpu_part_usd=parts[0], memory_part_usd=parts[1], gpu_part_usd=parts[2], cpu_cores=cores, memory_gib=gib,
        gpus=gpu_count, capacity_type=node_price.capacity_type, gpu_product=node_price.gpu_product,
        mig_overrides=dict(node_price.mig_overrides))


# --- MIG ----------------------------------------------------------------------------------------------------------


def mig_profile_of(resource: str) -> str | None:
    """``"1g.10gb"`` for the extended resource ``nvidia.com/mig-1g.10gb``; None for any other resource."""
    return resource.removeprefix(MIG_RESOURCE_PREFIX) if resource.startswith(MIG_RESOURCE_PREFIX) else None


def mig_share(profile: str, gpu_memory_mib: int) -> Fraction:
    """The exact share of a whole GPU one MIG slice costs: max(g/7, slice memory / GPU memory), at most 1.

    Compute is ``g`` sevenths of the GPU; memory is the profile's (``10gb`` of ``1g.10gb``) over the GPU's memory in
    whole GB, rounded up from the ``nvidia.com/gpu.memory`` label (MiB): 81920 and 81559 MiB are both an 80 GB GPU,
    as the profile names count it. Raises ValueError for a malformed profile or one larger than the GPU.
    """
    match = MIG_PROFILE.match(profile)
    if match is None:
        raise ValueError(f"{profile!r} is not a MIG profile such as '1g.10gb' (<g>g.<memory>gb, g from 1 to 7)")
    if gpu_memory_mib <= 0:
        raise ValueError(f"GPU memory must be positive, got {gpu_memory_mib} MiB")
    gpu_gb = math.ceil(Fraction(gpu_memory_mib, 1024))
    slice_gb = int(match["gb"])
    if slice_gb > gpu_gb:
        raise ValueError(f"MIG profile {profile} needs {slice_gb} GB but the GPU has {gpu_memory_mib} MiB")
    return max(Fraction(int(match["g"]), 7), Fraction(slice_gb, gpu_gb))


def mig_fraction(profile: str, gpu_memory_mib: int) -> float:
    """:func:`mig_share` as a float (for display and metrics; money uses the exact share)."""
    return float(mig_share(profile, gpu_memory_mib))


def _slice_share(profile: str, rates: UnitRates, gpu_memory_mib: int | None) -> Decimal | Fraction:
    override = rates.mig_overrides.get(profile)
    if override is not None:
        return override
    if gpu_memory_mib is None:
        raise ValueError(f"pricing a {profile} MIG slice needs the GPU's memory (the nvidia.com/gpu.memory label)")
    return mig_share(profile, gpu_memory_mib)


def _times(amount: Decimal, share: Decimal | Fraction) -> Decimal:
    """``amount`` x ``share``, exact for a Fraction (x 1 / 7 rather than x 0.142857...)."""
    if isinstance(share, Fraction):
        return amount * share.numerator / share.denominator
    return amount * share


def mig_slice_hourly_usd(profile: str, rates: UnitRates, *, gpu_memory_mib: int | None) -> Decimal:
    """The hourly price of one ``nvidia.com/mig-<profile>`` slice on the node ``rates`` belong to: the sheet's
    override share for the node's GPU product when there is one, else :func:`mig_share`, times the GPU-hour rate."""
    return _times(rates.gpu_hourly_usd, _slice_share(profile, rates, gpu_memory_mib))


# --- containers, PVCs, load balancers -----------------------------------------------------------------------------


def _amount(value: Amount) -> Decimal:
    """A Kubernetes quantity (``"500m"``, ``"2Gi"``) or a number in base units (cores, bytes, count)."""
    if isinstance(value, str):
        return parse_quantity(value.strip())
    return to_decimal(value)


def _count(resource: str, value: Amount) -> int:
    amount = _amount(value)
    if amount < 0 or amount != amount.to_integral_value():
        raise ValueError(f"{resource} is requested in whole units, got {value!r}")
    return int(amount)


def container_hourly_usd(requests: Mapping[str, Amount], usage: Mapping[str, Amount] | None, rates: UnitRates, *,
                         node_gpu_memory_mib: int | None = None) -> CostBreakdown:
    """What one container costs per hour on the node ``rates`` belong to (OpenCost's allocation).

    ``requests`` and ``usage`` map resource names to Kubernetes quantities (``{"cpu": "500m", "memory": "1Gi"}``) or
    numbers in base units (cores, bytes). CPU and memory are priced at max(request, usage); with ``usage`` None or
    empty, at the requests alone (``usage_known`` False, so the meter can say so). GPUs are priced by request:
    ``nvidia.com/gpu`` at the GPU-hour rate, ``nvidia.com/mig-<profile>`` at :func:`mig_slice_hourly_usd` (needs
    ``node_gpu_memory_mib`` unless the sheet overrides the profile). Other extended resources are listed in
    ``unpriced``.
    """
    observed = usage or {}
    cpu = max(_amount(requests.get("cpu", 0)), _amount(observed.get("cpu", 0)))
    memory_bytes = max(_amount(requests.get("memory", 0)), _amount(observed.get("memory", 0)))
    if cpu < 0 or memory_bytes < 0:
        raise ValueError(f"negative cpu or memory: {cpu} cores, {memory_bytes} bytes")
    memory_gib = memory_bytes / GIB
    gpus = Decimal(0)
    gpu_usd = Decimal(0)
    unpriced: list[str] = []
    for resource, value in sorted(requests.items()):
        profile = mig_profile_of(resource)
        if resource == GPU_RESOURCE:
            count = _count(resource, value)
            gpus += count
            gpu_usd += count * rates.gpu_hourly_usd
        elif profile is not None:
            count = _count(resource, value)
            if count == 0:
                continue
            share = _slice_share(profile, rates, node_gpu_memory_mib)
            gpu_usd += count * _times(rates.gpu_hourly_usd, share)
            gpus += _times(Decimal(count), share)
        elif "/" in resource:
            unpriced.append(resource)
    cpu_usd = cpu * rates.cpu_core_hourly_usd
    memory_usd = memory_gib * rates.memory_gib_hourly_usd
    return CostBreakdown(
        cpu_cores=cpu, memory_gib=memory_gib, gpus=gpus, cpu_hourly_usd=cpu_usd, memory_hourly_usd=memory_usd,
        gpu_hourly_usd=gpu_usd, hourly_usd=cpu_usd + memory_usd + gpu_usd, usage_known=bool(observed),
        unpriced=tuple(unpriced))


@dataclass(frozen=True)
class ContainerDemand:
    """One container's requests and (when measured) usage, by resource; ``sidecar`` for a restartable init
    container (``restartPolicy: Always``), which runs beside the app containers for the pod's whole life."""

    requests: Mapping[str, Amount]
    usage: Mapping[str, Amount] | None = None
    sidecar: bool = False


def _held(demand: ContainerDemand) -> dict[str, Decimal]:
    """max(request, usage) per resource (usage counts for CPU and memory only; extended resources by request)."""
    amounts = {name: _amount(value) for name, value in demand.requests.items()}
    for name in ("cpu", "memory"):
        used = (demand.usage or {}).get(name)
        if used is not None:
            amounts[name] = max(amounts.get(name, Decimal(0)), _amount(used))
    return amounts


def _add(total: dict[str, Decimal], more: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {name: total.get(name, Decimal(0)) + more.get(name, Decimal(0)) for name in {*total, *more}}


def _larger(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {name: max(a.get(name, Decimal(0)), b.get(name, Decimal(0))) for name in {*a, *b}}


def effective_requests(containers: Sequence[ContainerDemand], init_containers: Sequence[ContainerDemand] = (), *,
                       pod_requests: Mapping[str, Amount] | None = None,
                       overhead: Mapping[str, Amount] | None = None) -> dict[str, Decimal]:
    """What a pod holds on its node, per resource, as the scheduler computes it (with usage folded in).

    Steady state: the sum of every app container and every sidecar. Each init step: a regular init container plus
    the sidecars declared before it (they are already running), or, for a sidecar, the sidecars up to it. The pod
    holds the larger of the steady state and its largest init step, per resource; pod-level ``spec.resources``
    requests (CPU, memory) are a floor, and the RuntimeClass ``overhead`` is added on top::

        >>> app = ContainerDemand({"cpu": "100m"})
        >>> init = ContainerDemand({"cpu": "2"})
        >>> effective_requests([app], [init])["cpu"]
        Decimal('2')
        >>> sidecar = ContainerDemand({"cpu": "500m"}, sidecar=True)
        >>> float(effective_requests([app], [sidecar, init])["cpu"])     # max(0.1 + 0.5, 0.5 + 2)
        2.5
    """
    steady: dict[str, Decimal] = {}
    for demand in containers:
        steady = _add(steady, _held(demand))
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for demand in init_containers:
        held = _held(demand)
        if demand.sidecar:
            steady = _add(steady, held)
            sidecars = _add(sidecars, held)
            step = sidecars
        else:
            step = _add(held, sidecars)
        init_peak = _larger(init_peak, step)
    total = _larger(steady, init_peak)
    floor = {name: _amount(value) for name, value in (pod_requests or {}).items() if name in ("cpu", "memory")}
    total = _larger(total, floor)
    return _add(total, {name: _amount(value) for name, value in (overhead or {}).items()})


def pod_hourly_usd(amounts: Mapping[str, Amount], rates: UnitRates, *,
                   node_gpu_memory_mib: int | None = None) -> CostBreakdown:
    """What a pod holding ``amounts`` (its :func:`effective_requests`) costs per hour on the node of ``rates``."""
    return container_hourly_usd(amounts, None, rates, node_gpu_memory_mib=node_gpu_memory_mib)


def pvc_hourly_usd(storage_bytes: Amount, sheet: PriceSheet) -> Decimal:
    """A PVC by its requested size: GB (2^30 bytes) x the sheet's GB-month rate / 730 hours."""
    return volume_hourly_usd(storage_bytes, sheet.storage_gb_month_usd)


def volume_hourly_usd(storage_bytes: Amount, gb_month_usd: Decimal) -> Decimal:
    """A volume by its size: GB (2^30 bytes) x a GB-month rate / 730 hours."""
    size = _amount(storage_bytes)
    if size < 0:
        raise ValueError(f"storage cannot be negative, got {storage_bytes!r}")
    return size / GIB * gb_month_usd / HOURS_PER_MONTH


def load_balancer_hourly_usd(sheet: PriceSheet) -> Decimal:
    """A Service of type LoadBalancer, per hour."""
    return sheet.load_balancer_hourly_usd


# --- money over time ----------------------------------------------------------------------------------------------


def accrue(previous_usd: Amount, hourly_usd: Amount, elapsed_seconds: Amount) -> Decimal:
    """The ledger after ``elapsed_seconds`` at ``hourly_usd``: previous + rate x seconds / 3600."""
    elapsed = to_decimal(elapsed_seconds)
    rate = to_decimal(hourly_usd)
    if elapsed < 0:
        raise ValueError(f"elapsed time cannot be negative, got {elapsed_seconds!r} s (did the clock go back?)")
    if rate < 0:
        raise ValueError(f"a burn rate cannot be negative, got {hourly_usd!r}")
    return to_decimal(previous_usd) + rate * elapsed / SECONDS_PER_HOUR


def _aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone, got the naive {moment.isoformat()}")


def forecast(accrued: Amount, burn_rate: Amount, now: datetime, expires_at: datetime) -> Decimal:
    """The spend at expiry if the burn rate stays: accrued + rate x the hours left (none once expired); hours are
    elapsed time, so a night that changes the clock counts its real length."""
    _aware("now", now)
    _aware("expires_at", expires_at)
    # In UTC: subtracting two datetimes of the same zone compares wall clocks and is off by an hour across DST.
    left = max(Decimal(0), to_decimal((expires_at.astimezone(UTC) - now.astimezone(UTC)).total_seconds()))
    return accrue(accrued, burn_rate, left)


def budget_share(accrued: Amount, budget_usd: Amount) -> Decimal:
    """The share of the budget spent: 0.5 is half, 1 is all of it (compare with a threshold's percent / 100)."""
    budget = to_decimal(budget_usd)
    if budget <= 0:
        raise ValueError(f"a budget must be positive, got {budget_usd!r}")
    return to_decimal(accrued) / budget
