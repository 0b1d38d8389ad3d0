"""Sessions: start, inspect, reset and stop learners' sandboxes, and reconcile what an interruption left behind.

The store decides: a start first writes a ``provisioning`` row whose ``live_key`` ("<lab>/<learner>") is unique, so
concurrent starts for the same learner and lab give one session; then the provider converges the sandbox. A start
that fails part way marks the session ``failed`` with the reason and removes what was made; when even that fails the
row keeps ``cleanup_pending`` and :meth:`Sessions.reconcile` finishes the job (it also resumes starts that a killed
service left in ``provisioning``).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labctl import redact
from labctl.catalog.durations import parse_duration
from labctl.catalog.models import Lab
from labctl.errors import Conflict, Forbidden, NotFound, Unavailable
from labctl.outbox import events as outbox
from labctl.ports import Credentials, ProviderError, ProviderUnavailable, SandboxProvider, SandboxSpec
from labctl.service import policy, roles, states
from labctl.service.auth import Principal
from labctl.store.db import Store
from labctl.store.models import SandboxSession, SessionEvent

log = logging.getLogger("labctl.sessions")

T = TypeVar("T")
LEARNER_ID = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DESTROY_WAIT_S = 120.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sessions:
    """The session use cases over one store, one provider and the lab catalog."""

    def __init__(self, *, store: Store, provider: SandboxProvider, catalog: Mapping[str, Lab],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.provider = provider
        self.catalog = catalog
        self.clock = clock

    # -- queries ---------------------------------------------------------------------------------------------------

    def lab(self, lab_id: str) -> Lab:
        lab = self.catalog.get(lab_id)
        if lab is None:
            known = ", ".join(sorted(self.catalog)) or "none"
            raise NotFound(f"there is no lab '{lab_id}'; known labs: {known}")
        return lab

    def get(self, session_id: str, *, principal: Principal) -> SandboxSession:
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
        if row is None or not principal.may_act_for(row.learner_id):
            raise NotFound(f"there is no session '{session_id}'")
        if principal.role == "learner":
            self.touch(session_id)  # learner API use counts as activity for the idle timer
        return row

    def list_sessions(self, *, principal: Principal, lab_id: str | None = None, learner_id: str | None = None,
             state: str | None = None) -> list[SandboxSession]:
        if principal.role == "learner":
            learner_id = principal.learner_id
        query = select(SandboxSession).order_by(SandboxSession.created_at.desc())
        if lab_id:
            query = query.where(SandboxSession.lab_id == lab_id)
        if learner_id:
            query = query.where(SandboxSession.learner_id == learner_id)
        if state:
            query = query.where(SandboxSession.state == state)
        with self.store.session() as db:
            return list(db.scalars(query).all())

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
        try:
            self.provider.ping()
        except ProviderError as exc:
            raise Unavailable(f"the {self.provider.name} backend is unreachable, so no sandbox can be made now: "
                              f"{redact.addresses(str(exc))}. Try again later.") from exc
        now = self.clock()
        expires = now + parse_duration(lab.time.limit)
        row = SandboxSession(
            id=f"{lab.id}-{secrets.token_hex(5)}", lab_id=lab.id, learner_id=learner_id, provider=lab.provider,
            state="provisioning", budget_usd=lab.budget.usd, created_at=now, expires_at=expires,
            deadline_at=expires + parse_duration(lab.time.max_extension, allow_zero=True),
            live_key=f"{lab.id}/{learner_id}", cleanup_pending=False, started_by=principal.caller,
        )
        row.namespace = row.id
        try:
            with self.store.session() as db:
                db.add(row)
                db.flush()
                db.add(self.new_event(row.id, "created", principal.name, lab=lab.id, learner=learner_id))
        except IntegrityError:
            existing = self.live(lab_id, learner_id)
            if existing is None:
                raise Conflict(f"another start for {learner_id} in {lab_id} is finishing; try again") from None
            return existing, False
        return self._provision(row.id, actor=principal.name), True

    def stop(self, session_id: str, *, principal: Principal | None, reason: str = "stopped",
             actor: str | None = None) -> SandboxSession:
        """Mark the session terminating; :meth:`finish_stop` removes the sandbox (run it in the background)."""
        row = self.get(session_id, principal=principal) if principal else self.row_of(session_id)
        if row.state == "terminating":
            return row
        return self.transition(session_id, "terminating", actor=actor or (principal.name if principal else "timer"),
                                reason=reason, live_key=None)

    def finish_stop(self, session_id: str, *, actor: str) -> SandboxSession:
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
        if row is None or row.state != "terminating":
            raise Conflict(f"session {session_id} is not terminating")
        try:
            self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
        except ProviderError as exc:
            log.warning("could not remove the sandbox of %s yet: %s", session_id, exc)
            return self.update(session_id, cleanup_pending=True, event=("cleanup_failed", actor, str(exc)))
        return self.transition(session_id, "terminated", actor=actor, reason="sandbox removed",
                                cleanup_pending=False)

    def reset(self, session_id: str, *, principal: Principal) -> SandboxSession:
        """Remove the sandbox and make it again from scratch (same session, same deadlines)."""
        row = self.get(session_id, principal=principal)
        states.check(row.state, "provisioning")
        self.transition(session_id, "provisioning", actor=principal.name, reason="reset")
        try:
            self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
        except ProviderError as exc:
            return self._fail(session_id, actor=principal.name, reason=f"reset could not remove the sandbox: {exc}")
        return self._provision(session_id, actor=principal.name)

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
        """Scale the sandbox to zero and keep the work (``cause``: instructor, budget, idle, off-hours)."""
        row = self.get(session_id, principal=principal) if principal else self.row_of(session_id)
        states.check(row.state, "suspended")
        _provider_call(lambda: self.provider.suspend(self.spec_of(row)))
        return self.transition(session_id, "suspended", actor=actor or (principal.name if principal else "timer"),
                                reason=reason, suspend_reason=cause)

    def resume(self, session_id: str, *, principal: Principal | None, reason: str,
               actor: str | None = None) -> SandboxSession:
        """Restore exactly what :meth:`suspend` stopped."""
        row = self.get(session_id, principal=principal) if principal else self.row_of(session_id)
        states.check(row.state, "ready")
        if principal is not None and principal.role != "instructor" and row.suspend_reason == "budget":
            raise Conflict(f"session {session_id} was suspended because its budget ran out; ask for more budget "
                           "(an instructor approves it) or ask an instructor to resume it")
        _provider_call(lambda: self.provider.resume(self.spec_of(row)))
        return self.transition(session_id, "ready", actor=actor or (principal.name if principal else "timer"),
                                reason=reason, suspend_reason=None)

    def request_budget(self, session_id: str, *, usd: float, reason: str, principal: Principal) -> SandboxSession:
        self.get(session_id, principal=principal)
        return self.update(session_id, budget_request_usd=usd, budget_request_reason=reason,
                            event=("budget_requested", principal.name, f"${usd:.2f}: {reason}"))

    def decide_budget(self, session_id: str, *, approve: bool, principal: Principal) -> SandboxSession:
        """An instructor approves (adds the requested money) or refuses a learner's request for more budget."""
        principal.require("instructor")
        row = self.get(session_id, principal=principal)
        if row.budget_request_usd is None:
            raise Conflict(f"session {session_id} has no pending budget request")
        if not approve:
            return self.update(session_id, budget_request_usd=None, budget_request_reason=None,
                                event=("budget_denied", principal.name, f"${row.budget_request_usd:.2f} refused"))
        extra = Decimal(row.budget_extra_usd or 0) + Decimal(row.budget_request_usd)
        total = Decimal(row.budget_usd) + Decimal(row.budget_request_usd)
        crossed = [p for p in (row.thresholds_crossed or [])
                   if policy.budget_share(Decimal(row.accrued_usd or 0), total) >= p]
        updated = self.update(session_id, budget_usd=total, budget_extra_usd=extra, budget_request_usd=None,
                               budget_request_reason=None, thresholds_crossed=crossed,
                               event=("budget_approved", principal.name, f"budget now ${total:.2f}"))
        if updated.state == "suspended" and updated.suspend_reason == "budget":
            return self.resume(session_id, principal=None, reason="more budget approved", actor=principal.name)
        return updated

    def touch(self, session_id: str) -> None:
        """Record learner activity (idle timer)."""
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
            if row is not None:
                row.last_activity_at = self.clock()

    def reconcile(self, *, actor: str = "reconciler") -> dict[str, int]:
        """Finish what an interrupted service left: resume starts, finish stops, retry cleanups."""
        counts = {"resumed": 0, "stopped": 0, "cleaned": 0}
        with self.store.session() as db:
            rows = db.scalars(select(SandboxSession).where(
                (SandboxSession.state.in_(("provisioning", "terminating")))
                | (SandboxSession.cleanup_pending.is_(True)))).all()
        for row in rows:
            try:
                if row.state == "provisioning":
                    self._provision(row.id, actor=actor)
                    counts["resumed"] += 1
                elif row.state == "terminating":
                    self.finish_stop(row.id, actor=actor)
                    counts["stopped"] += 1
                else:
                    self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
                    self.update(row.id, cleanup_pending=False, event=("cleaned", actor, "leftovers removed"))
                    counts["cleaned"] += 1
            except (ProviderError, Conflict) as exc:
                log.warning("reconcile of %s did not finish: %s", row.id, exc)
        return counts

    # -- internals -------------------------------------------------------------------------------------------------

    def _provision(self, session_id: str, *, actor: str) -> SandboxSession:
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
        assert row is not None
        try:
            self.provider.provision(self.spec_of(row))
        except ProviderError as exc:
            return self._fail(session_id, actor=actor, reason=str(exc))
        now = self.clock()
        return self.transition(session_id, "ready", actor=actor, reason="sandbox ready", ready_at=now,
                                last_activity_at=now)

    def _fail(self, session_id: str, *, actor: str, reason: str) -> SandboxSession:
        """Mark failed with the reason and remove whatever was made; on a cleanup failure leave it to reconcile."""
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
        assert row is not None
        try:
            self.provider.destroy(self.spec_of(row), wait_s=DESTROY_WAIT_S)
            pending = False
        except ProviderError as exc:
            log.warning("cleanup of failed session %s did not finish: %s", session_id, exc)
            pending = True
        return self.transition(session_id, "failed", actor=actor, reason=reason, live_key=None,
                                cleanup_pending=pending)

    def transition(self, session_id: str, target: str, *, actor: str, reason: str, **fields: Any) -> SandboxSession:
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
            if row is None:
                raise NotFound(f"there is no session '{session_id}'")
            states.check(row.state, target)
            previous = row.state
            row.state = target
            row.reason = reason
            for key, value in fields.items():
                setattr(row, key, value)
            db.add(self.new_event(session_id, target, actor, previous=previous, reason=reason))
            announced = _ANNOUNCED.get((previous, target)) or _ANNOUNCED.get(("*", target))
            if announced:
                extra = {"reason": row.suspend_reason if target == "suspended" else reason}
                if announced == "session.ready":
                    extra = {"expires_at": _iso(row.expires_at), "deadline_at": _iso(row.deadline_at)}
                self.announce(db, row, announced, **extra)
        return row

    def update(self, session_id: str, *, event: tuple[str, str, str],
               announce: tuple[str, dict[str, Any]] | None = None, **fields: Any) -> SandboxSession:
        """Change fields and record an event; ``announce`` also emits a webhook event in the same transaction."""
        kind, actor, reason = event
        with self.store.session() as db:
            row = db.get(SandboxSession, session_id)
            if row is None:
                raise NotFound(f"there is no session '{session_id}'")
            for key, value in fields.items():
                setattr(row, key, value)
            db.add(self.new_event(session_id, kind, actor, reason=reason))
            if announce is not None:
                self.announce(db, row, announce[0], **announce[1])
        return row

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

    def spec_of(self, row: SandboxSession) -> SandboxSpec:
        assert row.expires_at is not None and row.namespace is not None
        return SandboxSpec(session_id=row.id, lab=self.lab(row.lab_id), learner_id=row.learner_id,
                           namespace=row.namespace, expires_at=row.expires_at,
                           budget_usd=float(row.budget_usd), started_at=row.ready_at or row.created_at)


# Which transitions the exam platform hears about: (from, to) -> event type ("*" = from anywhere).
_ANNOUNCED = {
    ("provisioning", "ready"): "session.ready",
    ("*", "suspended"): "session.suspended",
    ("*", "terminated"): "session.terminated",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _provider_call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ProviderUnavailable as exc:
        raise Unavailable(redact.addresses(str(exc))) from exc
    except ProviderError as exc:
        raise Conflict(redact.addresses(str(exc))) from exc
