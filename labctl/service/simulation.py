"""The simulated world seen from a snapshot: which pods can serve a lab's demand, and with what.

kwok runs no containers, so on the local cluster what a workload uses and serves comes from the lab's ``demand``
(:mod:`labctl.simulator`). The simulator needs each pod's facts as :class:`~labctl.simulator.model.PodState`; they
come from the unpriced snapshot, that is from what the apiserver says of the pods (phase, node, limits, GPU
resources, owning workload) and of the nodes (allocatable CPU, GPU memory): nothing a learner writes as a figure.
Pure: a snapshot in, pod states and node CPU out.
"""

from __future__ import annotations

from fractions import Fraction

from labctl.grading.snapshot import Node, Resource, Snapshot
from labctl.simulator.model import MIG_RESOURCE, PodState, gpu_of

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

