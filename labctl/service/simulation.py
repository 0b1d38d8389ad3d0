"""The simulated world seen from a snapshot: which pods can serve a lab's demand, and with what.

kwok runs no containers, so on the local cluster what a workload uses and serves comes from the lab's ``demand``
(:mod:`labctl.simulator`). The simulator needs each pod's facts as :class:`~labctl.simulator.model.PodState`; they
come from the unpriced snapshot, that is from what the apiserver says of the pods (phase, node, limits, GPU
resources, owning workload) and of the nodes (allocatable CPU, GPU memory): nothing a learner writes as a figure.
What the simulator decides the pods used goes back into the snapshot (:func:`with_usage`), so the meter and the
graders read the same figures the pods' metrics show. Pure: snapshots and steps in, new values out.
"""

from __future__ import annotations

from fractions import Fraction

from labctl.grading.snapshot import ContainerUsage, Node, Resource, Snapshot
from labctl.simulator.model import MIG_RESOURCE, PodResult, PodState, Step, gpu_of

GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, from GPU feature discovery


def node_cpu_cores(snapshot: Snapshot) -> dict[str, Fraction]:
    """Each node's CPU in cores (what pods without a CPU limit share)."""
    return {n.name: Fraction(str(n.capacity.get("cpu", 0.0))) for n in snapshot.nodes}


def pod_states(snapshot: Snapshot) -> list[PodState]:
    """The snapshot's scheduled pods as the simulator sees them (a pod without a node cannot serve)."""
    nodes = {n.name: n for n in snapshot.nodes}
    return [_state(pod, nodes.get(pod.node)) for pod in snapshot.resources
            if pod.kind == "Pod" and pod.node and pod.containers]


def _state(pod: Resource, node: Node | None) -> PodState:
    assert pod.node is not None
    cpu_limits = [c.limits.get("cpu") for c in pod.containers]
    memory_limits = [c.limits.get("memory") for c in pod.containers]
    share, gpu_memory = _gpu(pod, node)
    workload = pod.controller or pod.owner
    return PodState(
        name=pod.name, container=pod.containers[0].name, node=pod.node, ready=pod.phase == "Running",
        cpu_limit_cores=(Fraction(str(sum(v for v in cpu_limits if v is not None)))
                         if all(v is not None for v in cpu_limits) else None),
        memory_limit_bytes=(int(sum(v for v in memory_limits if v is not None))
                            if all(v is not None for v in memory_limits) else None),
        gpu_share=share, gpu_memory_mib=gpu_memory,
        workload=str(workload) if workload is not None else None, labels=dict(pod.labels))


def _gpu(pod: Resource, node: Node | None) -> tuple[Fraction, int]:
    """The pod's GPUs (whole ones and MIG slices, by limit as the device plugin allocates them) as one share."""
    label = node.labels.get(GPU_MEMORY_LABEL, "") if node is not None else ""
    device_mib = int(label) if label.isdigit() else 0
    share, memory = Fraction(0), 0
    for container in pod.containers:
        for resource, count in {**container.requests, **container.limits}.items():
            if resource == "nvidia.com/gpu" or MIG_RESOURCE.match(resource):
                part, mib = gpu_of(resource, int(count), device_memory_mib=device_mib)
                share, memory = share + part, memory + mib
    return share, memory



def with_usage(snapshot: Snapshot, step: Step) -> Snapshot:
    """A new snapshot whose simulated containers carry the step's usage (CPU, memory, and for pods with a GPU the
    DCGM figures) and whose usage source says so; other containers keep what metrics measured."""
    results = {p.name: p for p in step.pods()}
    resources = [_measured(r, results[r.name]) if r.kind == "Pod" and r.name in results else r
                 for r in snapshot.resources]
    return snapshot.model_copy(update={"resources": resources,
                                       "cost": snapshot.cost.model_copy(update={"usage_source": "simulator"})})


def _measured(pod: Resource, result: PodResult) -> Resource:
    usage = ContainerUsage(cpu=result.cpu_cores, memory=round(result.memory_bytes),
                           gpu_engine_active=result.gpu_engine_active if result.has_gpu else None,
                           gpu_memory_mib=result.gpu_memory_used_mib if result.has_gpu else None)
    containers = [c.model_copy(update={"usage": usage}) if c.name == result.container else c for c in pod.containers]
    return pod.model_copy(update={"containers": containers})
