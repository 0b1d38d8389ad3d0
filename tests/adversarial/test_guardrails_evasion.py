"""The learner against the detective control, on moto with its own STS credentials (moto does not evaluate the
policy's conditions, so the learner's launches here are exactly the misses the control exists for).

A disallowed instance type launched by the learner is stopped in one sweep; started again, it is stopped again
(labctl remembers what it did in its store, not on the instance); a compliant instance whose required tag the learner
removes later is caught then; an instance of another session is judged in that session only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from labctl.cost.prices import load_sheet
from labctl.providers.aws.sandbox import AwsSandboxes
from labctl.providers.router import ProviderRouter
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.service.sweeps import Sweeper
from labctl.settings import REPO_ROOT
from labctl.store.db import Store, open_store
from labctl.store.models import SessionEvent
from tests.support import aws
from tests.support.clock import FakeClock

INSTRUCTOR = Principal(name="instructor", role="instructor")



@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'labctl.db'}")
    s.migrate()
    yield s
    s.engine.dispose()


def _state(moto_url: str, instance_id: str) -> str:
    ec2 = aws.admin_session().client("ec2", endpoint_url=moto_url)
    return str(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"])


def _violations(store: Store, session_id: str) -> list[tuple[str, str]]:
    with store.session() as db:
        rows = db.scalars(select(SessionEvent).where(SessionEvent.session_id == session_id,
                                                     SessionEvent.kind == "violation").order_by(SessionEvent.id))
        return [(str(e.detail["resource"]), str(e.detail["rule"])) for e in rows]


def test_the_learner_cannot_outlast_or_hide_from_the_guardrails(store: Store, moto_url: str) -> None:
    provider = AwsSandboxes(region=aws.REGIONS[0], endpoint_url=moto_url, session_factory=aws.admin_session)
    lab = aws.aws_lab(id="guard-evasion", guardrails={"required_tags": ["team"], "on_violation": "stop"})
    clock = FakeClock(datetime.now(UTC))
    sessions = Sessions(store=store, provider=ProviderRouter({"aws": lambda: provider}, in_use={"aws"}),
                        catalog={lab.id: lab}, clock=clock, holder="test")
    sheet = load_sheet(REPO_ROOT / "labs" / "prices.yaml")
    sweeper = Sweeper(sessions=sessions, prices=lambda: sheet)
    mine, _ = sessions.start(lab_id=lab.id, learner_id="mallory", principal=INSTRUCTOR)
    other, _ = sessions.start(lab_id=lab.id, learner_id="alice", principal=INSTRUCTOR)
    learner: Any = aws.learner_ec2(sessions.credentials(mine.id, principal=INSTRUCTOR))

    def sweep() -> None:
        clock.now += timedelta(minutes=1)
        report = sweeper.run_once()
        assert not report.errors, report.errors

    big = aws.launch(learner, mine.id, instance_type="g5.xlarge", team="ml")  # past the policy (moto)
    sweep()
    assert _state(moto_url, big) == "stopped"

    learner.start_instances(InstanceIds=[big])  # try to outlast the control
    learner.create_tags(Resources=[big], Tags=[{"Key": "labctl-guardrails", "Value": "acknowledged"}])
    sweep()
    assert _state(moto_url, big) == "stopped"

    fine = aws.launch(learner, mine.id, instance_type="m5.large", team="ml")
    sweep()
    assert _state(moto_url, fine) == "running"
    learner.delete_tags(Resources=[fine], Tags=[{"Key": "team"}])  # compliant at launch, not later
    sweep()
    assert _state(moto_url, fine) == "stopped"

    # Another session's instance is judged in that session only: nothing of it lands in mine, and it stays up.
    theirs = aws.launch(aws.admin_session().client("ec2", endpoint_url=moto_url), other.id, instance_type="m5.large",
                        team="data")
    sweep()
    assert _state(moto_url, theirs) == "running"

    assert _violations(store, mine.id) == [(f"Instance/{big}", "instance_type"), (f"Instance/{big}", "instance_type"),
                                           (f"Instance/{fine}", "required_tags")]
    assert _violations(store, other.id) == []
