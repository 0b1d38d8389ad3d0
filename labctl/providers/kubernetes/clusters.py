"""Several Kubernetes clusters behind one provider: each session's calls go to the cluster its spec names.

labctl's Kubernetes labs run on the clusters of ``LABCTL_CLUSTERS`` (or one, ``default``): one
:class:`~labctl.providers.kubernetes.sandbox.KubernetesSandboxes` per cluster, each with its own clients, watch cache
and capacity summary. :class:`Clusters` is the ``kubernetes`` provider the router holds: every call for a session
(provision, hand-over, credentials, snapshot, usage writes, suspend, resume, freeze, destroy) goes to the cluster
recorded on the session (``SandboxSpec.cluster``); a listing asks every cluster and names those that answered, so a
cluster that is down leaves its own sessions unjudged and no other's. It is also the :class:`~labctl.ports.Placer`
placement asks: the clusters' names, each one's capacity summary, and what a lab's sandbox takes (its rendered
starters and its quota).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from labctl.catalog.models import Lab
from labctl.grading.snapshot import Snapshot
from labctl.ports import (
    ClusterRoom,
    Credentials,
    LabNeeds,
    Listing,
    ProviderError,
    SandboxSpec,
    Suspension,
    UsageByPod,
)
from labctl.providers.kubernetes import capacity, render
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes

log = logging.getLogger("labctl.providers.kubernetes.clusters")


class Clusters:
    """The ``kubernetes`` provider over one :class:`KubernetesSandboxes` per cluster, in the settings' order."""

    name = "kubernetes"

    def __init__(self, members: Sequence[KubernetesSandboxes]) -> None:
        if not members:
            raise ValueError("at least one cluster is needed")
        self.members = {member.cluster: member for member in members}
        self.cluster_names = [member.cluster for member in members]

    def member(self, cluster: str | None) -> KubernetesSandboxes:
        """The provider of ``cluster``; a name the settings do not hold is refused, naming those they do."""
        found = self.members.get(cluster or "")
        if found is None:
            raise ProviderError(f"the sandbox lives in cluster {cluster!r}, which this service does not know "
                                f"(LABCTL_CLUSTERS names: {', '.join(self.cluster_names)}); add it back to reach it")
        return found

    def _of(self, spec: SandboxSpec) -> KubernetesSandboxes:
        return self.member(spec.cluster)

    # -- Placer ----------------------------------------------------------------------------------------------------

    def needs(self, lab: Lab) -> LabNeeds:
        """The lab's starters rendered for a sandbox of nobody (names only: requests and placement do not depend on
        the learner), and its quota."""
        first = self.members[self.cluster_names[0]]
        now = datetime.now(UTC)
        spec = SandboxSpec(session_id="placement", lab=lab, learner_id="placement", namespace="placement",
                           expires_at=now, budget_usd=0.0, started_at=now)
        return capacity.needs(lab, render.starter_objects(spec, first.manifests_dir))

    def room(self, cluster: str) -> ClusterRoom:
        return self.member(cluster).room()

    # -- SandboxProvider -------------------------------------------------------------------------------------------

    def ping(self) -> str:
        """Every cluster's apiserver version (raises for the first that does not answer)."""
        return ", ".join(f"{name} {member.ping()}" for name, member in self.members.items())

    def sandboxes(self) -> Listing:
        """The sandboxes of every cluster that answers; raises only when none does."""
        found: set[str] = set()
        answered: set[str] = set()
        failures: dict[str, ProviderError] = {}
        for name, member in self.members.items():
            try:
                listing = member.sandboxes()
            except ProviderError as exc:
                failures[name] = exc
                continue
            found |= listing.sessions
            answered.add(name)
        if not answered:
            raise next(iter(failures.values()))
        for name, failure in failures.items():
            log.warning("listing sandboxes of cluster %s failed; its sessions are not judged this pass: %s", name,
                        failure)
        return Listing(sessions=frozenset(found), providers=frozenset({self.name}), clusters=frozenset(answered))

    def provision(self, spec: SandboxSpec) -> None:
        self._of(spec).provision(spec)

    def hand_over(self, spec: SandboxSpec, *, previous: SandboxSpec) -> None:
        self._of(spec).hand_over(spec, previous=previous)

    def credentials(self, spec: SandboxSpec) -> Credentials:
        return self._of(spec).credentials(spec)

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        self._of(spec).destroy(spec, wait_s=wait_s)

    def suspend(self, spec: SandboxSpec) -> Suspension:
        return self._of(spec).suspend(spec)

    def resume(self, spec: SandboxSpec, record: Suspension) -> None:
        self._of(spec).resume(spec, record)

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        self._of(spec).freeze(spec, frozen=frozen)

    def snapshot(self, spec: SandboxSpec, *, now: datetime, interim: bool = False) -> Snapshot:
        return self._of(spec).snapshot(spec, now=now, interim=interim)

    def enforce(self, spec: SandboxSpec, *, resource: str, action: Literal["stop", "terminate"]) -> None:
        self._of(spec).enforce(spec, resource=resource, action=action)

    def write_usage(self, spec: SandboxSpec, usage: UsageByPod) -> None:
        self._of(spec).write_usage(spec, usage)

    def close(self) -> None:
        for member in self.members.values():
            member.close()
