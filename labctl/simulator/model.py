"""One step of the simulated world: a lab's demand and a sandbox's pods in; each pod's usage and each workload's
requests offered, served and dropped out.

Over a step (the real interval ``(now - seconds, now]``) a workload's demand (:mod:`labctl.simulator.clock`) is spread
evenly over its Ready pods. Each pod serves its share up to its capacity, ``max_utilisation`` x what its CPU allows
(``cpu cores / cpu_core_seconds`` requests per second) and what its GPU allows (``gpu share / gpu_seconds``), and
drops the rest; a demand that needs no CPU or GPU is not capped by it. A pod without a CPU limit gets an equal
share of its node's allocatable CPU with the other pods on that node that have no limit either.

A pod is failing (OOM) for the whole step, and serves nothing, when at the step's peak load its memory need (base +
``memory_per_rps`` x the rate it serves) exceeds its memory limit, or its base GPU memory exceeds the memory of its
GPU or MIG slice (a pod that is not Ready is checked at no load). A pod that is not Ready serves nothing and holds
its base memory. When no pod is Ready, everything offered is dropped. Counts are exact fractions: per workload,
``served + dropped == offered`` holds exactly.

The usage of a pod is its average over the step, as a metrics window reports it: CPU cores, memory bytes, GPU
engine-active (``DCGM_FI_PROF_GR_ENGINE_ACTIVE``, 0-1 of the pod's GPU or slice) and GPU memory used
(``DCGM_FI_DEV_FB_USED``, MiB). A failing pod reports what it held when it failed (memory up to its limit, GPU
memory up to its slice) and no compute. Pods no declaration matches are idle: zero usage.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from labctl.catalog.models import Demand, WorkloadDemand
from labctl.simulator import clock

GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-(?P<g>[1-7])g\.(?P<gb>\d+)gb$")
MIB = 2**20

PodStatus = Literal["serving", "not-ready", "oom", "idle"]  # idle: no declaration matches the pod


def _exact(value: Fraction | Decimal | float | int) -> Fraction:
    """A number as an exact fraction: floats by their decimal text (0.1 is 1/10, not the binary neighbour)."""
    if isinstance(value, Fraction):
        return value
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


@dataclass(frozen=True)
class PodState:
    """What the simulator needs to know of one pod (from an inventory the learner cannot write).

    ``workload`` is the workload that owns the pod as ``Kind/name`` (the caller resolves a Deployment's pods through
    their ReplicaSet) and ``labels`` its labels, to match it to a demand declaration. ``cpu_limit_cores`` None
    means no CPU limit (the node's allocatable share applies). ``gpu_share`` is the pod's GPU as a share of whole
    GPUs (1 per GPU, ``g/7`` per MIG slice, 0 for none; see :func:`gpu_of`) and ``gpu_memory_mib`` that GPU's or
    slice's memory.
    ``container`` is the container whose usage is written.
    """

    name: str
    container: str
    node: str
    ready: bool
    cpu_limit_cores: Fraction | None
    memory_limit_bytes: int | None
    gpu_share: Fraction = Fraction(0)
    gpu_memory_mib: int = 0
    workload: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def gpu_of(resource: str, count: int, *, device_memory_mib: int) -> tuple[Fraction, int]:
    """(GPU share, GPU memory in MiB) of ``count`` units of ``resource`` on a GPU of ``device_memory_mib``.

    ``nvidia.com/gpu`` is whole GPUs (time-slicing replicas are not modelled); ``nvidia.com/mig-<g>g.<m>gb`` is
    ``g/7`` of a GPU and the profile's memory (``<m>`` GB, 1024 MiB each) per slice. Anything else: no GPU.

    >>> gpu_of("nvidia.com/mig-3g.40gb", 1, device_memory_mib=81920)
    (Fraction(3, 7), 40960)
    """
    if count < 0:
        raise ValueError(f"a pod cannot hold {count} of {resource}")
    if resource == GPU_RESOURCE:
        return Fraction(count), count * device_memory_mib
    match = MIG_RESOURCE.match(resource)
    if match is None:
        return Fraction(0), 0
    return Fraction(int(match["g"]), 7) * count, int(match["gb"]) * 1024 * count


@dataclass(frozen=True)
class PodResult:
    """One pod over one step: its share of the demand and its usage (averages over the step)."""

    name: str
    container: str
    status: PodStatus
    offered: Fraction
    served: Fraction
    dropped: Fraction
    capacity_rps: Fraction | None          # what the pod can serve per second (None: not capped)
    cpu_cores: float
    memory_bytes: float
    gpu_engine_active: float               # DCGM_FI_PROF_GR_ENGINE_ACTIVE: 0-1 of the pod's GPU or slice
    gpu_memory_used_mib: float             # DCGM_FI_DEV_FB_USED
    has_gpu: bool
    reason: str | None = None              # why it is failing


@dataclass(frozen=True)
class WorkloadResult:
    """One declared workload over one step."""

    key: str
    offered: Fraction
    served: Fraction
    dropped: Fraction
    pods: tuple[PodResult, ...]

    @property
    def failing(self) -> tuple[str, ...]:
        """The pods that failed (OOM) in this step."""
        return tuple(p.name for p in self.pods if p.status == "oom")


@dataclass(frozen=True)
class Step:
    """The simulated world over the real interval (``started``, ``ended``]."""

    started: datetime
    ended: datetime
    simulated_start: Fraction                # the simulated clock at ``started``, seconds since Monday 00:00
    simulated_end: Fraction
    workloads: tuple[WorkloadResult, ...]
    idle: tuple[PodResult, ...]              # pods no declaration matches

    def usage(self) -> dict[str, dict[str, dict[str, float]]]:
        """The usage to write: pod -> container -> resource -> value (``cpu`` cores, ``memory`` bytes and, for
        pods with a GPU, ``nvidia.com/gpu`` as the engine-active share)."""
        written: dict[str, dict[str, dict[str, float]]] = {}
        for pod in self.pods():
            values = {"cpu": pod.cpu_cores, "memory": pod.memory_bytes}
            if pod.has_gpu:
                values[GPU_RESOURCE] = pod.gpu_engine_active
            written[pod.name] = {pod.container: values}
        return written

    def pods(self) -> tuple[PodResult, ...]:
        """Every pod of the step, declared workloads first."""
        return tuple(p for w in self.workloads for p in w.pods) + self.idle

    def workload(self, key: str) -> WorkloadResult:
        """The result of the workload named ``key`` (KeyError naming the known ones)."""
        for result in self.workloads:
            if result.key == key:
                return result
        raise KeyError(f"no workload {key!r} in this step; the step has {', '.join(w.key for w in self.workloads)}")


def matches(declaration: WorkloadDemand, pod: PodState) -> bool:
    """Whether ``declaration`` targets ``pod``: by its controller, or all of the selector's labels."""
    if declaration.workload is not None:
        return pod.workload == declaration.workload
    return all(pod.labels.get(k) == v for k, v in (declaration.selector or {}).items())


def step(demand: Demand, pods: Sequence[PodState], *, node_cpu_cores: Mapping[str, Fraction | float],
         started_at: datetime, now: datetime, seconds: Fraction | float) -> Step:
    """The simulated world over the ``seconds`` before ``now``, for a session whose simulated clock started at
    ``started_at`` (when it became ready). ``node_cpu_cores`` gives each node's allocatable CPU (needed for pods
    without a CPU limit). Each pod belongs to the first declaration that matches it."""
    length = _positive(seconds)
    since = clock.real_seconds(started_at, now) - length
    return _step(demand, pods, node_cpu_cores, since=since, length=length, ended=now)


@dataclass(frozen=True)
class Slice:
    """One step of a grading window's replay: ``length`` real seconds from ``since`` real seconds into the window
    (the window's real length is ``grading_window / time_scale``; its simulated clock starts at the lab's ``start``)."""

    index: int
    since: Fraction
    length: Fraction

    @property
    def until(self) -> Fraction:
        return self.since + self.length


def window_seconds(demand: Demand) -> Fraction:
    """The real seconds a replay of the lab's ``grading_window`` lasts: the window over ``time_scale``."""
    return Fraction(int(demand.grading_window_delta.total_seconds())) / _exact(demand.time_scale)


def compressed(demand: Demand, *, max_seconds: Fraction | float | None) -> Demand:
    """The demand as a replay plays it: at its own ``time_scale``, or faster when its grading window would last longer
    than ``max_seconds`` real seconds (a lab written at ``time_scale: 1`` with a day's window). Served share and cost
    per 1,000 requests of fixed pods do not depend on the compression (requests and cost both scale with the real
    seconds); only how fast the curve moves under an autoscaler does.

    >>> d = Demand.model_validate({"workloads": [{"workload": "Deployment/w", "rps": 1}]})
    >>> float(window_seconds(compressed(d, max_seconds=300)))
    300.0
    """
    if max_seconds is None or window_seconds(demand) <= _exact(max_seconds):
        return demand
    scale = Fraction(int(demand.grading_window_delta.total_seconds())) / _positive(max_seconds)
    return demand.model_copy(update={"time_scale": Decimal(scale.numerator) / Decimal(scale.denominator)})


def plan(demand: Demand, *, step_seconds: Fraction | float) -> tuple[Slice, ...]:
    """The steps of a replay of the grading window: ``step_seconds`` real seconds each, the last one shorter; they
    join exactly and cover the window.

    >>> d = Demand.model_validate({"time_scale": 1440, "grading_window": "1d",
    ...                            "workloads": [{"workload": "Deployment/w", "rps": 1}]})
    >>> [(float(s.since), float(s.length)) for s in plan(d, step_seconds=25)]
    [(0.0, 25.0), (25.0, 25.0), (50.0, 10.0)]
    """
    length = _positive(step_seconds)
    window = window_seconds(demand)
    slices: list[Slice] = []
    done = Fraction(0)
    while done < window:
        this = min(length, window - done)
        slices.append(Slice(index=len(slices), since=done, length=this))
        done += this
    return tuple(slices)


def play(demand: Demand, pods: Sequence[PodState], *, node_cpu_cores: Mapping[str, Fraction | float],
         part: Slice, anchor: datetime) -> Step:
    """One slice of the grading window played against ``pods``; ``anchor`` is the real moment the replay's clock
    started, so the step is the real interval ``(anchor + since, anchor + until]``."""
    clock.aware("anchor", anchor)
    return _step(demand, pods, node_cpu_cores, since=part.since, length=part.length, ended=anchor + _delta(part.until))


def simulated_at(demand: Demand, seconds: Fraction) -> str:
    """The simulated clock ``seconds`` real seconds into the grading window, as ``Mon 14:00`` (to show progress).

    >>> d = Demand.model_validate({"time_scale": 3600, "start": "Mon 23:00",
    ...                            "workloads": [{"workload": "Deployment/w", "rps": 1}]})
    >>> simulated_at(d, Fraction(2))
    'Tue 01:00'
    """
    at = clock.simulated(seconds, start_seconds=demand.start_seconds, time_scale=_exact(demand.time_scale))
    minute = int(at // 60) % (7 * 24 * 60)
    day, rest = divmod(minute, 24 * 60)
    return f"{_DAYS[day]} {rest // 60:02d}:{rest % 60:02d}"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def replay(demand: Demand, pods: Sequence[PodState], *, node_cpu_cores: Mapping[str, Fraction | float],
           step_seconds: Fraction | float, anchor: datetime) -> tuple[Step, ...]:
    """The lab's ``grading_window`` of simulated time from its ``start``, played against ``pods`` as they are (a
    fixed set: the starter's, or a test's), in the steps of :func:`plan`. ``anchor`` is the real moment the replay's
    clock starts (only the steps' ``started`` and ``ended`` depend on it); the steps join exactly."""
    clock.aware("anchor", anchor)
    return tuple(play(demand, pods, node_cpu_cores=node_cpu_cores, part=part, anchor=anchor)
                 for part in plan(demand, step_seconds=step_seconds))


def _step(demand: Demand, pods: Sequence[PodState], node_cpu_cores: Mapping[str, Fraction | float], *,
          since: Fraction, length: Fraction, ended: datetime) -> Step:
    """The step of ``length`` real seconds that starts ``since`` real seconds after the simulated clock's start."""
    names = Counter(p.name for p in pods)
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise ValueError(f"pods listed twice: {', '.join(twice)}")
    scale = _exact(demand.time_scale)
    sim_start = clock.simulated(since, start_seconds=demand.start_seconds, time_scale=scale)
    sim_end = clock.simulated(since + length, start_seconds=demand.start_seconds, time_scale=scale)
    cpu = _cpu_cores(pods, node_cpu_cores)
    claimed: set[str] = set()
    results: list[WorkloadResult] = []
    for declaration in demand.workloads:
        mine = [p for p in pods if p.name not in claimed and matches(declaration, p)]
        claimed.update(p.name for p in mine)
        span = clock.Span.of(declaration.curve, sim_start, sim_end)
        results.append(_workload(_Terms.of(declaration), mine, span, scale=scale, seconds=length, cpu=cpu))
    idle = tuple(_idle(p) for p in pods if p.name not in claimed)
    return Step(started=ended - _delta(length), ended=ended, simulated_start=sim_start, simulated_end=sim_end,
                workloads=tuple(results), idle=idle)


def totals(steps: Sequence[Step]) -> dict[str, tuple[Fraction, Fraction, Fraction]]:
    """Per workload, (offered, served, dropped) summed over ``steps``."""
    sums: dict[str, tuple[Fraction, Fraction, Fraction]] = {}
    for one in steps:
        for w in one.workloads:
            offered, served, dropped = sums.get(w.key, (Fraction(0), Fraction(0), Fraction(0)))
            sums[w.key] = (offered + w.offered, served + w.served, dropped + w.dropped)
    return sums


def _delta(seconds: Fraction) -> timedelta:
    return timedelta(microseconds=round(seconds * 1_000_000))


def _positive(seconds: Fraction | float) -> Fraction:
    length = _exact(seconds)
    if length <= 0:
        raise ValueError(f"a step lasts longer than zero seconds, got {seconds}")
    return length


def _cpu_cores(pods: Sequence[PodState], node_cpu_cores: Mapping[str, Fraction | float]) -> dict[str, Fraction]:
    """Each pod's CPU ceiling: its limit, or an equal share of its node's allocatable CPU among the pods there
    that have no limit."""
    unlimited = Counter(p.node for p in pods if p.cpu_limit_cores is None)
    cores: dict[str, Fraction] = {}
    for pod in pods:
        if pod.cpu_limit_cores is not None:
            cores[pod.name] = _exact(pod.cpu_limit_cores)
            continue
        if pod.node not in node_cpu_cores:
            raise ValueError(f"pod {pod.name} has no CPU limit and its node {pod.node!r} has no allocatable CPU "
                             "given: pass it in node_cpu_cores")
        cores[pod.name] = _exact(node_cpu_cores[pod.node]) / unlimited[pod.node]
    return cores


@dataclass(frozen=True)
class _Terms:
    """A declaration's figures as exact fractions, converted once a step rather than once a pod."""

    key: str
    cpu_core_seconds: Fraction
    gpu_seconds: Fraction
    memory_per_rps: Fraction
    base_memory: Fraction
    gpu_memory_mib: int
    max_utilisation: Fraction

    @classmethod
    def of(cls, declaration: WorkloadDemand) -> _Terms:
        cost = declaration.per_request
        return cls(key=declaration.key, cpu_core_seconds=_exact(cost.cpu_core_seconds),
                   gpu_seconds=_exact(cost.gpu_seconds), memory_per_rps=_exact(declaration.memory_per_rps_bytes),
                   base_memory=_exact(declaration.base_memory_bytes),
                   gpu_memory_mib=declaration.per_replica.gpu_memory_mib,
                   max_utilisation=_exact(declaration.max_utilisation))

    def capacity(self, pod: PodState, cpu_cores: Fraction) -> Fraction | None:
        """Requests per second the pod serves at most: the tighter of its CPU and GPU, x ``max_utilisation``."""
        limits: list[Fraction] = []
        if self.cpu_core_seconds > 0:
            limits.append(cpu_cores / self.cpu_core_seconds)
        if self.gpu_seconds > 0:
            limits.append(pod.gpu_share / self.gpu_seconds)
        return min(limits) * self.max_utilisation if limits else None

    def memory_need(self, rate: Fraction) -> Fraction:
        return self.base_memory + self.memory_per_rps * rate


def _workload(terms: _Terms, pods: Sequence[PodState], span: clock.Span, *, scale: Fraction,
              seconds: Fraction, cpu: Mapping[str, Fraction]) -> WorkloadResult:
    offered = span.integral() / scale
    ready = [p for p in pods if p.ready]
    share = Fraction(1, len(ready)) if ready else Fraction(0)
    peak = span.peak() * share
    served_by_cap: dict[Fraction | None, Fraction] = {}  # identical replicas integrate once
    results: list[PodResult] = []
    for pod in pods:
        capacity = terms.capacity(pod, cpu[pod.name])
        peak_rate = Fraction(0) if not pod.ready else peak if capacity is None else min(peak, capacity)
        pod_offered = offered * share if pod.ready else Fraction(0)
        reason, memory_failed = _oom(terms, pod, peak_rate)
        if reason is not None:
            results.append(_usage(terms, pod, "oom", capacity, pod_offered, Fraction(0), seconds,
                                  reason=reason, held_rate=peak_rate if memory_failed else Fraction(0)))
        elif not pod.ready:
            results.append(_usage(terms, pod, "not-ready", capacity, Fraction(0), Fraction(0), seconds))
        else:
            if capacity not in served_by_cap:
                served_by_cap[capacity] = span.integral(scale=share, cap=capacity) / scale
            results.append(_usage(terms, pod, "serving", capacity, pod_offered, served_by_cap[capacity], seconds))
    served = sum((r.served for r in results), Fraction(0))
    dropped = sum((r.dropped for r in results), Fraction(0)) if ready else offered
    return WorkloadResult(terms.key, offered, served, dropped, tuple(results))


def _oom(terms: _Terms, pod: PodState, rate: Fraction) -> tuple[str | None, bool]:
    """Why the pod fails at ``rate`` requests per second (None if it does not), and whether memory is why."""
    memory = terms.memory_need(rate)
    if pod.memory_limit_bytes is not None and memory > pod.memory_limit_bytes:
        return (f"OOM: needs {float(memory) / MIB:.0f} MiB at {float(rate):.3g} requests/s, memory limit "
                f"{pod.memory_limit_bytes / MIB:.0f} MiB"), True
    if terms.gpu_memory_mib > pod.gpu_memory_mib:
        where = f"its GPU has {pod.gpu_memory_mib} MiB" if pod.gpu_share else "it has no GPU"
        return f"GPU OOM: needs {terms.gpu_memory_mib} MiB of GPU memory, {where}", False
    return None, False


def _usage(terms: _Terms, pod: PodState, status: PodStatus, capacity: Fraction | None, offered: Fraction,
           served: Fraction, seconds: Fraction, *, reason: str | None = None,
           held_rate: Fraction = Fraction(0)) -> PodResult:
    rate = served / seconds
    has_gpu = pod.gpu_share > 0
    memory = terms.memory_need(held_rate if status == "oom" else rate)
    if status == "oom" and pod.memory_limit_bytes is not None:
        memory = min(memory, Fraction(pod.memory_limit_bytes))
    engine = rate * terms.gpu_seconds / pod.gpu_share if has_gpu else Fraction(0)
    return PodResult(
        name=pod.name, container=pod.container, status=status, offered=offered, served=served,
        dropped=offered - served, capacity_rps=capacity, cpu_cores=float(rate * terms.cpu_core_seconds),
        memory_bytes=float(memory), gpu_engine_active=float(engine),
        gpu_memory_used_mib=float(min(terms.gpu_memory_mib, pod.gpu_memory_mib)), has_gpu=has_gpu, reason=reason)


def _idle(pod: PodState) -> PodResult:
    return PodResult(name=pod.name, container=pod.container, status="idle",
                     offered=Fraction(0), served=Fraction(0), dropped=Fraction(0), capacity_rps=None, cpu_cores=0.0,
                     memory_bytes=0.0, gpu_engine_active=0.0, gpu_memory_used_mib=0.0, has_gpu=pod.gpu_share > 0)
