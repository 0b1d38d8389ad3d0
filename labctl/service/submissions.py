"""Submissions: freeze the sandbox, snapshot it, run the lab's graders, store the grade and the cost receipt.

``submit`` does the quick, checkable part in the request (policy checks, freeze, the ``submitted`` state, a
``grading`` row) and :meth:`Submissions.grade` the slow part in the background. A grader that crashes, hangs or
prints garbage becomes an ``error`` check inside the grade, never a failed submission; only a failure to take the
snapshot fails the submission (state ``error``, with the reason). After grading, a learner with attempts left gets the
sandbox back (unfrozen, ``ready``); otherwise it stays frozen (``graded``) until it expires.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from labctl.cost.prices import PriceSheet
from labctl.errors import Conflict, NotFound
from labctl.grading import jail as jail_mod
from labctl.grading import receipt as receipt_mod
from labctl.grading import runner
from labctl.grading.snapshot import snapshot_dict
from labctl.ports import ProviderError
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.service.sweeps import Sweeper
from labctl.store.models import SandboxSession, Submission

log = logging.getLogger("labctl.submissions")

class Submissions:
    def __init__(self, *, sessions: Sessions, sweeper: Sweeper, prices: Callable[[], PriceSheet],
                 graders_dir: Path, repo_root: Path, timeout_s: float = 10.0,
                 jail: jail_mod.Jail | None = None) -> None:
        self.sessions = sessions
        self.sweeper = sweeper
        self.prices = prices
        self.graders_dir = graders_dir
        self.repo_root = repo_root
        self.timeout_s = timeout_s
        self.jail = jail

    def submit(self, session_id: str, *, principal: Principal) -> Submission:
        """Freeze the sandbox and open a submission in state ``grading`` (grade it with :meth:`grade`)."""
        row = self.sessions.get(session_id, principal=principal)
        lab = self.sessions.lab(row.lab_id)
        if row.state in ("terminating", "terminated"):
            raise Conflict(f"session {session_id} is over ({row.reason or row.state}): submissions are closed")
        if row.state == "submitted":
            raise Conflict(f"session {session_id} is being graded; wait for the grade (GET /v1/submissions/...)")
        if row.state == "suspended":
            raise Conflict(f"session {session_id} is suspended ({row.suspend_reason}); resume it before submitting")
        if row.state not in ("ready", "graded"):
            raise Conflict(f"session {session_id} is {row.state}: only a ready session can be submitted")
        used = self._attempts(session_id)
        if used >= lab.attempts:
            raise Conflict(f"no attempts left: {used} of {lab.attempts} used for lab {lab.id}")
        try:
            self.sessions.provider.freeze(self.sessions.spec_of(row), frozen=True)
        except ProviderError as exc:
            raise Conflict(f"could not freeze the sandbox: {exc}") from exc
        self.sessions.transition(session_id, "submitted", actor=principal.name, reason=f"attempt {used + 1}")
        sub = Submission(id=f"sub-{secrets.token_hex(6)}", session_id=session_id, attempt=used + 1, state="grading",
                         created_at=self.sessions.clock(), checks=[])
        with self.sessions.store.session() as db:
            db.add(sub)
        return sub

    def grade(self, submission_id: str, *, actor: str = "grader") -> Submission:
        """Snapshot (priced, with the ledger), run the graders, store grade and receipt, apply the lab's policy."""
        sub = self._row(submission_id)
        session_id = sub.session_id
        lab = self.sessions.lab(self.sessions.row_of(session_id).lab_id)
        try:
            snap = self.sweeper.meter(session_id, self.prices())
        except (ProviderError, ValueError) as exc:
            log.warning("snapshot of %s failed: %s", session_id, exc)
            return self._finish(sub, lab_attempts=lab.attempts, actor=actor, state="error",
                                error=f"the sandbox could not be inventoried: {exc}")
        grade = runner.grade(lab, snap, self.graders_dir, self.repo_root, timeout_s=self.timeout_s,
                             jail=self.jail)
        receipt = receipt_mod.receipt(snap)
        return self._finish(sub, lab_attempts=lab.attempts, actor=actor, state="graded", snapshot=snapshot_dict(snap),
                            score=grade.score, max_score=grade.max_score,
                            checks=[c.model_dump(mode="json") for c in grade.checks],
                            receipt=receipt.model_dump(mode="json") | {"text": receipt.render()})

    def submit_requested(self, *, lab_id: str, learner_id: str, actor: str) -> tuple[Submission, bool]:
        """The exam platform's "grade now": submit the learner's live session for the lab, once.

        Idempotent: when the session already has a submission, that one is the answer (``False``: nothing new).
        """
        self.sessions.lab(lab_id)  # 404 naming the lab when it does not exist
        live = self.sessions.live(lab_id, learner_id)
        if live is None:
            raise NotFound(f"learner '{learner_id}' has no live session in lab '{lab_id}'")
        with self.sessions.store.session() as db:
            latest = db.scalar(select(Submission).where(Submission.session_id == live.id)
                               .order_by(Submission.attempt.desc()).limit(1))
        if latest is not None:
            return latest, False
        return self.submit(live.id, principal=Principal(name=actor, role="exam")), True

    def reconcile(self, *, stale_after: timedelta = timedelta(minutes=5)) -> int:
        """Grade again what a killed process left in ``grading`` (grading takes seconds; minutes means it died)."""
        cutoff = self.sessions.clock() - stale_after
        with self.sessions.store.session() as db:
            stale = list(db.scalars(select(Submission.id).where(Submission.state == "grading",
                                                                  Submission.created_at < cutoff)))
        for submission_id in stale:
            self.grade(submission_id, actor="reconciler")
        return len(stale)

    def get(self, submission_id: str, *, principal: Principal) -> Submission:
        sub = self._row(submission_id)
        self.sessions.get(sub.session_id, principal=principal)  # 404 for someone else's
        return sub

    def list_for(self, session_id: str, *, principal: Principal) -> list[Submission]:
        self.sessions.get(session_id, principal=principal)
        with self.sessions.store.session() as db:
            return list(db.scalars(select(Submission).where(Submission.session_id == session_id)
                                   .order_by(Submission.attempt)))

    def _finish(self, sub: Submission, *, lab_attempts: int, actor: str, state: str, **fields: Any) -> Submission:
        with self.sessions.store.session() as db:
            row = db.get(Submission, sub.id)
            session_row = db.get(SandboxSession, sub.session_id)
            assert row is not None and session_row is not None
            row.state = state
            row.graded_at = self.sessions.clock()
            for key, value in fields.items():
                setattr(row, key, value)
            if state == "graded":
                self.sessions.announce(db, session_row, "submission.graded", submission_id=row.id,
                                       score=fields["score"], max_score=fields["max_score"],
                                       checks=fields["checks"], receipt=fields["receipt"], attempt=row.attempt)
            else:
                self.sessions.announce(db, session_row, "submission.failed", submission_id=row.id,
                                       error=fields.get("error"), attempt=row.attempt)
        session = self.sessions.row_of(sub.session_id)
        reason = (f"graded {fields.get('score', 0):.2f} / {fields.get('max_score', 0):.2f}" if state == "graded"
                  else f"grading failed: {fields.get('error')}")
        self.sessions.transition(sub.session_id, "graded", actor=actor, reason=reason)
        if sub.attempt < lab_attempts and session.state != "terminating":
            try:
                self.sessions.provider.freeze(self.sessions.spec_of(session), frozen=False)
                self.sessions.transition(sub.session_id, "ready", actor=actor,
                                          reason=f"{lab_attempts - sub.attempt} attempt(s) left: the sandbox is "
                                                 "writable again")
            except ProviderError as exc:
                log.warning("could not unfreeze %s: %s", sub.session_id, exc)
        return self._row(sub.id)

    def _attempts(self, session_id: str) -> int:
        with self.sessions.store.session() as db:
            return int(db.scalar(select(func.count()).select_from(Submission)
                                 .where(Submission.session_id == session_id)) or 0)

    def _row(self, submission_id: str) -> Submission:
        with self.sessions.store.session() as db:
            row = db.get(Submission, submission_id)
        if row is None:
            raise NotFound(f"there is no submission '{submission_id}'")
        return row

