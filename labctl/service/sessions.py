"""Sessions: start, inspect, reset and stop learners' sandboxes, and reconcile what an interruption left behind.

The store decides: a start first writes a ``provisioning`` row whose ``live_key`` ("<lab>/<learner>") is unique, so
concurrent starts for the same learner and lab give one session; then the provider converges the sandbox. A start
that fails part way marks the session ``failed`` with the reason and removes what was made; when even that fails the
row keeps ``cleanup_pending`` and :meth:`Sessions.reconcile` finishes the job (it also resumes starts that a killed
service left in ``provisioning``).

A command that works on the sandbox (start, reset, suspend, resume, stop, submit) holds the session's lease in the
store while it does: a second command on the same session gets a 409 problem instead of interleaving with it, and the
reconciler leaves a leased session alone (a reset in flight is never provisioned a second time). A lease left by a
killed process of this replica is taken over at once; one of another replica only once it expires. Every write of a
session row goes through :meth:`Sessions.write`: a write that lost to another writer (the row's version) is decided
again on the fresh row, so the meter's ledger, a command and a learner's polling never give each other a 5xx.

A lab with a warm ``pool`` (:mod:`labctl.service.pools` keeps it filled) has sandboxes provisioned for no learner
(state ``pooled``); a start first claims one of those with a compare-and-set on its row (two starts never get the
same one), closes its idle account in the pool's ledger, drops its pooled past (events, timers, ledger figures: the
learner's clock, cost and budget start at the claim) and converges it to the learner (``hand_over``: the namespace's
learner label, expiry, budget). With no fresh pooled sandbox left the start provisions one, as without a pool. A
class's starts claim by group commit (:mod:`labctl.store.group_commit`): the claims waiting at one moment are one
transaction, and so are the ready transitions of the hand-overs that finished at one moment; each row's order stays
claim, hand-over, ready, so the namespace is the learner's before the answer leaves.

Money and attempts belong to the learner and the lab (:mod:`labctl.service.allowances`): a new session's budget is
what the learner has left in the lab. A budget, instructor or meter suspension is lifted only by an instructor, and a
budget one only below the suspend level: neither a resume nor a reset by anyone else restarts the workloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from labctl import redact
from labctl.catalog.durations import parse_duration
from labctl.catalog.models import Lab
from labctl.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable, Unprocessable
from labctl.outbox import events as outbox
from labctl.ports import (
    Credentials,
    ProviderError,
    ProviderRegistry,
    ProviderUnavailable,
    SandboxProvider,
    SandboxSpec,
    Suspension,
)
from labctl.service import allowances, leader, paging, policy, roles, states
from labctl.service.allowances import Allowance
from labctl.service.auth import Principal
from labctl.service.baseline import Baseline
from labctl.service.clusters import Placement
from labctl.store import pool_ledger
from labctl.store.db import Store
from labctl.store.group_commit import GroupCommit
from labctl.store.models import Grant, SandboxSession, SessionEvent

log = logging.getLogger("labctl.sessions")

T = TypeVar("T")
LEARNER_ID = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DESTROY_WAIT_S = 120.0
# Longer than any one command's provider work (a reset waits up to DESTROY_WAIT_S for the old namespace to go).
LEASE_TTL = timedelta(minutes=10)
WRITE_RETRIES = 10
# A learner's reads mark activity for the idle timer at most this often (the timer counts minutes).
TOUCH_EVERY = timedelta(seconds=30)
# A stronger suspension cause replaces a weaker one on an already suspended session (never the other way round).
# A pooled sandbox belongs to no learner: an empty learner id, which no learner token or start may name.
POOL_LEARNER = ""
POOL_OWNER = "pool"  # who owns a pooled sandbox's snapshots until a start claims it
CAUSE_RANK = {"learner": 0, "idle": 0, "off-hours": 0, "meter": 1, "budget": 2, "instructor": 3}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sessions:
    """The session use cases over one store, one provider and the lab catalog."""

    def __init__(self, *, store: Store, provider: SandboxProvider, catalog: Mapping[str, Lab],
                 clock: Callable[[], datetime] = utcnow, holder: str = "labctl",
                 pool_hashes: Mapping[str, str] | None = None, placement: Placement | None = None) -> None:
        self.store = store
        # Which cluster a new Kubernetes sandbox goes to (None: the provider has one cluster and needs no choice).
        self.placement = placement
        # lab id -> the hash of its definition and templates (labctl.service.pools.lab_hash), for labs with a pool:
        # a start claims only a pooled sandbox made from the lab as it is now.
        self.pool_hashes = dict(pool_hashes or {})
        self.provider = provider
        self.catalog = catalog
        self.clock = clock
        self.holder = holder  # this replica's stable name in session leases
        self._held: set[str] = set()  # sessions whose lease a command of this process holds now
        # The starter's figures, taken while provisioning, before any learner credential exists
        # (:mod:`labctl.service.baseline`; the sweeper's, set by the composition root).
        self.baseline: Callable[[str], Baseline] | None = None
        self._held_lock = threading.Lock()
        # The claims, and the hand-overs' ready transitions, waiting at one moment are each one transaction.
        self._claims = GroupCommit(together=self._take_together, alone=self._take_alone)
        self._readies = GroupCommit(together=self._ready_together, alone=self._ready_alone)

    # -- queries ---------------------------------------------------------------------------------------------------

    def lab(self, lab_id: str) -> Lab:
        lab = self.catalog.get(lab_id)
        if lab is None:
            known = ", ".join(sorted(self.catalog)) or "none"
            raise NotFound(f"there is no lab '{lab_id}'; known labs: {known}")
        return lab

    def get(self, session_id: str, *, principal: Principal, activity: bool = True) -> SandboxSession:
        """The session, if ``principal`` may see it; ``activity=False``: a read the learner did not make itself (the
        learner page's polling), which does not count for the idle timer."""
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
        if row is None or not principal.may_act_for(row.learner_id) \
                or (row.pool_hash is not None and principal.role != "instructor"):  # a pool's: instructors only
            raise NotFound(f"there is no session '{session_id}'")
        if principal.role == "learner" and activity:
            self.touch(session_id)  # learner API use counts as activity for the idle timer
        return row

    def list_sessions(self, *, principal: Principal, lab_id: str | None = None, learner_id: str | None = None,
                      state: str | None = None, limit: int = paging.DEFAULT_LIMIT,
                      after: paging.Cursor | None = None) -> tuple[list[SandboxSession], paging.Cursor | None]:
        """One page of the sessions the caller may see, newest first, and the cursor of the next page (None: last)."""
        if principal.role == "learner":
            learner_id = principal.learner_id
        query = select(SandboxSession).order_by(SandboxSession.created_at.desc(), SandboxSession.id.desc())
        if principal.role != "instructor":  # a warm pool's sandboxes are the instructors' to see
            query = query.where(SandboxSession.pool_hash.is_(None))
        if lab_id:
            query = query.where(SandboxSession.lab_id == lab_id)
        if learner_id:
            query = query.where(SandboxSession.learner_id == learner_id)
        if state:
            query = query.where(SandboxSession.state == state)
        if after is not None:
            query = query.where(or_(SandboxSession.created_at < after.created_at,
                                    and_(SandboxSession.created_at == after.created_at,
                                         SandboxSession.id < after.id)))
        with self.store.session() as db:
            rows = list(db.scalars(query.limit(limit + 1)).all())
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], paging.Cursor(created_at=last.created_at, id=last.id)

    def events(self, session_id: str, *, principal: Principal) -> list[SessionEvent]:
        self.get(session_id, principal=principal)
        with self.store.session() as db:
            query = select(SessionEvent).where(SessionEvent.session_id == session_id).order_by(SessionEvent.id)
            return list(db.scalars(query).all())

    def credentials(self, session_id: str, *, principal: Principal) -> Credentials:
        row = self.get(session_id, principal=principal)
        if not roles.may_read_credentials(role=principal.role, caller=principal.caller, started_by=row.started_by):
            raise Forbidden(f"a platform token reads the credentials only of sessions it started; {session_id} was "
                            "started by another caller")
        if row.state not in ("ready", "suspended", "submitted", "graded"):
            raise Conflict(f"session {session_id} is {row.state}: credentials exist only once it is ready")
        return _provider_call(lambda: self.provider.credentials(self.spec_of(row)))

    # -- commands --------------------------------------------------------------------------------------------------

    def start(self, *, lab_id: str, learner_id: str, principal: Principal) -> tuple[SandboxSession, bool]:
        """The live session of this learner for this lab, or a new one; ``True`` when it was made now."""
        lab = self.lab(lab_id)
        if not principal.may_act_for(learner_id):
            raise NotFound(f"there is no learner '{learner_id}' for this token")
        existing = self.live(lab_id, learner_id)
        if existing is not None:
            return existing, False
        with self.store.session() as db:
            allowance = allowances.of(db, lab=lab, learner_id=learner_id)
        if allowance.budget_left_usd <= 0:
            raise Conflict(f"learner {learner_id} has no budget left in lab {lab.id}: ${allowance.budget_usd:.2f} "
                           f"(the lab's and what was granted) minus ${allowance.spent_usd:.2f} spent by earlier "
                           "sessions; an instructor can grant more (labctl sessions grant)")
        if not self._placed(lab):
            self._check_reachable(lab)
        pool_hash = self.pool_hashes.get(lab.id) if lab.pool is not None else None
        if pool_hash is not None:
            claimed = self._claim_pooled(lab=lab, learner_id=learner_id, allowance=allowance, principal=principal,
                                  pool_hash=pool_hash)
            if claimed is not None:
                return claimed
        session_id = f"{lab.id}-{secrets.token_hex(5)}"
        cluster = self.place(lab, session_id=session_id)  # a 503 naming each cluster's reason when none has room
        now = self.clock()
        expires = now + parse_duration(lab.time.limit)
        row = SandboxSession(
            id=session_id, lab_id=lab.id, learner_id=learner_id, provider=lab.provider, cluster=cluster,
            state="provisioning", budget_usd=allowance.budget_left_usd, created_at=now, expires_at=expires,
            deadline_at=expires + parse_duration(lab.time.max_extension, allow_zero=True),
            live_key=f"{lab.id}/{learner_id}", cleanup_pending=False, started_by=principal.caller,
            # Born leased: the reconciler must not provision it beside this start.
            lease_holder=self.lease_name("start"), lease_expires_at=now + LEASE_TTL,
        )
        row.namespace = row.id
        with self._held_lock:
            self._held.add(row.id)
        try:
            try:
                with self.store.session() as db:
                    db.add(row)
                    db.flush()
                    db.add(self.new_event(row.id, "created", principal.name, lab=lab.id, learner=learner_id,
                                          budget_usd=float(allowance.budget_left_usd),
                                          attempts_left=allowance.attempts_left))
            except IntegrityError:
                self.release_place(row.id)
                existing = self.live(lab_id, learner_id)
                if existing is None:
                    raise Conflict(f"another start for {learner_id} in {lab_id} is finishing; try again") from None
                return existing, False
            with self.lease(row.id, "start", taken=True) as hold:
                return hold.settled(self.provision(row.id, actor=principal.name)), True
        finally:
            with self._held_lock:
                self._held.discard(row.id)

    def _claim_pooled(self, *, lab: Lab, learner_id: str, allowance: Allowance, principal: Principal,
                      pool_hash: str) -> tuple[SandboxSession, bool] | None:
        """Claim a fresh pooled sandbox of ``lab`` for the learner and hand it over; ``None``: none was left."""
        try:
            claimed = self._claims(_Claim(lab=lab, learner_id=learner_id, allowance=allowance, principal=principal,
                                          pool_hash=pool_hash))
        except IntegrityError:  # another start of this learner in this lab won: that session is the answer
            existing = self.live(lab.id, learner_id)
            if existing is None:
                raise Conflict(f"another start for {learner_id} in {lab.id} is finishing; try again") from None
            return existing, False
        if claimed is None:
            return None
        session_id, previous = claimed
        log.info("session %s claimed from the pool of %s for %s", session_id, lab.id, learner_id)
        with self.lease(session_id, "start", taken=True) as hold:
            return hold.settled(self._hand_over(session_id, previous=previous, actor=principal.name)), True

    def _take_alone(self, wanted: _Claim) -> tuple[str, SandboxSpec] | None:
        """One claim in a transaction of its own (:meth:`_take_in`)."""
        held: list[str] = []
        try:
            with self.store.session(writes=True) as db:
                return self._take_in(db, wanted, held)
        except BaseException:
            self._unhold(held)
            raise

    def _take_together(self, wanted: Sequence[_Claim]) -> list[tuple[str, SandboxSpec] | None]:
        """The claims waiting at one moment in one transaction (:class:`GroupCommit`), each as :meth:`_take_in`."""
        held: list[str] = []
        try:
            with self.store.session(writes=True) as db:
                return [self._take_in(db, claim, held) for claim in wanted]
        except BaseException:
            self._unhold(held)
            raise

    def _unhold(self, ids: Sequence[str]) -> None:
        with self._held_lock:
            self._held.difference_update(ids)

    def _take_in(self, db: Session, wanted: _Claim, held: list[str]) -> tuple[str, SandboxSpec] | None:
        """Claim the oldest fresh pooled row that no command holds, inside ``db``'s transaction, which no other writer
        can enter between its read and its write (SQLite: the write lock from its start; PostgreSQL: the row locked,
        rows other claims hold skipped), with the pool's account closed and the pooled past dropped. Returns its id
        (held by this process's commands from then on, and appended to ``held`` for the caller to let go if the
        transaction fails) and the spec its sandbox was made for; ``None``: no pooled sandbox is left."""
        lab, learner_id, allowance, principal = wanted.lab, wanted.learner_id, wanted.allowance, wanted.principal
        now = self.clock()
        expires = now + parse_duration(lab.time.limit)
        for _ in range(WRITE_RETRIES):
            row = db.scalars(select(SandboxSession).where(
                SandboxSession.lab_id == lab.id, SandboxSession.state == states.POOLED,
                SandboxSession.pool_hash == wanted.pool_hash,
                or_(SandboxSession.lease_expires_at.is_(None), SandboxSession.lease_expires_at <= now))
                .order_by(SandboxSession.ready_at, SandboxSession.id).limit(1)
                .with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            previous = self.spec_of(row)
            since = row.last_metered_at or row.ready_at or row.created_at
            won = db.execute(update(SandboxSession).where(
                SandboxSession.id == row.id, SandboxSession.state == states.POOLED,
                SandboxSession.version == row.version).values(
                state="provisioning", reason="claimed", learner_id=learner_id,
                live_key=f"{lab.id}/{learner_id}", budget_usd=allowance.budget_left_usd, created_at=now,
                ready_at=None, expires_at=expires,
                deadline_at=expires + parse_duration(lab.time.max_extension, allow_zero=True),
                started_by=principal.caller, pool_hash=None, accrued_usd=0, burn_rate_usd_per_hour=0,
                last_metered_at=None, meter_note=None, pod_hours=0, spot_pod_hours=0, idle_usd=0,
                last_activity_at=None,  # the starter's baseline stays: the pool took it unreached
                lease_holder=self.lease_name("start"), lease_expires_at=now + LEASE_TTL,
                version=row.version + 1).execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
            if won != 1:  # PostgreSQL: a write that is no claim (the pool's meter) came first; look again
                continue
            # Held before the claim commits: the reconciler never takes the claimed row for an orphan.
            with self._held_lock:
                self._held.add(row.id)
            held.append(row.id)
            # The idle time up to the claim is the pool's; from here on the money is the learner's.
            pool_ledger.charge(db, lab_id=lab.id, session_id=row.id, start_at=since, end_at=now,
                               burn_rate_usd_per_hour=Decimal(row.burn_rate_usd_per_hour or 0))
            db.execute(delete(SessionEvent).where(SessionEvent.session_id == row.id))
            db.add(self.new_event(row.id, "created", principal.name, lab=lab.id, learner=learner_id,
                                  budget_usd=float(allowance.budget_left_usd),
                                  attempts_left=allowance.attempts_left))
            return row.id, previous
        return None

    def _hand_over(self, session_id: str, *, previous: SandboxSpec, actor: str) -> SandboxSession:
        row = self.row_of(session_id)
        try:
            self.provider.hand_over(self.spec_of(row), previous=previous)
        except ProviderError as exc:
            return self._fail(session_id, actor=actor, reason=str(exc))
        return self._readies(_Ready(session_id=session_id, actor=actor, at=self.clock()))

    def _ready_alone(self, ready: _Ready) -> SandboxSession:
        return self.transition(ready.session_id, "ready", actor=ready.actor, reason="sandbox ready",
                               ready_at=ready.at, last_activity_at=ready.at, **_LEASE_ENDS)

    def _ready_together(self, readies: Sequence[_Ready]) -> list[SandboxSession]:
        """The hand-overs that finished at one moment made ready in one transaction (:class:`GroupCommit`); a row
        changed meanwhile fails the batch, whose readies are then written one by one (with :meth:`write`'s
        retries)."""
        with self.store.session(writes=True) as db:
            rows = []
            for ready in readies:
                row = db.get(SandboxSession, ready.session_id)
                if row is None:
                    raise NotFound(f"there is no session '{ready.session_id}'")
                rows.append(self.move(db, row, "ready", actor=ready.actor, reason="sandbox ready", ready_at=ready.at,
                                      last_activity_at=ready.at, **_LEASE_ENDS))
        return rows

    def stop(self, session_id: str, *, principal: Principal | None, reason: str = "stopped",
             actor: str | None = None) -> SandboxSession:
        """Mark the session terminating; :meth:`finish_stop` removes the sandbox (run it in the background)."""
        row = self.get(session_id, principal=principal) if principal else self.row_of(session_id)
        if row.state in ("terminating", "terminated"):  # a repeated stop: nothing more to do
            return row
        with self.lease(session_id, "stop"):
            return self.transition(session_id, "terminating",
                                   actor=actor or (principal.name if principal else "timer"), reason=reason,
                                   live_key=None)

    def finish_stop(self, session_id: str, *, actor: str) -> SandboxSession:
        self.release_place(session_id)  # a sandbox going away holds no room its pods never took
        with self.lease(session_id, "stop"):
            row = self.row_of(session_id)
            if row.state == "terminated":  # another stop (a sweep, a second DELETE) finished it first
                return row
            if row.state != "terminating":
                raise Conflict(f"session {session_id} is {row.state}, not terminating: there is nothing to finish")
            try:
                self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
            except ProviderError as exc:
                log.warning("could not remove the sandbox of %s yet: %s", session_id, exc)
                return self.update(session_id, cleanup_pending=True, event=("cleanup_failed", actor, str(exc)))
            return self.transition(session_id, "terminated", actor=actor, reason="sandbox removed",
                                   cleanup_pending=False, suspension=None)

    def end_lost(self, session_id: str, *, listed_at: datetime, actor: str) -> SandboxSession | None:
        """A live session whose sandbox the backend's listing at ``listed_at`` did not hold (a recreated cluster, a
        namespace deleted behind labctl's back) ends, terminated with the reason: it can be neither metered nor used.

        Decided again under the lease on the fresh row: a session made ready at or after the listing (a start, a reset
        finishing) is not judged by it. ``None``: nothing to do.
        """
        with self.lease(session_id, "repair"):
            row = self.row_of(session_id)
            if row.state not in states.LIVE or row.state == "provisioning" or row.ready_at is None \
                    or row.ready_at >= listed_at:
                return None
            what = f"namespace {row.namespace}" if row.provider == "kubernetes" else f"{row.provider} sandbox"
            reason = (f"its {what} no longer exists (was the cluster recreated, or was it deleted outside labctl?); "
                      "the session cannot be metered or used")
            log.warning("session %s lost its sandbox: %s", session_id, reason)
            self.transition(session_id, "terminating", actor=actor, reason=reason, live_key=None)
            try:
                self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)  # whatever is left of it
            except ProviderError as exc:
                return self.update(session_id, cleanup_pending=True, event=("cleanup_failed", actor, str(exc)))
            return self.transition(session_id, "terminated", actor=actor, reason=reason, cleanup_pending=False,
                                   suspension=None)

    def remove_leftover(self, session_id: str, *, actor: str) -> bool:
        """A finished (terminated or failed) session whose sandbox the backend still holds: remove it, with an event.
        ``False``: the session is not finished (nothing done)."""
        with self.lease(session_id, "cleanup"):
            row = self.row_of(session_id)
            if row.state not in states.FINAL:
                return False
            log.warning("session %s is %s but its sandbox still exists: removing it", session_id, row.state)
            try:
                self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
            except ProviderError as exc:
                self.update(session_id, cleanup_pending=True, event=("cleanup_failed", actor, str(exc)))
                return True
            self.update(session_id, cleanup_pending=False,
                        event=("leftover_removed", actor, f"the sandbox outlived the {row.state} session; removed"))
            return True

    def reset(self, session_id: str, *, principal: Principal) -> SandboxSession:
        """Remove the sandbox and make it again from scratch (same session, same deadlines, same ledger).

        A suspension the caller could not lift by resuming is not lifted by a reset either: that reset is refused.
        """
        row = self.get(session_id, principal=principal)
        states.check(row.state, "provisioning")
        self._check_may_lift(row, principal, doing="reset")
        with self.lease(session_id, "reset"):
            row = self.row_of(session_id)
            self._check_may_lift(row, principal, doing="reset")  # it may have changed before the lease was ours
            self.transition(session_id, "provisioning", actor=principal.name, reason="reset", suspend_reason=None,
                            suspension=None)
            try:
                self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
            except ProviderError as exc:
                return self._fail(session_id, actor=principal.name,
                                  reason=f"reset could not remove the sandbox: {exc}")
            return self.provision(session_id, actor=principal.name)

    def extend(self, session_id: str, *, seconds: int, principal: Principal) -> SandboxSession:
        """More time, up to the lab's deadline (an extension past it is refused, not silently cut)."""
        row = self.get(session_id, principal=principal)
        if row.state not in ("ready", "suspended"):
            raise Conflict(f"session {session_id} is {row.state}: only a ready or suspended session can be extended")
        assert row.expires_at is not None and row.deadline_at is not None
        expires, deadline = row.expires_at, row.deadline_at
        if expires >= deadline:
            raise Conflict(f"session {session_id} already runs until its deadline {deadline.isoformat()}; "
                           "the lab allows no more time")
        new_expiry = policy.extended_expiry(expires_at=expires, deadline_at=deadline, seconds=seconds)
        return self.update(session_id, expires_at=new_expiry, expiry_warned_at=None,
                            event=("extended", principal.name, f"until {new_expiry.isoformat()}"))

    def suspend(self, session_id: str, *, principal: Principal | None, cause: str, reason: str,
                actor: str | None = None) -> SandboxSession:
        """Stop all compute and keep the work (``cause``: instructor, budget, meter, idle, off-hours, learner).

        What the provider stopped is stored with the session; on an already suspended session a stronger cause
        replaces the weaker one (an idle suspension that runs over budget becomes a budget suspension).
        """
        row = self.get(session_id, principal=principal) if principal else self.row_of(session_id)
        who = actor or (principal.name if principal else "timer")
        if row.state == "suspended" and CAUSE_RANK.get(cause, 0) > CAUSE_RANK.get(row.suspend_reason or "", 0):
            return self.update(session_id, suspend_reason=cause, reason=reason,
                               event=("suspended", who, reason), announce=("session.suspended", {"reason": cause}))
        states.check(row.state, "suspended")
        with self.lease(session_id, "suspend"):
            row = self.row_of(session_id)
            states.check(row.state, "suspended")
            record = _provider_call(lambda: self.provider.suspend(self.spec_of(row)))
            return self.transition(session_id, "suspended", actor=who, reason=reason, suspend_reason=cause,
                                   suspension=record.model_dump(mode="json"), detail={"stopped": record.summary()})

    def resume(self, session_id: str, *, principal: Principal | None, reason: str,
               actor: str | None = None) -> SandboxSession:
        """Restore exactly what :meth:`suspend` stopped (the stored record, not what the sandbox says now)."""
        row = self.get(session_id, principal=principal) if principal else self.row_of(session_id)
        _check_suspended(row)
        self._check_may_lift(row, principal, doing="resume")
        with self.lease(session_id, "resume"):
            row = self.row_of(session_id)
            _check_suspended(row)
            self._check_may_lift(row, principal, doing="resume")
            record = Suspension.model_validate(row.suspension or {})
            _provider_call(lambda: self.provider.resume(self.spec_of(row), record))
            return self.transition(session_id, "ready", actor=actor or (principal.name if principal else "timer"),
                                   reason=reason, suspend_reason=None, suspension=None)

    def request_budget(self, session_id: str, *, usd: float, reason: str, principal: Principal) -> SandboxSession:
        """A learner asks for more money; the request gets a new id, so an approval of an older one cannot land."""
        row = self.get(session_id, principal=principal)
        lab = self.lab(row.lab_id)
        amount = Decimal(str(usd))
        cap = lab.budget.approval_cap_usd
        if amount > cap:
            raise Unprocessable(f"${amount:.2f} is more than one request may ask for in lab {lab.id}: at most "
                                f"${cap:.2f}")
        request_id = f"req-{secrets.token_hex(5)}"
        return self.update(session_id, budget_request_usd=amount, budget_request_reason=reason,
                           budget_request_id=request_id,
                           event=("budget_requested", principal.name, f"{request_id}: ${amount:.2f}: {reason}"))

    def decide_budget(self, session_id: str, *, approve: bool, principal: Principal, request_id: str | None = None,
                      usd: float | None = None) -> SandboxSession:
        """An instructor approves or refuses the pending request, naming it by id or amount (compare-and-set).

        A request changed since the instructor looked (another id or amount) is a 409; an approval above the lab's
        ``budget.max_approval_usd`` is a 409. The approved money is a grant to the learner in the lab.
        """
        principal.require("instructor")
        row = self.get(session_id, principal=principal)
        lab = self.lab(row.lab_id)

        def decide(db: Session, current: SandboxSession) -> SandboxSession:
            if current.budget_request_usd is None:
                raise Conflict(f"session {session_id} has no pending budget request")
            if approve and request_id is None and usd is None:
                raise BadRequest("name the request you approve: its request_id or its usd amount, as the session "
                                 f"shows them (GET /v1/sessions/{session_id}: budget_request_id, budget_request_usd)")
            pending = f"{current.budget_request_id} for ${current.budget_request_usd:.2f}"
            if request_id is not None and request_id != current.budget_request_id:
                raise Conflict(f"the request you named ({request_id}) is not the pending one: that is {pending}; "
                               "it changed since you looked, so look again and decide on it")
            if usd is not None and Decimal(str(usd)).quantize(Decimal("0.0001")) != current.budget_request_usd:
                raise Conflict(f"the pending request is {pending}, not ${usd:.2f}; it changed since you looked, so "
                               "look again and decide on it")
            amount = Decimal(current.budget_request_usd)
            if not approve:
                self._set(db, current, event=("budget_denied", principal.name, f"{pending} refused"),
                          budget_request_usd=None, budget_request_reason=None, budget_request_id=None)
                return current
            cap = lab.budget.approval_cap_usd
            if amount > cap:
                raise Conflict(f"{pending} is more than one approval may add in lab {lab.id} (at most ${cap:.2f}); "
                               "deny it so the learner can ask for less, or grant money directly")
            total = Decimal(current.budget_usd) + amount
            crossed = [p for p in (current.thresholds_crossed or [])
                       if policy.budget_share(Decimal(current.accrued_usd or 0), total) >= p]
            db.add(Grant(lab_id=current.lab_id, learner_id=current.learner_id, attempts=0, usd=amount,
                         reason=f"approved {current.budget_request_id}: {current.budget_request_reason}",
                         actor=principal.name, at=self.clock(), session_id=current.id))
            self._set(db, current, event=("budget_approved", principal.name,
                                          f"{pending} approved: budget now ${total:.2f}"),
                      budget_usd=total, budget_extra_usd=Decimal(current.budget_extra_usd or 0) + amount,
                      budget_request_usd=None, budget_request_reason=None, budget_request_id=None,
                      thresholds_crossed=crossed)
            return current

        updated = self.write(session_id, decide)
        return self._lift_budget_suspension(updated, actor=principal.name, reason="more budget approved")

    def allowance(self, *, lab_id: str, learner_id: str, principal: Principal) -> Allowance:
        """What the learner has left in the lab (attempts, money), over all its sessions."""
        lab = self.lab(lab_id)
        if not principal.may_act_for(learner_id):
            raise NotFound(f"there is no learner '{learner_id}' for this token")
        live = self.live(lab_id, learner_id)
        with self.store.session() as db:
            return allowances.of(db, lab=lab, learner_id=learner_id, excluding=live.id if live else None)

    def grant(self, *, lab_id: str, learner_id: str, attempts: int, usd: Decimal, reason: str,
              principal: Principal) -> Allowance:
        """An instructor gives the learner more attempts or money in the lab (recorded as a grant and an event).

        The live session, if any, gets the money at once (a budget suspension lifts when spending is below the
        suspend level again) and, with attempts, becomes writable again when it was frozen for want of them.
        """
        principal.require("instructor")
        lab = self.lab(lab_id)
        if attempts < 0 or usd < 0 or (attempts == 0 and usd == 0):
            raise Unprocessable("a grant gives at least one attempt or some money, and takes nothing away")
        live = self.live(lab_id, learner_id)
        with self.store.session() as db:
            db.add(Grant(lab_id=lab.id, learner_id=learner_id, attempts=attempts, usd=usd, reason=reason,
                         actor=principal.name, at=self.clock(), session_id=live.id if live else None))
        log.info("granted %d attempt(s) and $%.2f to %s in %s: %s", attempts, usd, learner_id, lab_id, reason)
        if live is not None:
            def give(db: Session, current: SandboxSession) -> SandboxSession:
                total = Decimal(current.budget_usd) + usd
                crossed = [p for p in (current.thresholds_crossed or [])
                           if policy.budget_share(Decimal(current.accrued_usd or 0), total) >= p]
                self._set(db, current, event=("granted", principal.name,
                                              f"{attempts} attempt(s) and ${usd:.2f}: {reason}"),
                          budget_usd=total, budget_extra_usd=Decimal(current.budget_extra_usd or 0) + usd,
                          thresholds_crossed=crossed)
                return current

            updated = self.write(live.id, give)
            updated = self._lift_budget_suspension(updated, actor=principal.name, reason="more budget granted")
            if attempts and updated.state == "graded":
                self.reopen(live.id, actor=principal.name, reason=f"{attempts} more attempt(s) granted")
        return self.allowance(lab_id=lab_id, learner_id=learner_id, principal=principal)

    def reopen(self, session_id: str, *, actor: str, reason: str, leased: bool = False) -> SandboxSession:
        """A graded session with attempts left: make the sandbox writable again (``ready``); ``leased``: the caller
        holds the session's lease already."""
        with contextlib.nullcontext() if leased else self.lease(session_id, "reopen"):
            row = self.row_of(session_id)
            states.check(row.state, "ready")
            _provider_call(lambda: self.provider.freeze(self.spec_of(row), frozen=False))
            return self.transition(session_id, "ready", actor=actor, reason=reason)

    def touch(self, session_id: str) -> None:
        """Record learner activity (idle timer), at most once per :data:`TOUCH_EVERY`.

        A read must not contend with the commands and the meter: this one statement sets only
        ``last_activity_at`` and leaves the row's version alone (no versioned writer sets that column from an old
        read: the ORM writes only the columns a change sets), so no command loses its write to a learner's polling.
        """
        now = self.clock()
        with self.store.session() as db:
            db.execute(update(SandboxSession).where(
                SandboxSession.id == session_id,
                (SandboxSession.last_activity_at.is_(None)) | (SandboxSession.last_activity_at < now - TOUCH_EVERY))
                .values(last_activity_at=now).execution_options(synchronize_session=False))

    def reconcile(self, *, actor: str = "reconciler", held: Callable[[], bool] = leader.always) -> dict[str, int]:
        """Finish what an interrupted service left: resume starts, finish stops, retry cleanups.

        A session whose lease another command holds (a reset in flight, a start) is left alone; the pass stops
        before the next session once ``held`` says this replica no longer leads.
        """
        counts = {"resumed": 0, "stopped": 0, "cleaned": 0}
        with self.store.session() as db:
            rows = db.scalars(select(SandboxSession).where(
                (SandboxSession.state.in_(("provisioning", "terminating")))
                | (SandboxSession.cleanup_pending.is_(True)))).all()
        now = self.clock()
        for row in rows:
            if not held():
                break
            if row.id in self._held or not self._lease_free(row, now):
                continue  # a command is on it now; the next pass looks again
            try:
                if row.state == "provisioning":
                    with self.lease(row.id, "reconcile"):
                        if self.row_of(row.id).state == "provisioning":
                            self.provision(row.id, actor=actor)
                            counts["resumed"] += 1
                elif row.state == "terminating":
                    self.finish_stop(row.id, actor=actor)
                    counts["stopped"] += 1
                else:
                    with self.lease(row.id, "cleanup"):
                        self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
                        self.update(row.id, cleanup_pending=False, event=("cleaned", actor, "leftovers removed"))
                        counts["cleaned"] += 1
            except (ProviderError, Conflict) as exc:
                log.warning("reconcile of %s did not finish: %s", row.id, exc)
        return counts

    # -- the session lease -----------------------------------------------------------------------------------------

    @contextmanager
    def lease(self, session_id: str, what: str, *, taken: bool = False) -> Iterator[Hold]:
        """Hold the session for one command (``taken``: it was born leased); a second one gets a 409."""
        if taken:
            with self._held_lock:
                self._held.add(session_id)
        else:
            self._claim(session_id, what)
        hold = Hold()
        try:
            yield hold
        finally:
            self._release(session_id, read=not hold.ended)

    def lease_name(self, what: str) -> str:
        return f"{what}@{self.holder}"

    def _claim(self, session_id: str, what: str) -> None:
        with self._held_lock:
            if session_id in self._held:
                raise Conflict(f"another command on session {session_id} is in progress; try again in a moment")
            self._held.add(session_id)
        now = self.clock()

        def claim(db: Session, row: SandboxSession) -> None:
            if not self._lease_free(row, now):
                doing = (row.lease_holder or "").rpartition("@")[0]
                raise Conflict(f"session {session_id} is busy ({doing} in progress); try again in a moment")
            row.lease_holder = self.lease_name(what)
            row.lease_expires_at = now + LEASE_TTL

        try:
            self.write(session_id, claim)
        except BaseException:
            with self._held_lock:
                self._held.discard(session_id)
            raise

    def _lease_free(self, row: SandboxSession, now: datetime) -> bool:
        """Free when unleased or expired; a lease of this replica that no command of this process holds was left by
        a killed predecessor (replica ids are stable across restarts), so it is free too."""
        busy_until = row.lease_expires_at
        holder = (row.lease_holder or "").rpartition("@")[2]
        return busy_until is None or busy_until <= now or holder == self.holder

    def _release(self, session_id: str, *, read: bool = True) -> None:
        """Let the session go: in this process, and in the store where the lease is still this replica's (``read``
        false: the command's last write ended it, see :class:`Hold`)."""
        def ours(row: SandboxSession) -> bool:
            return (row.lease_holder or "").rpartition("@")[2] == self.holder

        def release(db: Session, row: SandboxSession) -> None:
            if ours(row):
                row.lease_holder = None
                row.lease_expires_at = None

        try:
            if not read:
                return
            with self.store.session() as db:  # a command's last write often ended the lease already: only a read
                row = db.get(SandboxSession, session_id)
            if row is not None and ours(row):
                self.write(session_id, release)
        except (NotFound, Conflict) as exc:  # it expires on its own
            log.warning("could not release the lease of %s: %s", session_id, exc)
        finally:
            with self._held_lock:
                self._held.discard(session_id)

    # -- internals -------------------------------------------------------------------------------------------------

    def _placed(self, lab: Lab) -> bool:
        return self.placement is not None and lab.provider == "kubernetes"

    def place(self, lab: Lab, *, session_id: str) -> str | None:
        """The cluster a new sandbox of ``lab`` goes to (:mod:`labctl.service.clusters`); ``None`` for a cloud lab,
        or when the provider has one cluster and was given no placement. Nothing is recorded yet."""
        if self.placement is None or not self._placed(lab):
            return None
        return self.placement.place(lab, session_id=session_id, namespace=session_id)

    def release_place(self, session_id: str) -> None:
        """A start that made no sandbox frees the room its placement held."""
        if self.placement is not None:
            self.placement.release(session_id)

    def _check_reachable(self, lab: Lab) -> None:
        """The lab's own provider answers (a 503 naming it otherwise, before anything is recorded); a cloud that is
        down does not stop starts of Kubernetes labs, nor the other way round."""
        backend = self.provider.of(lab.provider) if isinstance(self.provider, ProviderRegistry) else self.provider
        try:
            backend.ping()
        except ProviderError as exc:
            raise Unavailable(f"the {lab.provider} backend is unreachable, so no sandbox can be made now for lab "
                              f"{lab.id}: {redact.addresses(str(exc))}. Try again later.") from exc

    def _check_may_lift(self, row: SandboxSession, principal: Principal | None, *, doing: str) -> None:
        """Refuse (409) a resume or reset that would lift a suspension the caller may not lift."""
        if row.state != "suspended":
            return
        lab = self.lab(row.lab_id)
        accrued, budget = Decimal(row.accrued_usd or 0), Decimal(row.budget_usd)
        if policy.stop_level(accrued_usd=accrued, budget_usd=budget, lab=lab) is not None:
            raise Conflict(f"session {row.id} has spent ${accrued:.2f} of its ${budget:.2f} budget, which is at its "
                           f"suspend level, so a {doing} cannot restart it; ask for more budget (POST /v1/sessions/"
                           f"{row.id}/budget-requests) for an instructor to approve, or an instructor grants more")
        if principal is not None and principal.role != "instructor" and row.suspend_reason in policy.STICKY:
            raise Conflict(f"session {row.id} was suspended ({row.suspend_reason}: {row.reason}); only an "
                           f"instructor can lift that, and a {doing} does not")

    def _lift_budget_suspension(self, row: SandboxSession, *, actor: str, reason: str) -> SandboxSession:
        lab = self.lab(row.lab_id)
        if (row.state == "suspended" and row.suspend_reason == "budget"
                and policy.stop_level(accrued_usd=Decimal(row.accrued_usd or 0), budget_usd=Decimal(row.budget_usd),
                                      lab=lab) is None):
            return self.resume(row.id, principal=None, reason=reason, actor=actor)
        return row

    def provision(self, session_id: str, *, actor: str) -> SandboxSession:
        """Make the sandbox; it becomes ``ready`` for its learner, or ``pooled`` when it is a warm pool's. The
        command that provisions ends with it: that write also ends the command's lease (one write, not two)."""
        row = self.row_of(session_id)
        try:
            self.provider.provision(self.spec_of(row))
            taken = self.baseline(session_id) if self.baseline is not None else None
        except ProviderError as exc:
            return self._fail(session_id, actor=actor, reason=str(exc))
        now = self.clock()
        fields: dict[str, Any] = {"ready_at": now}
        if taken is not None:
            fields |= {"starter_burn_rate_usd_per_hour": taken.burn_rate_usd_per_hour,
                       "starter_service": None if taken.service is None
                       else [f.model_dump(mode="json") for f in taken.service]}
            if taken.unsettled:  # a full cluster: the starter's baseline is what it holds now
                log.warning("session %s: the starter's baseline was taken before it settled: %s", session_id,
                            "; ".join(taken.unsettled))
        if row.pool_hash is not None:
            return self.transition(session_id, states.POOLED, actor=actor, reason="warm, unclaimed", **fields,
                                   **_LEASE_ENDS)
        return self.transition(session_id, "ready", actor=actor, reason="sandbox ready", last_activity_at=now,
                               **fields, **_LEASE_ENDS)

    def _fail(self, session_id: str, *, actor: str, reason: str) -> SandboxSession:
        """Mark failed with the reason and remove whatever was made; on a cleanup failure leave it to reconcile."""
        self.release_place(session_id)
        row = self.row_of(session_id)
        try:
            self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
            pending = False
        except ProviderError as exc:
            log.warning("cleanup of failed session %s did not finish: %s", session_id, exc)
            pending = True
        return self.transition(session_id, "failed", actor=actor, reason=reason, live_key=None,
                               cleanup_pending=pending)

    def transition(self, session_id: str, target: str, *, actor: str, reason: str,
                   detail: Mapping[str, Any] | None = None, **fields: Any) -> SandboxSession:
        return self.write(session_id, lambda db, row: self.move(db, row, target, actor=actor, reason=reason,
                                                                 detail=detail, **fields))

    def move(self, db: Session, row: SandboxSession, target: str, *, actor: str, reason: str,
             detail: Mapping[str, Any] | None = None, **fields: Any) -> SandboxSession:
        """Change ``row``'s state inside ``db``'s transaction, with its event and webhook (part of a larger change)."""
        states.check(row.state, target)
        previous = row.state
        row.state = target
        row.reason = reason
        for key, value in fields.items():
            setattr(row, key, value)
        db.add(self.new_event(row.id, target, actor, previous=previous, reason=reason, **(detail or {})))
        announced = _ANNOUNCED.get((previous, target)) or _ANNOUNCED.get(("*", target))
        if announced and row.pool_hash is None:  # a pool's unclaimed sandbox is nobody's news
            extra = {"reason": row.suspend_reason if target == "suspended" else reason}
            if announced == "session.ready":
                extra = {"expires_at": _iso(row.expires_at), "deadline_at": _iso(row.deadline_at)}
            self.announce(db, row, announced, **extra)
        return row

    def update(self, session_id: str, *, event: tuple[str, str, str],
               announce: tuple[str, dict[str, Any]] | None = None, **fields: Any) -> SandboxSession:
        """Change fields and record an event; ``announce`` also emits a webhook event in the same transaction."""
        def change(db: Session, row: SandboxSession) -> SandboxSession:
            self._set(db, row, event=event, **fields)
            if announce is not None:
                self.announce(db, row, announce[0], **announce[1])
            return row

        return self.write(session_id, change)

    def _set(self, db: Session, row: SandboxSession, *, event: tuple[str, str, str], **fields: Any) -> None:
        kind, actor, reason = event
        for key, value in fields.items():
            setattr(row, key, value)
        db.add(self.new_event(row.id, kind, actor, reason=reason))

    def write(self, session_id: str, change: Callable[[Session, SandboxSession], T], *,
               retries: int = WRITE_RETRIES) -> T:
        """Run ``change`` on the fresh row in one transaction; a concurrent writer's win means read and decide again
        (the row's version guards it: ``change`` only reads and writes the store, so running it again is safe), and
        only after ``retries`` such losses a 409."""
        for attempt in range(retries):
            try:
                with self.store.session(writes=True) as db:  # SQLite: nobody writes between this read and the write
                    row = db.get(SandboxSession, session_id)
                    if row is None:
                        raise NotFound(f"there is no session '{session_id}'")
                    result = change(db, row)
                return result
            except StaleDataError:
                # Writers that lost together would collide again at once: wait a random, growing moment.
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** attempt)))  # noqa: S311 - jitter, not a secret
        raise Conflict(f"session {session_id} was changed by another command at the same moment; try again")

    def announce(self, db: Session, row: SandboxSession, event_type: str, **data: Any) -> None:
        """Write a webhook event into the outbox, in ``db``'s transaction (it commits with the change it reports)."""
        payload = {"session_id": row.id, "lab_id": row.lab_id, "learner_id": row.learner_id, **data}
        outbox.emit(db, type=event_type, data=payload, session_id=row.id, now=self.clock())

    def row_of(self, session_id: str) -> SandboxSession:
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
        if row is None:
            raise NotFound(f"there is no session '{session_id}'")
        return row

    def live(self, lab_id: str, learner_id: str) -> SandboxSession | None:
        with self.store.session() as db:
            return db.scalar(select(SandboxSession).where(SandboxSession.live_key == f"{lab_id}/{learner_id}"))

    def new_event(self, session_id: str, kind: str, actor: str, **detail: Any) -> SessionEvent:
        return SessionEvent(session_id=session_id, at=self.clock(), kind=kind, actor=actor, detail=detail)

    def snapshot_spec(self, row: SandboxSession) -> SandboxSpec:
        """The spec a snapshot of the sandbox is taken with: a pooled sandbox has no learner yet, so its snapshot
        names the pool as its owner."""
        spec = self.spec_of(row)
        return spec if spec.learner_id else dataclasses.replace(spec, learner_id=POOL_OWNER)

    def spec_of(self, row: SandboxSession) -> SandboxSpec:
        assert row.expires_at is not None and row.namespace is not None
        return SandboxSpec(session_id=row.id, lab=self.lab(row.lab_id), learner_id=row.learner_id,
                           namespace=row.namespace, expires_at=row.expires_at,
                           budget_usd=float(row.budget_usd), started_at=row.ready_at or row.created_at,
                           cluster=row.cluster)


