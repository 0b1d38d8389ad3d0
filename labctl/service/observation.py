"""What a sandbox's workloads use and serve right now: the learner's and the instructor's view of the measurements.

CPU and memory are what the cluster's metrics pipeline reports (``metrics.k8s.io``, the figures ``kubectl top``
shows); on the local cluster, where labctl simulates each lab's demand, the same figures and the GPU's in DCGM terms
(``DCGM_FI_PROF_GR_ENGINE_ACTIVE``, ``DCGM_FI_DEV_FB_USED``) come from the simulator, played over the last second on
the pods as they are. Requests offered, served and dropped are the session's service ledger. Reading changes nothing:
no usage is written, nothing is accrued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from labctl import redact
from labctl.errors import Conflict, Unavailable
from labctl.grading.snapshot import Resource, Snapshot
from labctl.ports import ProviderError, ProviderUnavailable
from labctl.service import simulation
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.simulator import economics, ledger, model

OBSERVED_STATES = ("ready", "suspended", "submitted", "graded")


@dataclass(frozen=True)
class PodMetrics:
    name: str
    workload: str | None
    node: str | None
    phase: str | None
    cpu_cores: float | None
    memory_bytes: int | None
    gpu_engine_active: float | None
    gpu_memory_mib: float | None
    status: str | None  # the simulator's word for the pod: serving, not-ready, oom, idle (None: not simulated)


@dataclass(frozen=True)
class WorkloadService:
    workload: str
    offered: Decimal
    served: Decimal
    dropped: Decimal

    @property
    def served_share(self) -> Decimal | None:
        return economics.served_share(served=self.served, offered=self.offered)


@dataclass(frozen=True)
class SessionMetrics:
    session_id: str
    taken_at: datetime
    usage_source: str
    pods: tuple[PodMetrics, ...]
    workloads: tuple[WorkloadService, ...]


class Observation:
    """Reads a session's measurements for whoever may see the session."""

    def __init__(self, *, sessions: Sessions, simulate: bool = True) -> None:
        self.sessions = sessions
        self.simulate = simulate

    def metrics(self, session_id: str, *, principal: Principal, activity: bool = True) -> SessionMetrics:
        """The session's pods with their use now, and its workloads' requests so far (``activity``: as
        :meth:`Sessions.get`)."""
        row = self.sessions.get(session_id, principal=principal, activity=activity)
        if row.state not in OBSERVED_STATES:
            raise Conflict(f"session {session_id} is {row.state}: its sandbox has no workloads to measure")
        spec = self.sessions.spec_of(row)
        now = self.sessions.clock()
        try:
            snap = self.sessions.provider.snapshot(spec, now=now)
        except ProviderUnavailable as exc:
            raise Unavailable(redact.addresses(str(exc))) from exc
        except ProviderError as exc:
            raise Conflict(redact.addresses(str(exc))) from exc
        statuses: dict[str, str] = {}
        demand = spec.lab.demand
        if self.simulate and demand is not None and row.ready_at is not None and now > row.ready_at:
            seconds = min(1.0, (now - row.ready_at).total_seconds())
            step = model.step(demand, simulation.pod_states(snap), node_cpu_cores=simulation.node_cpu_cores(snap),
                              started_at=row.ready_at, now=now, seconds=seconds)
            snap = simulation.with_usage(snap, step)
            statuses = {p.name: p.status for p in step.pods()}
        with self.sessions.store.session() as db:
            rows = ledger.ledger(db, session_id=session_id)
            workloads = tuple(WorkloadService(workload=r.workload, offered=r.offered, served=r.served,
                                              dropped=r.dropped) for r in rows)
        return SessionMetrics(session_id=session_id, taken_at=now, usage_source=snap.cost.usage_source,
                              pods=_pods(snap, statuses), workloads=workloads)


def _pods(snap: Snapshot, statuses: dict[str, str]) -> tuple[PodMetrics, ...]:
    return tuple(_pod(r, statuses.get(r.name)) for r in snap.resources if r.kind == "Pod")


def _pod(pod: Resource, status: str | None) -> PodMetrics:
    usages = [c.usage for c in pod.containers if c.usage is not None]
    cpu = [u.cpu for u in usages if u.cpu is not None]
    memory = [u.memory for u in usages if u.memory is not None]
    engine = next((u.gpu_engine_active for u in usages if u.gpu_engine_active is not None), None)
    framebuffer = next((u.gpu_memory_mib for u in usages if u.gpu_memory_mib is not None), None)
    workload = pod.controller or pod.owner
    return PodMetrics(name=pod.name, workload=str(workload) if workload else None, node=pod.node, phase=pod.phase,
                      cpu_cores=sum(cpu) if cpu else None, memory_bytes=sum(memory) if memory else None,
                      gpu_engine_active=engine, gpu_memory_mib=framebuffer, status=status)
