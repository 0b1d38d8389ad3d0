"""Warm pools: sandboxes provisioned ahead of a class, unclaimed, for starts to claim.

A lab with ``pool: {warm: N, schedule: [...]}`` has, at any moment, ``Pool.warm_at(now)`` sandboxes of no learner
kept ``pooled`` (rows of ``sessions`` with an empty learner id and the lab's hash). One pass of :meth:`Pools.run_once`
(a background job) per lab:

1. drains the stale: pooled sandboxes made from another version of the lab (its definition or a template changed,
   :func:`lab_hash`), and those beyond the number wanted now (a schedule's window ended);
2. meters the pooled ones: their idle cost goes to the pool's ledger (:mod:`labctl.store.pool_ledger`), the course's,
   never a learner's;
3. refills: provisions what is missing, side by side on a bounded pool of workers.

Claiming is the start's business (:meth:`labctl.service.sessions.Sessions.start`): a compare-and-set on the row, so two
starts never share one (the claims waiting at one moment in one transaction). Every pooled sandbox is made fresh for
the pool and is never given back to it: a stopped session's sandbox is removed, so no learner ever gets what another
one left.

The decision of a pass is pure (:func:`plan`); the pass carries it out.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from labctl.catalog.durations import parse_duration
from labctl.catalog.models import Lab
from labctl.cost import meter
from labctl.cost.prices import PriceSheet
from labctl.errors import LabctlError
from labctl.ports import ProviderError
from labctl.service import background, states
from labctl.service.sessions import LEASE_TTL, POOL_LEARNER, Sessions
from labctl.store import pool_ledger
from labctl.store.models import SandboxSession

log = logging.getLogger("labctl.pools")

ACTOR = "pool"
WORKERS = 8  # sandboxes one pass provisions or removes side by side


def lab_hash(lab: Lab, manifests_dir: Path) -> str:
    """The version of what a lab's sandbox is made from: its definition (but its ``pool``, so resizing a pool keeps
    the sandboxes it has) and the text of the sandbox and starter templates."""
    digest = hashlib.sha256(lab.model_dump_json(exclude={"pool"}).encode())
    templates = sorted((manifests_dir / "sandbox").glob("*.yaml.j2")) + [manifests_dir / t for t in lab.starter]
    for path in templates:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def hashes(catalog: Mapping[str, Lab], manifests_dir: Path) -> dict[str, str]:
    """lab id -> :func:`lab_hash`, for the labs that declare a pool."""
    return {lab_id: lab_hash(lab, manifests_dir) for lab_id, lab in catalog.items() if lab.pool is not None}


@dataclass(frozen=True)
class Member:
    """One sandbox of a pool as a pass sees it."""

    id: str
    state: str  # provisioning (being made) | pooled
    pool_hash: str
    ready_at: datetime | None
    present: bool = True  # its sandbox is in the backend's listing (a vanished one is drained, never claimed)


@dataclass(frozen=True)
class Plan:
    """What one pass does for one lab's pool."""

    make: int = 0
    drain: tuple[str, ...] = ()


def plan(*, members: Sequence[Member], wanted: int, current_hash: str) -> Plan:
    """Pure: drain every stale member (another hash, or its sandbox gone) and, of the fresh, the newest beyond
    ``wanted`` (sandboxes being made count as members); make what is missing."""
    stale = [m.id for m in members if m.state == states.POOLED and (m.pool_hash != current_hash or not m.present)]
    fresh = [m for m in members if m.pool_hash == current_hash and (m.present or m.state != states.POOLED)]
    extra = max(0, len(fresh) - wanted)
    ready = sorted((m for m in fresh if m.state == states.POOLED), key=lambda m: (m.ready_at is not None, m.ready_at),
                   reverse=True)
    surplus = [m.id for m in ready[:extra]]
    return Plan(make=max(0, wanted - len(fresh)), drain=tuple(stale + surplus))


@dataclass(frozen=True)
class PoolView:
    """A lab's pool for instructors: what it should hold now, what it holds, what it has cost the course."""

    lab_id: str
    warm_wanted: int
    pooled: int
    provisioning: int
    stale: int
    idle_cost_usd: Decimal
    sandbox_hours: Decimal


