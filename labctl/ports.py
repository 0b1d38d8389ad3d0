"""Ports: what the use cases need from the outside world, as interfaces the adapters implement.

A :class:`SandboxProvider` makes and unmakes one learner's sandbox (a Kubernetes namespace, an AWS or GCP sandbox).
Every operation is idempotent and converges, so a retried or resumed start finishes the job instead of failing.
What a suspension stopped is a :class:`Suspension` the provider returns and labctl keeps in its store: nothing the
learner can write inside the sandbox is ever read back as remembered state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from labctl.catalog.models import Lab
from labctl.grading.snapshot import Snapshot


class ProviderError(RuntimeError):
    """The provider could not do what was asked; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProviderUnavailable(ProviderError):
    """The cloud or cluster did not answer (network, apiserver down): nothing can be done right now."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a provider needs to know to make one session's sandbox."""

    session_id: str
    lab: Lab
    learner_id: str
    namespace: str
    expires_at: datetime
    budget_usd: float
    started_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    cluster: str | None = None  # the Kubernetes cluster the sandbox lives in (None: a cloud sandbox)


@dataclass(frozen=True)
class Credentials:
    """What the learner uses to reach the sandbox: a kubeconfig, or cloud credentials."""

    kind: str  # "kubeconfig" | "aws" | "gcp"
    content: str
    expires_at: datetime


class Suspension(BaseModel):
    """What :meth:`SandboxProvider.suspend` stopped, as it was before: the record :meth:`~SandboxProvider.resume`
    restores exactly. Keys are ``Kind/name`` of the sandbox's objects."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    replicas: dict[str, int] = Field(default_factory=dict, description="scalable workload -> replicas before")
    suspend_flags: dict[str, bool] = Field(default_factory=dict, description="Job / CronJob -> spec.suspend before")
    node_selectors: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="DaemonSet -> its pod template's nodeSelector before")
    quota_pods: str | None = Field(default=None, description="the quota's pod count before (None: no pod limit)")
    deleted_pods: list[str] = Field(default_factory=list,
                                    description="pods no stopped controller owned: deleted, they cannot come back")

    def summary(self) -> str:
        """One line for the session's timeline, naming what the record holds: cloud instances stopped (keys
        ``Instance/...``), or a namespace's workloads, Jobs, DaemonSets and its quota's pods."""
        instances = [key.rsplit("/", 1)[-1] for key in self.replicas if key.startswith("Instance/")]
        workloads = len(self.replicas) - len(instances)
        parts = [f"{len(instances)} instance(s) stopped: {', '.join(instances)}"] if instances else []
        if workloads or self.suspend_flags or self.node_selectors or self.quota_pods is not None:
            parts += [f"{workloads} workload(s) scaled to 0", f"{len(self.suspend_flags)} Job/CronJob(s) suspended",
                      f"{len(self.node_selectors)} DaemonSet(s) parked", "quota pods=0"]
        if self.deleted_pods:
            parts.append(f"bare pods deleted (not restorable): {', '.join(self.deleted_pods)}")
        return "; ".join(parts) or "nothing was running"


@dataclass(frozen=True)
class Listing:
    """What :meth:`SandboxProvider.sandboxes` found: the sessions whose sandbox exists, on the backends (provider
    names) that keep a root per sandbox. A backend without one (a GCP sandbox is only its labelled resources, so an
    empty sandbox and a vanished one look the same) lists nothing and is not named: its sessions are not judged.
    Kubernetes names the clusters that listed: a session of a cluster that did not answer is not judged either."""

    sessions: frozenset[str] = frozenset()
    providers: frozenset[str] = frozenset()
    clusters: frozenset[str] = frozenset()  # the Kubernetes clusters that answered (their sessions are judged)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None
    effect: str


@dataclass(frozen=True)
class Toleration:
    key: str | None
    operator: str  # "Equal" | "Exists"
    value: str | None
    effect: str | None  # None: every effect

    def tolerates(self, taint: Taint) -> bool:
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key is None:
            return self.operator == "Exists"
        return self.key == taint.key and (self.operator == "Exists" or self.value == taint.value)


@dataclass(frozen=True)
class PodNeed:
    """One pod a lab's starters make: what it requests and where it may run."""

    name: str
    requests: Mapping[str, Decimal]  # resource -> amount (cores, bytes, devices)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True)
