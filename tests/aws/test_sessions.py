"""AWS sessions through the use cases, on moto and a real store (SQLite and PostgreSQL): the lab contract holds.

A budget crossed by a running GPU instance stops it within one sweep and a grant starts it again; destroy that
finds a tagged leftover keeps the session ``cleanup_pending`` with an event, never ``terminated``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from labctl.providers.aws.sandbox import AwsSandboxes
from labctl.service.auth import Principal
from labctl.store.db import Store
from labctl.store.models import SessionEvent
from tests.support import aws
from tests.support.cloud_world import CloudWorld, cloud_world
from tests.support.stores import clean_store

INSTRUCTOR = Principal(name="instructor", role="instructor")


@dataclass
class World(CloudWorld):
    admin_ec2: Any


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "labctl.db")
    yield s
    s.engine.dispose()


@pytest.fixture
def world(store: Store, provider: AwsSandboxes, admin_ec2: Any) -> World:
    lab = aws.aws_lab(budget={"usd": 1, "thresholds": [{"percent": 100, "action": "suspend"}]},
                      time={"limit": "4h", "max_extension": "1h"})
    return World(**vars(cloud_world(store, lab, provider)), admin_ec2=admin_ec2)


def _state(world: World, instance_id: str) -> str:
    answer = world.admin_ec2.describe_instances(InstanceIds=[instance_id])
    return str(answer["Reservations"][0]["Instances"][0]["State"]["Name"])


def _events(world: World, session_id: str) -> list[SessionEvent]:
    with world.sessions.store.session() as db:
        return list(db.scalars(select(SessionEvent).where(SessionEvent.session_id == session_id)))


def test_a_gpu_instance_over_budget_is_stopped_in_one_sweep_and_started_by_a_grant(world: World) -> None:
    row, made = world.sessions.start(lab_id="aws-test", learner_id="ada", principal=INSTRUCTOR)
    assert made and row.state == "ready" and row.provider == "aws"
    creds = world.sessions.credentials(row.id, principal=INSTRUCTOR)
    gpu = aws.launch(aws.learner_ec2(creds), row.id, instance_type="g4dn.xlarge")

    assert world.sweeper.run_once().errors == []  # first reading: $0.526/h, nothing accrued; roles listed
    assert row.id in world.sessions.provider.sandboxes().sessions  # the session role is its sandbox
    burn = world.sessions.row_of(row.id).burn_rate_usd_per_hour
    assert burn is not None and 0.526 < float(burn) < 0.54  # the instance and its root volume
    world.clock.now += timedelta(hours=2)  # $1.05 of a $1 budget
    report = world.sweeper.run_once()

    assert (row.id, "suspend") in [(s, kind) for s, kind, _ in report.actions]
    current = world.sessions.row_of(row.id)
    assert current.state == "suspended" and current.suspend_reason == "budget"
    assert _state(world, gpu) == "stopped"
    suspended = [e for e in _events(world, row.id) if e.kind == "suspended"]
    assert suspended[-1].detail["stopped"] == f"1 instance(s) stopped: {gpu}"  # what the record holds, in AWS words
    world.sessions.grant(lab_id="aws-test", learner_id="ada", attempts=0, usd=Decimal(5), reason="more GPU time",
                         principal=INSTRUCTOR)
    assert world.sessions.row_of(row.id).state == "ready"
    assert _state(world, gpu) == "running"


def test_a_tagged_leftover_keeps_the_session_cleanup_pending(world: World) -> None:
    row, _ = world.sessions.start(lab_id="aws-test", learner_id="bo", principal=INSTRUCTOR)
    aws.launch(aws.learner_ec2(world.sessions.credentials(row.id, principal=INSTRUCTOR)), row.id)
    # made behind the provider's back, of a type its destroy does not delete
    group = world.admin_ec2.create_security_group(
        GroupName=f"stray-{row.id}", Description="stray",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": aws.session_tags(row.id)}])["GroupId"]

    world.sessions.stop(row.id, principal=INSTRUCTOR)
    after = world.sessions.finish_stop(row.id, actor="test")

    assert after.state == "terminating" and after.cleanup_pending
    failed = [e for e in _events(world, row.id) if e.kind == "cleanup_failed"]
    assert failed and group in str(failed[-1].detail)
    world.admin_ec2.delete_security_group(GroupId=group)
    assert world.sessions.finish_stop(row.id, actor="test").state == "terminated"
