"""Reads over every session for the instructor dashboard: the budget requests waiting for a decision, and the latest
graded submission of each session (the grade distribution per lab).

Queries only, no decision and no write; the caller is an instructor (the dashboard checks that before it asks).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select

from labctl.store.db import Store
from labctl.store.models import SandboxSession, Submission


@dataclass(frozen=True)
class LatestGrade:
    """The newest graded submission of one session."""

    session_id: str
    lab_id: str
    learner_id: str
    score: Decimal
    max_score: Decimal

    @property
    def share(self) -> float:
        """The score as a share of the most it could be (0 when the lab's graders give no points at all)."""
        return float(self.score / self.max_score) if self.max_score else 0.0


def pending_budget_requests(store: Store) -> list[SandboxSession]:
    """Every session with a budget request waiting for an instructor, oldest session first."""
    query = (select(SandboxSession).where(SandboxSession.budget_request_id.is_not(None))
             .order_by(SandboxSession.created_at, SandboxSession.id))
    with store.session() as db:
        return list(db.scalars(query).all())


def latest_grades(store: Store) -> list[LatestGrade]:
    """Per session, its graded submission with the highest attempt (sessions never graded are left out)."""
    newest = (select(Submission.session_id, func.max(Submission.attempt).label("attempt"))
              .where(Submission.state == "graded").group_by(Submission.session_id).subquery())
    query = (select(Submission, SandboxSession.lab_id, SandboxSession.learner_id)
             .join(newest, (Submission.session_id == newest.c.session_id) & (Submission.attempt == newest.c.attempt))
             .join(SandboxSession, SandboxSession.id == Submission.session_id)
             .order_by(SandboxSession.lab_id, SandboxSession.learner_id))
    with store.session() as db:
        rows = db.execute(query).all()
    return [LatestGrade(session_id=sub.session_id, lab_id=lab_id, learner_id=learner_id,
                        score=Decimal(sub.score or 0), max_score=Decimal(sub.max_score or 0))
            for sub, lab_id, learner_id in rows]
