"""The detective control end to end on moto: instances launched past the session policy are caught in one sweep.

labctl's own principal (the admin) plays a launch the preventive policy missed: the session's tag, but a disallowed
instance type, a region the lab does not allow, or no required tags. One sweep stops or terminates each as the lab
says, records a ``violation`` event and sends a ``session.violation`` webhook that a ``standardwebhooks`` receiver
verifies; a compliant instance the learner launched with its own credentials is left alone; further sweeps repeat
nothing, except stopping again an instance that was started again. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from labctl.cost.prices import load_sheet
from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.endpoints import Webhooks
from labctl.outbox.targets import TargetPolicy
from labctl.ports import ProviderError
from labctl.providers.aws.sandbox import AwsSandboxes
from labctl.providers.router import ProviderRouter
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.service.sweeps import Sweeper
from labctl.settings import REPO_ROOT
from labctl.store.db import Store, open_store
from labctl.store.models import SessionEvent
from labctl.store.violations import Violation
from tests.support import aws
from tests.support.clock import FakeClock
from tests.support.stores import clean_store
from tests.webhooks.receiver import Receiver

INSTRUCTOR = Principal(name="instructor", role="instructor")
LOOPBACK = TargetPolicy.from_entries(["127.0.0.1/32"])  # the receiver listens on loopback
ELSEWHERE = "eu-west-1"  # a region the lab does not allow, watched by its guardrails
TAGS = {"team": "ml", "cost-center": "cc-1"}



@dataclass
class World:
    sessions: Sessions
    sweeper: Sweeper
    clock: FakeClock
    store: Store
    receiver: Receiver
    moto_url: str

    def ec2(self, region: str = aws.REGIONS[0]) -> Any:
        return aws.admin_session().client("ec2", region_name=region, endpoint_url=self.moto_url)

    def state(self, instance_id: str, region: str = aws.REGIONS[0]) -> str:
        answer = self.ec2(region).describe_instances(InstanceIds=[instance_id])
        return str(answer["Reservations"][0]["Instances"][0]["State"]["Name"])

    def deliver(self) -> list[dict[str, Any]]:
        """Run the dispatcher until nothing is due; the verified session.violation bodies the receiver accepted."""
        with Dispatcher(self.store, targets=LOOPBACK, clock=self.clock) as dispatcher:
            while dispatcher.run_once():
                pass
        return [a.event for a in self.receiver.unique() if a.verified and a.event["type"] == "session.violation"]

    def events(self, session_id: str) -> list[SessionEvent]:
        with self.store.session() as db:
            return list(db.scalars(select(SessionEvent).where(SessionEvent.session_id == session_id,
                                                              SessionEvent.kind == "violation")
                                   .order_by(SessionEvent.id)))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "labctl.db")
    yield s
    s.engine.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """The variants beyond the main test run on SQLite only."""
    s = open_store(f"sqlite:///{tmp_path / 'labctl.db'}")
    s.migrate()
    yield s
    s.engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _world(store: Store, provider: AwsSandboxes, receiver: Receiver, moto_url: str, *, on_violation: str) -> World:
    lab = aws.aws_lab(id=f"guard-{on_violation}", time={"limit": "4h", "max_extension": "1h"},
                      guardrails={"required_tags": list(TAGS), "on_violation": on_violation,
                                  "watch_regions": [ELSEWHERE]})
    clock = FakeClock(datetime.now(UTC))
    sessions = Sessions(store=store, provider=ProviderRouter({"aws": lambda: provider}, in_use={"aws"}),
                        catalog={lab.id: lab}, clock=clock, holder="test")
    sheet = load_sheet(REPO_ROOT / "labs" / "prices.yaml")
    endpoint = Webhooks(store, targets=LOOPBACK, clock=clock).create(url=receiver.url, events=["session.violation"])
    receiver.secrets.append(endpoint.secret)
    return World(sessions=sessions, sweeper=Sweeper(sessions=sessions, prices=lambda: sheet), clock=clock,
                 store=store, receiver=receiver, moto_url=moto_url)


def _admin_launch(world: World, session_id: str, *, region: str = aws.REGIONS[0], instance_type: str = "m5.large",
                  **tags: str) -> str:
    """A launch by labctl's own principal, past the session policy: the session's tag, anything else."""
    return aws.launch(world.ec2(region), session_id, instance_type=instance_type, **tags)


def test_policy_misses_are_stopped_in_one_sweep_once_with_an_event_and_a_webhook(
        store: Store, provider: AwsSandboxes, receiver: Receiver, moto_url: str) -> None:
    world = _world(store, provider, receiver, moto_url, on_violation="stop")
    row, _ = world.sessions.start(lab_id="guard-stop", learner_id="ada", principal=INSTRUCTOR)
    learner = aws.learner_ec2(world.sessions.credentials(row.id, principal=INSTRUCTOR))
    compliant = aws.launch(learner, row.id, instance_type="m5.large", **TAGS)  # the learner's own, by the rules
    gpu = _admin_launch(world, row.id, instance_type="g5.xlarge", **TAGS)
    far = _admin_launch(world, row.id, region=ELSEWHERE, **TAGS)
    bare = _admin_launch(world, row.id)

    report = world.sweeper.run_once()

    assert not report.errors
    assert sorted(kind for s, kind, _ in report.actions if s == row.id) == ["guardrail_stop"] * 3
    assert world.state(gpu) == world.state(bare) == world.state(far, ELSEWHERE) == "stopped"
    assert world.state(compliant) == "running"
    caught = {(e.detail["resource"], e.detail["rule"], e.detail["action"]) for e in world.events(row.id)}
    assert caught == {(f"Instance/{gpu}", "instance_type", "stop"), (f"Instance/{far}", "region", "stop"),
                      (f"Instance/{bare}", "required_tags", "stop")}
    sent = world.deliver()
    assert {(m["data"]["resource"], m["data"]["rule"], m["data"]["action"]) for m in sent} == caught
    assert all(m["data"]["session_id"] == row.id and m["data"]["repeated"] is False for m in sent)
    by_rule = {m["data"]["rule"]: m["data"]["detail"] for m in sent}
    assert by_rule["instance_type"].startswith("instance type g5.xlarge is not allowed")
    assert by_rule["region"].startswith(f"region {ELSEWHERE} is not allowed")
    assert by_rule["required_tags"] == "missing required tag(s) team, cost-center (required: team, cost-center)"

    # Later sweeps: nothing is repeated while the instances stay stopped.
    world.clock.now += timedelta(minutes=1)
    again = world.sweeper.run_once()
    assert not [a for a in again.actions if a[0] == row.id] and not again.errors
    assert len(world.events(row.id)) == 3 and world.deliver() == sent

    # Started again behind labctl's back: stopped again, once, and said so.
    world.ec2().start_instances(InstanceIds=[gpu])
    world.clock.now += timedelta(minutes=1)
    world.sweeper.run_once()
    assert world.state(gpu) == "stopped"
    repeated = [m for m in world.deliver() if m["data"]["repeated"]]
    assert [(m["data"]["resource"], m["data"]["action"]) for m in repeated] == [(f"Instance/{gpu}", "stop")]
    with world.store.session() as db:
        remembered = db.get(Violation, (row.id, f"Instance/{gpu}", "instance_type"))
        assert remembered is not None and remembered.times == 2 and remembered.action == "stop"


def test_terminate_ends_the_instance_and_cancels_its_spot_request(
        sqlite_store: Store, provider: AwsSandboxes, receiver: Receiver, moto_url: str) -> None:
    world = _world(sqlite_store, provider, receiver, moto_url, on_violation="terminate")
    row, _ = world.sessions.start(lab_id="guard-terminate", learner_id="bo", principal=INSTRUCTOR)
    untagged = aws.launch(world.ec2(), row.id, instance_type="g4dn.xlarge", spot=True)
    compliant = _admin_launch(world, row.id, **TAGS)

    world.sweeper.run_once()

    assert world.state(untagged) in ("shutting-down", "terminated")
    assert world.state(compliant) == "running"
    requests = world.ec2().describe_spot_instance_requests(
        Filters=[{"Name": "instance-id", "Values": [untagged]}])["SpotInstanceRequests"]
    assert all(r["State"] in ("cancelled", "closed") for r in requests)
    world.clock.now += timedelta(minutes=1)
    assert not [a for a in world.sweeper.run_once().actions if a[0] == row.id]
    sent = world.deliver()
    assert [(m["data"]["resource"], m["data"]["rule"], m["data"]["action"]) for m in sent] == [
        (f"Instance/{untagged}", "required_tags", "terminate")]


def test_warn_only_reports(sqlite_store: Store, provider: AwsSandboxes, receiver: Receiver, moto_url: str) -> None:
    world = _world(sqlite_store, provider, receiver, moto_url, on_violation="warn")
    row, _ = world.sessions.start(lab_id="guard-warn", learner_id="cy", principal=INSTRUCTOR)
    gpu = _admin_launch(world, row.id, instance_type="g5.xlarge", **TAGS)

    world.sweeper.run_once()
    world.clock.now += timedelta(minutes=1)
    world.sweeper.run_once()

    assert world.state(gpu) == "running"
    assert [(m["data"]["rule"], m["data"]["action"]) for m in world.deliver()] == [("instance_type", "warn")]


def test_enforce_refuses_an_instance_without_the_session_tag(provider: AwsSandboxes, moto_url: str) -> None:
    spec = aws.spec()
    ec2 = aws.admin_session().client("ec2", endpoint_url=moto_url)
    other = aws.launch(ec2, "someone-else", **TAGS)
    with pytest.raises(ProviderError, match="not this sandbox's to stop"):
        provider.enforce(spec, resource=f"Instance/{other}", action="stop")
    with pytest.raises(ProviderError, match="instances only"):
        provider.enforce(spec, resource="Volume/vol-1", action="terminate")
    assert ec2.describe_instances(InstanceIds=[other])["Reservations"][0]["Instances"][0]["State"]["Name"] \
        == "running"