class LabNeeds:
    """What one sandbox of a lab takes from a cluster at start: its starters' pods, and its quota's compute (cpu,
    memory, GPUs, MIG slices), which must fit in the cluster's free capacity."""

    pods: tuple[PodNeed, ...] = ()
    quota: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeRoom:
    """One node as placement sees it: its labels and taints, allocatable, and the requests of the pods bound to it."""

    name: str
    labels: Mapping[str, str]
    allocatable: Mapping[str, Decimal]
    requested: Mapping[str, Decimal] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    schedulable: bool = True  # False: cordoned, or not Ready

    def free(self, resource: str) -> Decimal:
        return self.allocatable.get(resource, Decimal(0)) - self.requested.get(resource, Decimal(0))


@dataclass(frozen=True)
class ClusterRoom:
    """A cluster's capacity summary at ``taken_at``; ``error``: it did not answer (and has no room)."""

    name: str
    nodes: tuple[NodeRoom, ...] = ()
    bound: Mapping[str, int] = field(default_factory=dict)  # sandbox namespace -> its pods bound to a node
    error: str | None = None
    taken_at: datetime | None = None


@runtime_checkable
class Placer(Protocol):
    """The Kubernetes clusters sandboxes may be placed on, and what placing needs to know of them."""

    cluster_names: list[str]

    def needs(self, lab: Lab) -> LabNeeds:
        """What one sandbox of ``lab`` takes from a cluster (its rendered starters and its quota)."""

    def room(self, cluster: str) -> ClusterRoom:
        """The cluster's capacity summary (a recent one may be reused); a cluster that does not answer gives a room
        with its ``error``."""


UsageByPod = Mapping[str, Mapping[str, Mapping[str, float]]]
"""Simulated usage of a sandbox's pods: pod name -> container name -> resource -> figure."""


@runtime_checkable
class ProviderRegistry(Protocol):
    """Several providers behind one (the router): ``of(name)`` is the one a lab's ``provider`` names."""

    in_use: list[str]

    def of(self, name: str) -> SandboxProvider:
        """The provider called ``name``."""


class SandboxProvider(Protocol):
    name: str

    def provision(self, spec: SandboxSpec) -> None:
        """Create or converge the sandbox; returns when the learner can use it."""

    def hand_over(self, spec: SandboxSpec, *, previous: SandboxSpec) -> None:
        """Converge a sandbox provisioned for ``previous`` (a warm pool's, of no learner) to ``spec`` (its learner,
        deadlines, budget): only what differs between the two is written; returns when the learner can use it."""

    def credentials(self, spec: SandboxSpec) -> Credentials:
        """Fresh credentials for the learner that stop working when the session expires."""

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        """Remove everything the sandbox holds; returns when it is gone (or raises after ``wait_s``)."""

    def ping(self) -> str:
        """A short description of the backend if it answers; raises :class:`ProviderUnavailable` otherwise."""

    def suspend(self, spec: SandboxSpec) -> Suspension:
        """Stop everything that costs compute but keep the learner's work; nothing new may start. Returns what it
        stopped, as it was before (the caller stores it)."""

    def resume(self, spec: SandboxSpec, record: Suspension) -> None:
        """Restore exactly ``record`` (whatever the learner wrote meanwhile), then let pods start again."""

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        """Make the learner's access read-only (a submission), or writable again."""

    def snapshot(self, spec: SandboxSpec, *, now: datetime, interim: bool = False) -> Snapshot:
        """The sandbox's inventory at ``now``, unpriced (the meter prices it): see docs/SNAPSHOT.md. ``interim``: a
        view that may lag the backend by its watch's delay even for a frozen sandbox (a replay's intermediate step,
        never graded); without it, a frozen sandbox's snapshot sees at least what the freeze left."""

    def sandboxes(self) -> Listing:
        """The session ids of every sandbox the backend holds now, leaving out those already being deleted, and
        which backends could tell: the sweep compares them with the store (a live session without one, a finished
        session with one) for the sessions of those backends only."""

    def enforce(self, spec: SandboxSpec, *, resource: str, action: Literal["stop", "terminate"]) -> None:
        """Stop or terminate one resource of the sandbox that broke the lab's guardrails (``resource`` as the
        snapshot names it, ``Instance/<id>``); refuses with a :class:`ProviderError` a resource the sandbox does not
        hold or a provider without instances."""

    def write_usage(self, spec: SandboxSpec, usage: UsageByPod) -> None:
        """Make the simulated world's usage of the sandbox's pods exactly ``usage``, where the learner cannot write
        it (pod -> container -> ``cpu`` cores, ``memory`` bytes, other resources by name, e.g. ``nvidia.com/gpu``
        as the engine-active share); pods not named use nothing."""