@dataclass
class Hold:
    """One command's hold on a session (:meth:`Sessions.lease`). ``settled(row)`` is given the row the command's last
    write committed and returns it; when that write ended the lease (a start made ready), letting the session go
    needs no read of the store."""

    ended: bool = False

    def settled(self, row: SandboxSession) -> SandboxSession:
        self.ended = row.lease_holder is None
        return row


@dataclass(frozen=True)
class _Claim:
    """A start that wants a pooled sandbox of ``lab`` made from ``pool_hash``."""

    lab: Lab
    learner_id: str
    allowance: Allowance
    principal: Principal
    pool_hash: str


@dataclass(frozen=True)
class _Ready:
    """A claimed sandbox handed over to its learner at ``at``, to be marked ready."""

    session_id: str
    actor: str
    at: datetime


# The fields of a command's last write that end its lease (:meth:`Sessions.lease`'s release is then a read).
_LEASE_ENDS: dict[str, Any] = {"lease_holder": None, "lease_expires_at": None}

# Which transitions the exam platform hears about: (from, to) -> event type ("*" = from anywhere).
_ANNOUNCED = {
    ("provisioning", "ready"): "session.ready",
    ("*", "suspended"): "session.suspended",
    ("*", "terminated"): "session.terminated",
}


def _check_suspended(row: SandboxSession) -> None:
    if row.state != "suspended":
        raise Conflict(f"session {row.id} is {row.state}, not suspended: there is nothing to resume")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _provider_call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ProviderUnavailable as exc:
        raise Unavailable(redact.addresses(str(exc))) from exc
    except ProviderError as exc:
        raise Conflict(redact.addresses(str(exc))) from exc
