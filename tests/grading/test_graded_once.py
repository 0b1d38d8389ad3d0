"""A submission is graded exactly once, on the live sandbox (SQLite; the store's schema is unchanged, and the guards
are plain reads and writes in one transaction): a grading queued or running on this process's grading workers is
alive to the reconciler whatever its heartbeat says (an exam's queue may hold a grading longer than ``stale_after``),
and a grading that comes when the submission is no longer ``grading`` (a second
one from another queue or a reconciler) leaves the grade and its one ``submission.graded`` event as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labctl.localcluster.cluster import LocalCluster
from labctl.store.webhook_models import OutboxEvent
from tests.grading.replay_world import INSTRUCTOR, World, make_world, running_world
from tests.support.wait import eventually


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    yield from running_world(make_world(tmp_path, local_cluster, seconds_per_day=10))


def _graded_events(world: World, sid: str) -> int:
    with world.rt.store.session() as db:
        return int(db.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type == "submission.graded", OutboxEvent.session_id == sid)) or 0)


def test_a_queued_grading_is_left_to_its_worker_and_a_finished_one_is_not_graded_again(world: World) -> None:
    sid = world.start("graded-once")["id"]
    rt = world.rt
    sub = rt.submissions.submit(sid, principal=INSTRUCTOR)
    queued = rt.submissions.grade_later(sub.id)
    eventually(lambda: world.submission(sub.id)["progress"], timeout=120)  # its replay runs

    world.clock.advance(minutes=10)  # its last heartbeat now looks older than the reconciler's stale_after ...
    assert rt.submissions.reconcile() == 0  # ... but it is queued here: nothing is graded a second time
    queued.result(timeout=300)
    graded = world.submission(sub.id)
    assert graded["state"] == "graded", graded
    assert _graded_events(world, sid) == 1

    again = rt.submissions.grade(sub.id, actor="reconciler")  # a late second grading of the same submission
    assert again.state == "graded" and again.graded_at is not None
    assert world.submission(sub.id) == graded
    assert _graded_events(world, sid) == 1
    assert rt.submissions.reconcile() == 0
