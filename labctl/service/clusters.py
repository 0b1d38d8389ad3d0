"""The clusters use case: place a new Kubernetes sandbox on a cluster with room, and show the clusters to instructors.

:meth:`Placement.place` gathers each cluster's capacity summary through the :class:`~labctl.ports.Placer` (the
Kubernetes provider's short-lived cached reads), asks the pure :func:`labctl.service.placement.decide`, and holds
the chosen cluster's room for the start in memory (a *hold*) until the cluster's own summary shows the sandbox's pods
bound, the start fails (:meth:`Placement.release`) or :data:`HOLD_TTL` passes. Decisions are taken one at a time,
each seeing the holds of those before it: two concurrent starts never both take the last GPU (the second goes where
a GPU is free, or, with none free anywhere, waits Pending where one would be). A hold lives in this
process only; replicas starting sandboxes on the same cluster at the same moment are re-checked by the scheduler
(a pod that does not fit stays Pending and is billed nothing). No cluster that can take the sandbox (none answers,
or none could run its pods even empty) is a 503 with ``Retry-After``: the request is right and the backends may come
back or grow, so the client should try again, not change anything (a 409 would say it should).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from labctl import redact
from labctl.catalog.models import Lab
from labctl.cost.prices import PriceSheet
from labctl.errors import Unavailable
from labctl.ports import ClusterRoom, LabNeeds, Placer
from labctl.service import placement, states
from labctl.store.db import Store
from labctl.store.models import SandboxSession

log = logging.getLogger("labctl.clusters")

HOLD_TTL = timedelta(minutes=2)  # longer than a start takes to bind its starters' pods on a healthy cluster


@dataclass(frozen=True)
class Hold:
    """Room taken on ``cluster`` by a start in flight, until its namespace's pods are seen bound."""

    session_id: str
    cluster: str
    namespace: str
    needs: LabNeeds
    at: datetime


@dataclass(frozen=True)
class ClusterView:
    """One cluster for ``GET /v1/clusters``: reachable or not, its capacity summary and its live sessions."""

    name: str
    reachable: bool
    error: str | None
    nodes: int
    schedulable_nodes: int
    allocatable: Mapping[str, Decimal]
    free: Mapping[str, Decimal]
    sessions: int
    holds: int


class Placement:
    """Placement of new Kubernetes sandboxes over the clusters the placer knows."""

    def __init__(self, *, placer: Placer, prices: Callable[[], PriceSheet], store: Store,
                 clock: Callable[[], datetime]) -> None:
        self.placer = placer
        self.prices = prices
        self.store = store
        self.clock = clock
        self._holds: dict[str, Hold] = {}
        self._lock = threading.Lock()

    def place(self, lab: Lab, *, session_id: str, namespace: str) -> str:
        """The cluster for a new sandbox of ``lab`` (held for it); a 503 naming every cluster's reason if none has
        room."""
        needs = self.placer.needs(lab)
        with self._lock:
            rooms = [self.placer.room(name) for name in self.placer.cluster_names]
            self._forget_seen(rooms)
            held: dict[str, list[LabNeeds]] = {}
            for hold in self._holds.values():
                held.setdefault(hold.cluster, []).append(hold.needs)
            decision = placement.decide(needs=needs, rooms=rooms, sheet=self.prices(), held=held)
            if decision.chosen is None and all(room.error is not None for room in rooms):
                raise Unavailable(f"the {lab.provider} backend is unreachable, so no sandbox can be made now for "
                                  f"lab {lab.id}: {redact.addresses(decision.reasons())}. Try again later.")
            if decision.chosen is None:
                raise Unavailable(f"no cluster can take a sandbox of lab {lab.id}: "
                                  f"{redact.addresses(decision.reasons())}. "
                                  "Try again later, or ask an operator for capacity.")
            self._holds[session_id] = Hold(session_id=session_id, cluster=decision.chosen, namespace=namespace,
                                           needs=needs, at=self.clock())
        fit = next(f for f in decision.fits if f.cluster == decision.chosen)
        others = "; ".join([*(f"{f.cluster}: ${f.hourly_usd:.4f}/h" for f in decision.fits if f is not fit),
                            *(f"{c}: {why}" for c, why in decision.refusals.items())])
        if decision.waiting:
            log.warning("session %s of %s placed on cluster %s, which has no room now: its pods wait Pending until "
                        "pods end or nodes are added (%s)", session_id, lab.id, decision.chosen, decision.reasons())
        else:
            log.info("session %s of %s placed on cluster %s ($%.4f/h)%s", session_id, lab.id, decision.chosen,
                     fit.hourly_usd, f"; {others}" if others else "")
        return decision.chosen

    def release(self, session_id: str) -> None:
        """The start is over without a sandbox (failed, or another start won): its room is free again."""
        with self._lock:
            self._holds.pop(session_id, None)

    def holds(self) -> list[Hold]:
        with self._lock:
            return list(self._holds.values())

    def _forget_seen(self, rooms: list[ClusterRoom]) -> None:
        """Drop holds whose pods the cluster's summary (taken after the hold) shows bound, and expired ones."""
        now = self.clock()
        by_name = {room.name: room for room in rooms}
        for session_id, hold in list(self._holds.items()):
            room = by_name.get(hold.cluster)
            seen = room is not None and room.taken_at is not None and room.taken_at > hold.at \
                and room.bound.get(hold.namespace, 0) >= len(hold.needs.pods)
            if seen or now - hold.at > HOLD_TTL:
                del self._holds[session_id]

    def view(self) -> list[ClusterView]:
        """Every cluster with its capacity summary and live sessions count, in the settings' order."""
        with self.store.session() as db:
            counts = dict(db.execute(select(SandboxSession.cluster, func.count()).where(
                SandboxSession.state.in_((*states.LIVE, states.POOLED)), SandboxSession.cluster.is_not(None))
                .group_by(SandboxSession.cluster)).all())
        rooms = [self.placer.room(name) for name in self.placer.cluster_names]
        with self._lock:
            self._forget_seen(rooms)
            holds = list(self._holds.values())
        views = []
        for name, room in zip(self.placer.cluster_names, rooms, strict=True):
            usable = [node for node in room.nodes if node.schedulable]
            allocatable: dict[str, Decimal] = {}
            free: dict[str, Decimal] = {}
            for node in usable:
                for resource, amount in node.allocatable.items():
                    allocatable[resource] = allocatable.get(resource, Decimal(0)) + amount
                    free[resource] = free.get(resource, Decimal(0)) + max(node.free(resource), Decimal(0))
            views.append(ClusterView(name=name, reachable=room.error is None, error=room.error,
                                     nodes=len(room.nodes), schedulable_nodes=len(usable), allocatable=allocatable,
                                     free=free, sessions=int(counts.get(name, 0)),
                                     holds=sum(h.cluster == name for h in holds)))
        return views
