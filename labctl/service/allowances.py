"""What one learner may still use in one lab: attempts and money belong to the learner and the lab, not to a session.

Deleting a session and starting again gives neither new attempts nor a new budget. The allowance is computed from
the store's own records, so it cannot drift from them: the lab's attempts and budget, plus every :class:`Grant`
(an instructor's, or an approved budget request), minus the attempts used by every session of the learner in the
lab (submissions being graded or graded; one that failed for an infrastructure reason counts for nothing) and the
money spent by the learner's other sessions there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labctl.catalog.models import Lab
from labctl.store.models import Grant, SandboxSession, Submission

COUNTED = ("grading", "graded")  # submission states that use an attempt ("error" is labctl's failure, not theirs)


@dataclass(frozen=True)
class Allowance:
    lab_id: str
    learner_id: str
    attempts: int  # the lab's plus those granted
    attempts_used: int
    budget_usd: Decimal  # the lab's plus what was granted or approved
    spent_usd: Decimal  # by the sessions counted (all of them, or all but the one excluded)

    @property
    def attempts_left(self) -> int:
        return max(0, self.attempts - self.attempts_used)

    @property
    def budget_left_usd(self) -> Decimal:
        return self.budget_usd - self.spent_usd


def of(db: Session, *, lab: Lab, learner_id: str, excluding: str | None = None) -> Allowance:
    """The learner's allowance in ``lab``; money spent by session ``excluding`` (the live one) is left out."""
    granted = db.execute(select(func.coalesce(func.sum(Grant.attempts), 0), func.coalesce(func.sum(Grant.usd), 0))
                         .where(Grant.lab_id == lab.id, Grant.learner_id == learner_id)).one()
    mine = (SandboxSession.lab_id == lab.id) & (SandboxSession.learner_id == learner_id)
    spent_query = select(func.coalesce(func.sum(SandboxSession.accrued_usd), 0)).where(mine)
    if excluding is not None:
        spent_query = spent_query.where(SandboxSession.id != excluding)
    used = db.scalar(select(func.count()).select_from(Submission).join(SandboxSession,
                                                                       Submission.session_id == SandboxSession.id)
                     .where(mine, Submission.state.in_(COUNTED)))
    return Allowance(lab_id=lab.id, learner_id=learner_id, attempts=lab.attempts + int(granted[0]),
                     attempts_used=int(used or 0), budget_usd=lab.budget.usd + Decimal(str(granted[1])),
                     spent_usd=Decimal(str(db.scalar(spent_query) or 0)))
