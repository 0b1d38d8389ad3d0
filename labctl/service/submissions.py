"""Submissions: freeze the sandbox, snapshot it, run the lab's graders, store the grade and the cost receipt.

``submit`` does the quick, checkable part in the request: policy checks, then the ``submitted`` state and its
``grading`` row in one transaction (under the session's lease, so two submits cannot both pass the attempt check),
then the freeze. :meth:`Submissions.grade` does the slow part in the background, freezing again first, so a crash
between the row and the freeze never grades a writable sandbox. A grader that crashes, hangs or prints garbage
becomes an ``error`` check inside the grade, never a failed submission; only labctl's own failure (freezing or taking
the snapshot) fails the submission (state ``error``, with the reason), and such a submission uses no attempt. For a
lab with demand the snapshot comes after the replay of its grading window on the live sandbox
(:mod:`labctl.service.replay`), which a stop cancels (``error``, no attempt used).
Attempts are counted over every session of the learner in the lab (:mod:`labctl.service.allowances`). After grading,
a learner with attempts left gets the sandbox back (unfrozen, ``ready``); otherwise it stays frozen (``graded``).
:meth:`Submissions.reconcile` repairs what a crash left: a stale ``grading`` row (no heartbeat from its replay for
``stale_after``) is graded again, its replay from the start, a ``submitted``
session without an open submission is finished, and a ``graded`` one whose learner has attempts left is reopened.

:meth:`Submissions.grade_later` queues a grading on :data:`labctl.service.background.GRADINGS` (an exam's end queues
hundreds at once); what is queued or running in this process is alive, so the reconciler leaves it alone whatever
its heartbeat says. A grading is finished once: a submission no longer ``grading`` when its turn comes (graded by a
reconciler meanwhile, or stopped) is left as it is, and only a ``grading`` row takes an outcome.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labctl.catalog.models import Lab
from labctl.cost.prices import PriceSheet
from labctl.errors import Conflict, NotFound, Unavailable
from labctl.grading import jail as jail_mod
from labctl.grading import receipt as receipt_mod
from labctl.grading import runner
from labctl.grading.snapshot import ServiceFigures, Snapshot, snapshot_dict
from labctl.ports import ProviderError
from labctl.service import allowances, background, leader
from labctl.service import replay as replay_mod
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.service.sweeps import Sweeper
from labctl.store.models import SandboxSession, Submission

log = logging.getLogger("labctl.submissions")


class Submissions:
    def __init__(self, *, sessions: Sessions, sweeper: Sweeper, prices: Callable[[], PriceSheet],
                 graders_dir: Path, repo_root: Path, timeout_s: float = 10.0,
                 jail: jail_mod.Jail | None = None, replayer: replay_mod.Replayer | None = None) -> None:
        self.sessions = sessions
        self.sweeper = sweeper
        self.replayer = replayer or replay_mod.Replayer(sweeper=sweeper)
        self.prices = prices
        self.graders_dir = graders_dir
        self.repo_root = repo_root
        self.timeout_s = timeout_s
        self.jail = jail
        self._lock = threading.Lock()
        self._queued: set[str] = set()  # gradings queued or running in this process (alive, whatever their heartbeat)

    def submit(self, session_id: str, *, principal: Principal) -> Submission:
        """Open a submission in state ``grading`` and freeze the sandbox (grade it with :meth:`grade`)."""
        row = self.sessions.get(session_id, principal=principal)
        _check_submittable(row)
        lab = self.sessions.lab(row.lab_id)
        with self.sessions.lease(session_id, "submit"):
            sub = self.sessions.write(session_id, lambda db, current: self._open(db, current, lab=lab,
                                                                                   actor=principal.name))
            try:
                self.sessions.provider.freeze(self.sessions.spec_of(row), frozen=True)
            except ProviderError as exc:
                self._finish(sub, actor=principal.name, state="error", leased=True,
                             error=f"could not freeze the sandbox: {exc}")
                raise Conflict(f"could not freeze the sandbox, so nothing was submitted and no attempt was used: "
                               f"{exc}. Try again.") from exc
        return sub

    def _open(self, db: Session, row: SandboxSession, *, lab: Lab, actor: str) -> Submission:
        """In one transaction: check the attempts left, move to ``submitted``, add the ``grading`` row."""
        _check_submittable(row)
        allowance = allowances.of(db, lab=lab, learner_id=row.learner_id, excluding=row.id)
        if allowance.attempts_left <= 0:
            raise Conflict(f"no attempts left: {allowance.attempts_used} of {allowance.attempts} used for lab "
                           f"{lab.id}")
        number = int(db.scalar(select(func.count()).select_from(Submission)
                               .where(Submission.session_id == row.id)) or 0) + 1
        sub = Submission(id=f"sub-{secrets.token_hex(6)}", session_id=row.id, attempt=number, state="grading",
                         created_at=self.sessions.clock(), checks=[])
        db.add(sub)
        self.sessions.move(db, row, "submitted", actor=actor,
                           reason=f"attempt {allowance.attempts_used + 1} of {allowance.attempts}",
                           detail={"submission": sub.id})
        return sub

    def grade(self, submission_id: str, *, actor: str = "grader") -> Submission:
        """Freeze (again), snapshot (priced, with the ledger; for a lab with demand, after replaying its grading
        window on the live sandbox), run the graders, store grade and receipt."""
        sub = self._row(submission_id)
        if sub.state != "grading":  # finished meanwhile (a reconciler, a stop): nothing is graded twice
            log.info("%s is %s already: not graded again", submission_id, sub.state)
            return sub
        session_id = sub.session_id
        session = self.sessions.row_of(session_id)
        lab = self.sessions.lab(session.lab_id)
        try:
            self.sessions.provider.freeze(self.sessions.spec_of(session), frozen=True)
            snap = self._inventory(sub, lab)
        except replay_mod.Cancelled as exc:
            log.info("replay of %s stopped: %s", submission_id, exc)
            return self._finish(sub, actor=actor, state="error", error=f"{exc} (no attempt was used)")
        except (ProviderError, ValueError) as exc:
            log.warning("snapshot of %s failed: %s", session_id, exc)
            return self._finish(sub, actor=actor, state="error",
                                error=f"the sandbox could not be inventoried (no attempt was used): {exc}")
        grade = runner.grade(lab, snap, self.graders_dir, self.repo_root, timeout_s=self.timeout_s,
                             jail=self.jail)
        receipt = receipt_mod.receipt(snap, starter=_starter(self.sessions.row_of(session_id)))
        return self._finish(sub, actor=actor, state="graded", snapshot=snapshot_dict(snap),
                            score=grade.score, max_score=grade.max_score,
                            checks=[c.model_dump(mode="json") for c in grade.checks],
                            receipt=receipt.model_dump(mode="json") | {"text": receipt.render()})

    def grade_later(self, submission_id: str, *, actor: str = "grader") -> Future[None]:
        """Queue :meth:`grade` on the grading workers; the future ends with it (a failure is logged, not raised)."""
        with self._lock:
            self._queued.add(submission_id)
        return background.GRADINGS.submit(f"grading {submission_id}", self._grade_queued, submission_id, actor=actor)

    def _grade_queued(self, submission_id: str, *, actor: str) -> None:
        try:
            self.grade(submission_id, actor=actor)
        finally:
            with self._lock:
                self._queued.discard(submission_id)

    def _inventory(self, sub: Submission, lab: Lab) -> Snapshot:
        """The snapshot to grade: after the grading window's replay where the lab declares demand and the simulator
        plays it, else one metering now."""
        if lab.demand is not None and self.sweeper.simulate:
            return self.replayer.run(submission_id=sub.id, session_id=sub.session_id, sheet=self.prices())
        return self.sweeper.meter(sub.session_id, self.prices())

    def submit_requested(self, *, lab_id: str, learner_id: str, actor: str) -> tuple[Submission, bool]:
        """The exam platform's "grade now": submit the learner's live session for the lab, once.

        Idempotent: when the session already has a submission that counts, that one is the answer (``False``:
        nothing new); one that failed on labctl's side is tried again.
        """
        self.sessions.lab(lab_id)  # 404 naming the lab when it does not exist
        live = self.sessions.live(lab_id, learner_id)
        if live is None:
            raise NotFound(f"learner '{learner_id}' has no live session in lab '{lab_id}'")
        with self.sessions.store.session() as db:
            latest = db.scalar(select(Submission).where(Submission.session_id == live.id,
                                                        Submission.state.in_(allowances.COUNTED))
                               .order_by(Submission.attempt.desc()).limit(1))
        if latest is not None:
            return latest, False
        return self.submit(live.id, principal=Principal(name=actor, role="exam")), True

    def reconcile(self, *, stale_after: timedelta = timedelta(minutes=5),
                  held: Callable[[], bool] = leader.always) -> int:
        """Repair what a killed process left; returns how many submissions and sessions it repaired.

        A ``grading`` row whose last sign of life (its replay's heartbeat, else its creation) is older than
        ``stale_after`` (grading takes seconds; a replay beats every step) and not queued or running in this process
        is graded again, its replay from the start (all of them side by side, waited for); a ``submitted``
        session with no open submission moves on to ``graded`` (its submission, if any, was finished; if none was
        written, no attempt was used); a ``graded`` session whose learner has attempts left is made writable again.
        """
        cutoff = self.sessions.clock() - stale_after
        with self.sessions.store.session() as db:
            alive = func.coalesce(Submission.heartbeat_at, Submission.created_at)
            stale = list(db.scalars(select(Submission.id).where(Submission.state == "grading", alive < cutoff)))
            grading = select(Submission.session_id).where(Submission.state == "grading")
            orphaned = list(db.scalars(select(SandboxSession.id).where(SandboxSession.state == "submitted",
                                                                        SandboxSession.id.not_in(grading))))
            graded = list(db.scalars(select(SandboxSession.id).where(SandboxSession.state == "graded")))
        with self._lock:
            stale = [submission_id for submission_id in stale if submission_id not in self._queued]
        repaired = 0
        if stale:
            if not held():  # another replica leads now: it regrades them
                return repaired
            # Side by side on the grading workers (a crash mid-exam leaves hundreds), and waited for.
            futures.wait([self.grade_later(submission_id, actor="reconciler") for submission_id in stale])
            repaired += len(stale)
        for session_id in orphaned:
            try:
                self.sessions.transition(session_id, "graded", actor="reconciler",
                                         reason="the submission was cut off by a restart; it was not graded")
            except Conflict as exc:
                log.warning("could not repair %s: %s", session_id, exc)
                continue
            repaired += 1
            graded.append(session_id)
        for session_id in graded:
            repaired += self._reopen_if_attempts_left(session_id, actor="reconciler")
        return repaired

    def get(self, submission_id: str, *, principal: Principal) -> Submission:
        sub = self._row(submission_id)
        self.sessions.get(sub.session_id, principal=principal)  # 404 for someone else's
        return sub

    def list_for(self, session_id: str, *, principal: Principal) -> list[Submission]:
        self.sessions.get(session_id, principal=principal)
        with self.sessions.store.session() as db:
            return list(db.scalars(select(Submission).where(Submission.session_id == session_id)
                                   .order_by(Submission.attempt)))

    def _finish(self, sub: Submission, *, actor: str, state: str, leased: bool = False,
                **fields: Any) -> Submission:
        """Store the outcome and move the session to ``graded`` in one transaction, then reopen the sandbox when
        attempts are left (``leased``: the caller holds the session's lease already)."""

        def finish(db: Session, session_row: SandboxSession) -> None:
            row = db.get(Submission, sub.id)
            assert row is not None
            if row.state != "grading":  # another grading of it finished first: its outcome stands, once
                log.info("%s was %s meanwhile: this %s outcome is dropped", row.id, row.state, state)
                return
            row.state = state
            row.graded_at = self.sessions.clock()
            row.progress = None
            for key, value in fields.items():
                setattr(row, key, value)
            if state == "graded":
                self.sessions.announce(db, session_row, "submission.graded", submission_id=row.id,
                                       score=fields["score"], max_score=fields["max_score"],
                                       checks=fields["checks"], receipt=fields["receipt"], attempt=row.attempt)
                reason = f"graded {fields['score']:.2f} / {fields['max_score']:.2f}"
            else:
                self.sessions.announce(db, session_row, "submission.failed", submission_id=row.id,
                                       error=fields.get("error"), attempt=row.attempt)
                reason = f"grading failed: {fields.get('error')}"
            if session_row.state == "submitted":  # stopped meanwhile: terminating stays terminating
                self.sessions.move(db, session_row, "graded", actor=actor, reason=reason)

        self.sessions.write(sub.session_id, finish)
        self._reopen_if_attempts_left(sub.session_id, actor=actor, leased=leased)
        return self._row(sub.id)

    def _reopen_if_attempts_left(self, session_id: str, *, actor: str, leased: bool = False) -> int:
        session = self.sessions.row_of(session_id)
        if session.state != "graded":
            return 0
        lab = self.sessions.lab(session.lab_id)
        with self.sessions.store.session() as db:
            left = allowances.of(db, lab=lab, learner_id=session.learner_id, excluding=session.id).attempts_left
        if left <= 0:
            return 0
        try:
            self.sessions.reopen(session_id, actor=actor, reason=f"{left} attempt(s) left: the sandbox is writable "
                                                                 "again", leased=leased)
        except (Conflict, Unavailable) as exc:  # the reconciler tries again
            log.warning("could not reopen %s: %s", session_id, exc)
            return 0
        return 1

    def _row(self, submission_id: str) -> Submission:
        with self.sessions.store.session() as db:
            row = db.get(Submission, submission_id)
        if row is None:
            raise NotFound(f"there is no submission '{submission_id}'")
        return row


def _starter(row: SandboxSession) -> list[ServiceFigures] | None:
    """The starter's figures over the grading window, as provisioning took them (None: not recorded)."""
    if row.starter_service is None:
        return None
    return [ServiceFigures.model_validate(item) for item in row.starter_service]


def _check_submittable(row: SandboxSession) -> None:
    if row.state in ("terminating", "terminated"):
        raise Conflict(f"session {row.id} is over ({row.reason or row.state}): submissions are closed")
    if row.state == "submitted":
        raise Conflict(f"session {row.id} is being graded; wait for the grade (GET /v1/submissions/...)")
    if row.state == "suspended":
        raise Conflict(f"session {row.id} is suspended ({row.suspend_reason}); resume it before submitting")
    if row.state not in ("ready", "graded"):
        raise Conflict(f"session {row.id} is {row.state}: only a ready session can be submitted")