@dataclass
class PoolReport:
    made: int = 0
    drained: int = 0
    metered: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


class Pools:
    """Keeps every lab's warm pool filled, fresh and metered."""

    def __init__(self, *, sessions: Sessions, prices: Callable[[], PriceSheet], workers: int = WORKERS) -> None:
        self.sessions = sessions
        self.prices = prices
        self.workers = workers

    @property
    def hashes(self) -> Mapping[str, str]:
        return self.sessions.pool_hashes

    def run_once(self) -> PoolReport:
        """One pass over every lab with a pool (and the stale sandboxes of labs that no longer have one)."""
        report = PoolReport()
        now = self.sessions.clock()
        members = self._members(listed=True)
        for lab_id in sorted(set(members) | set(self.hashes)):
            lab = self.sessions.catalog.get(lab_id)
            wanted = lab.pool.warm_at(now) if lab is not None and lab.pool is not None else 0
            decided = plan(members=members.get(lab_id, []), wanted=wanted, current_hash=self.hashes.get(lab_id, ""))
            self._drain(decided.drain, report)
            self._meter(lab_id, [m.id for m in members.get(lab_id, []) if m.state == states.POOLED
                                 and m.id not in decided.drain], report)
            if lab is not None and decided.make:
                self._make(lab, decided.make, report)
        if report.made or report.drained or report.errors:
            log.info("pools: %d made, %d drained, %d metered, %d error(s)", report.made, report.drained,
                     report.metered, len(report.errors))
        return report

    def view(self, lab_id: str) -> PoolView:
        """The lab's pool now (404 for a lab the catalog does not have)."""
        lab = self.sessions.lab(lab_id)
        current = self.hashes.get(lab_id)
        members = self._members().get(lab_id, [])
        with self.sessions.store.session() as db:
            spent = pool_ledger.cost(db, lab_id=lab_id)
        return PoolView(lab_id=lab_id, warm_wanted=lab.pool.warm_at(self.sessions.clock()) if lab.pool else 0,
                        pooled=sum(m.state == states.POOLED and m.pool_hash == current for m in members),
                        provisioning=sum(m.state == "provisioning" for m in members),
                        stale=sum(m.pool_hash != current for m in members),
                        idle_cost_usd=spent.usd, sandbox_hours=spent.sandbox_hours)

    # -- the pass's steps ------------------------------------------------------------------------------------------

    def _members(self, *, listed: bool = False) -> dict[str, list[Member]]:
        """Every lab's pool members; ``listed``: with whether the backend still holds each pooled sandbox (a
        backend that cannot list now is taken to hold them all: the next pass looks again)."""
        present: frozenset[str] | None = None
        answered: frozenset[str] = frozenset()  # the clusters that listed: a pooled sandbox elsewhere is not judged
        if listed:
            try:
                listing = self.sessions.provider.sandboxes()
                if "kubernetes" in listing.providers:
                    present, answered = listing.sessions, listing.clusters
            except ProviderError as exc:
                log.warning("pools: listing sandboxes failed, nothing judged lost this pass: %s", exc)
        with self.sessions.store.session() as db:
            rows = db.execute(select(SandboxSession.id, SandboxSession.lab_id, SandboxSession.state,
                                     SandboxSession.pool_hash, SandboxSession.ready_at,
                                     SandboxSession.cluster).where(
                SandboxSession.pool_hash.is_not(None),
                SandboxSession.state.in_((states.POOLED, "provisioning")))).all()
        members: dict[str, list[Member]] = {}
        for row in rows:
            members.setdefault(row.lab_id, []).append(Member(
                id=row.id, state=row.state, pool_hash=row.pool_hash, ready_at=row.ready_at,
                present=present is None or row.state != states.POOLED or row.id in present
                or (row.cluster is not None and row.cluster not in answered)))
        return members

    def _drain(self, ids: Sequence[str], report: PoolReport) -> None:
        """Stop each (a start may claim it first: then it is no longer the pool's), then remove them side by side."""
        stopping: list[str] = []
        for session_id in ids:
            try:
                self._close_account(session_id)
                row = self.sessions.row_of(session_id)
                if row.state != states.POOLED or row.pool_hash is None:
                    continue
                self.sessions.stop(session_id, principal=None, reason="drained from the warm pool", actor=ACTOR)
                stopping.append(session_id)
            except LabctlError as exc:  # claimed meanwhile, or a command holds it: the next pass looks again
                report.errors.append((session_id, f"drain: {exc}"))
        for removal in [background.REMOVALS.submit(f"removing pooled sandbox {session_id}",
                                                   self.sessions.finish_stop, session_id, actor=ACTOR)
                        for session_id in stopping]:
            removal.result()
        report.drained += len(stopping)

    def _meter(self, lab_id: str, ids: Sequence[str], report: PoolReport) -> None:
        """Price each pooled sandbox now and charge the pool for the time since its last metering."""
        if not ids:
            return
        sheet = self.prices()
        for session_id in ids:
            try:
                row = self.sessions.row_of(session_id)
                now = self.sessions.clock()
                spec = self.sessions.snapshot_spec(row)  # its snapshot names the pool as its owner
                priced = meter.price(self.sessions.provider.snapshot(spec, now=now), sheet)
                burn = round(priced.burn_rate_usd_per_hour, 6)
                self._close_account(session_id, burn=burn)
                report.metered += 1
            except Exception as exc:  # one sandbox's failure must not stop the pass; a bug is logged with its trace
                report.errors.append((session_id, f"meter: {exc}"))
                log.warning("metering pooled sandbox %s failed: %s", session_id, exc,
                            exc_info=not isinstance(exc, LabctlError | ProviderError))

    def _close_account(self, session_id: str, *, burn: Decimal | None = None) -> None:
        """Charge the pool the rate in force since the last metering, up to now; ``burn``: the rate from now on."""
        now = self.sessions.clock()

        def charge(db: Session, row: SandboxSession) -> None:
            if row.state != states.POOLED or row.pool_hash is None:
                return  # claimed meanwhile: the claim closed the pool's account
            since = row.last_metered_at or row.ready_at or row.created_at
            rate = Decimal(row.burn_rate_usd_per_hour or 0) if row.last_metered_at else (burn or Decimal(0))
            pool_ledger.charge(db, lab_id=row.lab_id, session_id=row.id, start_at=since, end_at=max(now, since),
                               burn_rate_usd_per_hour=rate)
            row.last_metered_at = max(now, since)
            if burn is not None:
                row.burn_rate_usd_per_hour = burn

        self.sessions.write(session_id, charge)

    def _make(self, lab: Lab, count: int, report: PoolReport) -> None:
        """Make ``count`` pooled sandboxes side by side."""
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pool-make") as workers:
            results = list(workers.map(lambda _: self._make_one(lab), range(count)))
        report.made += sum(ok for _, ok in results)
        report.errors.extend((i, "provision failed") for i, ok in results if not ok)

    def _make_one(self, lab: Lab) -> tuple[str, bool]:
        """A new pool row, born leased (the reconciler leaves it alone), then its sandbox."""
        session_id = f"{lab.id}-{secrets.token_hex(5)}"
        try:  # placed as a start is: on the cheapest cluster with room
            cluster = self.sessions.place(lab, session_id=session_id)
        except LabctlError as exc:
            log.warning("no room for a pooled sandbox of %s: %s", lab.id, exc)
            return session_id, False
        now = self.sessions.clock()
        expires = now + parse_duration(lab.time.limit)
        row = SandboxSession(
            id=session_id, lab_id=lab.id, learner_id=POOL_LEARNER, provider=lab.provider, cluster=cluster,
            state="provisioning", budget_usd=lab.budget.usd, created_at=now, expires_at=expires, deadline_at=expires,
            live_key=None, cleanup_pending=False, started_by=ACTOR, pool_hash=self.hashes[lab.id],
            lease_holder=self.sessions.lease_name("pool"), lease_expires_at=now + LEASE_TTL)
        row.namespace = row.id
        try:
            with self.sessions.lease(row.id, "pool", taken=True) as hold:
                with self.sessions.store.session() as db:
                    db.add(row)
                return row.id, hold.settled(self.sessions.provision(row.id, actor=ACTOR)).state == states.POOLED
        except (LabctlError, ProviderError) as exc:
            self.sessions.release_place(row.id)
            log.warning("provisioning pooled sandbox %s failed: %s", row.id, exc)
            return row.id, False
