"""The dashboard's reads over every session (``labctl.service.overview``) on SQLite and on a real PostgreSQL server:
the latest *graded* submission of each session (a newer attempt in error or still grading does not replace it), and
the sessions whose budget request waits, oldest first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from labctl.service import overview
from labctl.store.db import Store
from labctl.store.models import SandboxSession, Submission
from tests.support.stores import clean_store

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "labctl.db")
    with s.session() as db:
        for i, (sid, lab, learner) in enumerate((("s-1", "lab-a", "ada"), ("s-2", "lab-a", "bob"),
                                                 ("s-3", "lab-b", "cy"), ("s-4", "lab-b", "dee"))):
            db.add(SandboxSession(id=sid, lab_id=lab, learner_id=learner, provider="kubernetes", state="ready",
                                  budget_usd=5, created_at=AT + timedelta(minutes=i), ready_at=AT))
    yield s
    s.engine.dispose()


def submission(session_id: str, attempt: int, state: str, score: str | None = None) -> Submission:
    return Submission(id=f"{session_id}-{attempt}", session_id=session_id, attempt=attempt, state=state,
                      created_at=AT, score=Decimal(score) if score else None,
                      max_score=Decimal(10) if score else None)


def test_the_latest_graded_submission_of_each_session(store: Store) -> None:
    with store.session() as db:
        db.add_all([submission("s-1", 1, "graded", "3"), submission("s-1", 2, "graded", "9"),
                    submission("s-1", 3, "error"),  # labctl's failure: the grade of attempt 2 stands
                    submission("s-2", 1, "grading"),  # not graded yet: left out
                    submission("s-3", 1, "graded", "10")])
    grades = overview.latest_grades(store)
    assert [(g.session_id, g.lab_id, g.learner_id, g.score) for g in grades] == [
        ("s-1", "lab-a", "ada", Decimal(9)), ("s-3", "lab-b", "cy", Decimal(10))]
    assert grades[0].share == pytest.approx(0.9)


def test_pending_budget_requests_oldest_session_first(store: Store) -> None:
    with store.session() as db:
        for sid in ("s-4", "s-2"):
            row = db.get(SandboxSession, sid)
            assert row is not None
            row.budget_request_id, row.budget_request_usd, row.budget_request_reason = f"req-{sid}", Decimal(1), "x"
    assert [r.id for r in overview.pending_budget_requests(store)] == ["s-2", "s-4"]
