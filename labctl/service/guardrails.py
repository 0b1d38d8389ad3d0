"""The detective control at work: judge a cloud session's snapshot, act on new violations, remember them.

:mod:`labctl.service.detection` decides; this module reads what was seen before from the store (``violations``),
has the provider stop or terminate what must be (``SandboxProvider.enforce``), then records each finding with a
timeline event (``violation``) and a ``session.violation`` webhook in one transaction. A resource the provider
could not act on is not recorded, so the next sweep tries again; what was recorded is not acted on again (a stopped
instance that runs again is the one exception: it is stopped again).
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from labctl.grading.snapshot import Snapshot
from labctl.ports import ProviderError
from labctl.service import detection
from labctl.service.sessions import Sessions
from labctl.store.models import SandboxSession
from labctl.store.violations import Violation

log = logging.getLogger("labctl.guardrails")


class Guardrails:
    """Runs the lab's guardrails over one session's snapshot (called by every sweep after the meter)."""

    def __init__(self, *, sessions: Sessions) -> None:
        self.sessions = sessions

    def check(self, session_id: str, snapshot: Snapshot) -> list[detection.Finding]:
        """Act on the violations ``snapshot`` shows that were not acted on yet; returns what was done. Raises a
        :class:`ProviderError` naming the resources the provider could not act on (after recording the rest)."""
        s = self.sessions
        lab = s.lab(snapshot.session.lab_id)
        if lab.guardrails is None or lab.placement is None:
            return []
        found = detection.violations(snapshot, guardrails=lab.guardrails, placement=lab.placement)
        if not found:
            return []
        with s.store.session() as db:
            seen = {(v.resource, v.rule): v.action
                    for v in db.scalars(select(Violation).where(Violation.session_id == session_id))}
        findings = detection.decide(found, snapshot=snapshot, on_violation=lab.guardrails.on_violation, seen=seen)
        if not findings:
            return []
        failed: dict[str, str] = {}
        spec = s.spec_of(s.row_of(session_id))
        for resource, action in detection.to_enforce(findings).items():
            try:
                s.provider.enforce(spec, resource=resource, action=action)
            except ProviderError as exc:
                failed[resource] = str(exc)
        done = [f for f in findings if f.violation.resource not in failed]
        if done:
            self._record(session_id, done)
        if failed:
            raise ProviderError("guardrails could not act on " + "; ".join(f"{r}: {e}" for r, e in failed.items()),
                                retryable=True)
        return done

    def _record(self, session_id: str, findings: list[detection.Finding]) -> None:
        """Each finding as a remembered violation, a timeline event and a webhook, in one transaction."""
        s = self.sessions
        now = s.clock()
        with s.store.session() as db:
            row = db.get(SandboxSession, session_id)
            if row is None:
                return
            for f in findings:
                v = f.violation
                known = db.get(Violation, (session_id, v.resource, v.rule))
                if known is None:
                    db.add(Violation(session_id=session_id, resource=v.resource, rule=v.rule, detail=v.detail,
                                     action=f.action, times=1, first_at=now, last_at=now))
                else:
                    known.times += 1
                    known.last_at = now
                    known.detail = v.detail
                taken = {"warn": "warned", "stop": "stopped", "terminate": "terminated"}[f.action]
                reason = f"{v.resource}: {v.detail}; {taken}" + (" again (it ran again)" if f.again else "")
                db.add(s.new_event(session_id, "violation", "guardrails", reason=reason, resource=v.resource,
                                   rule=v.rule, action=f.action))
                s.announce(db, row, "session.violation", resource=v.resource, rule=v.rule, detail=v.detail,
                           action=f.action, repeated=f.again)
                log.info("guardrails %s: %s", session_id, reason)
