"""The shipped lab ``aws-spot-and-tags`` played on moto: its starter is made at start, the reference and wrong
solutions are scripted with boto3 on the LEARNER's STS credentials, metered by a sweep and graded by the lab's
graders; stopping the session removes the starter with everything else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labctl.catalog import loader
from labctl.cost.prices import load_sheet
from labctl.grading import runner
from labctl.providers.aws.sandbox import AwsSandboxes
from labctl.providers.router import ProviderRouter
from labctl.service.auth import Principal
from labctl.service.sessions import Sessions
from labctl.service.sweeps import Sweeper
from labctl.settings import REPO_ROOT
from labctl.store.db import Store, open_store
from tests.support import aws
from tests.support.clock import FakeClock

INSTRUCTOR = Principal(name="instructor", role="instructor")
LAB = loader.load_lab(REPO_ROOT / "labs" / "aws-spot-and-tags" / "lab.yaml")
OWNERS = {"team": "ml-platform", "cost-center": "cc-2040", "env": "dev"}



@dataclass
class Sandbox:
    session_id: str
    ec2: Any  # the learner's client, from the credentials labctl issued

    def mine(self, name: str) -> list[dict[str, str]]:
        """Filters for this sandbox's live resources called ``name`` (moto's Describe answers are not fenced)."""
        return [{"Name": "tag:Name", "Values": [name]}, {"Name": "tag:labctl-session", "Values": [self.session_id]}]

    def one(self, name: str) -> str:
        found = self.ec2.describe_instances(Filters=[*self.mine(name), {"Name": "instance-state-name",
                                                                        "Values": ["pending", "running"]}])
        [instance] = [i for r in found["Reservations"] for i in r["Instances"]]
        return str(instance["InstanceId"])

    def volume(self, name: str) -> str:
        [volume] = self.ec2.describe_volumes(Filters=self.mine(name))["Volumes"]
        return str(volume["VolumeId"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'labctl.db'}")
    s.migrate()
    yield s
    s.engine.dispose()


@pytest.fixture
def world(store: Store, provider: AwsSandboxes) -> tuple[Sessions, Sweeper]:
    sessions = Sessions(store=store, provider=ProviderRouter({"aws": lambda: provider}, in_use={"aws"}),
                        catalog={LAB.id: LAB}, clock=FakeClock(datetime.now(UTC)), holder="test")
    sheet = load_sheet(REPO_ROOT / "labs" / "prices.yaml")
    return sessions, Sweeper(sessions=sessions, prices=lambda: sheet)


def _start(sessions: Sessions, learner: str) -> Sandbox:
    row, _ = sessions.start(lab_id=LAB.id, learner_id=learner, principal=INSTRUCTOR)
    assert row.state == "ready", row.reason
    return Sandbox(row.id, aws.learner_ec2(sessions.credentials(row.id, principal=INSTRUCTOR)))


def reference(box: Sandbox) -> None:
    aws.launch(box.ec2, box.session_id, instance_type="g5.xlarge", spot=True, **OWNERS)
    box.ec2.terminate_instances(InstanceIds=[box.one("trainer")])
    box.ec2.delete_volume(VolumeId=box.volume("scratch"))


def tagged_on_demand(box: Sandbox) -> None:
    """Tags the starter and deletes the volume, but keeps paying on-demand."""
    box.ec2.create_tags(Resources=[box.one("trainer")], Tags=[{"Key": k, "Value": v} for k, v in OWNERS.items()])
    box.ec2.delete_volume(VolumeId=box.volume("scratch"))


def untagged_spot(box: Sandbox) -> None:
    """Moves to spot but forgets the owner tags and the volume."""
    aws.launch(box.ec2, box.session_id, instance_type="g4dn.xlarge", spot=True)
    box.ec2.terminate_instances(InstanceIds=[box.one("trainer")])


def deletes_everything(box: Sandbox) -> None:
    box.ec2.terminate_instances(InstanceIds=[box.one("trainer")])
    box.ec2.delete_volume(VolumeId=box.volume("scratch"))


@pytest.mark.parametrize(("solve", "score", "failing"), [
    (reference, 100, set()),
    (tagged_on_demand, 70, {"spot-instances"}),
    (untagged_spot, 40, {"instance-tags", "orphaned-volumes"}),
    (deletes_everything, 30, {"instance-tags", "spot-instances"}),
])
def test_solutions_graded_live(world: tuple[Sessions, Sweeper], solve: Callable[[Sandbox], None], score: float,
                               failing: set[str]) -> None:
    sessions, sweeper = world
    box = _start(sessions, f"learner-{solve.__name__.replace('_', '-')}")
    solve(box)

    snapshot = sweeper.meter(box.session_id, sweeper.prices())
    grade = runner.grade(LAB, snapshot, REPO_ROOT / "graders", REPO_ROOT)

    assert grade.score == pytest.approx(score), "\n".join(f"{c.id} {c.score} {c.feedback}" for c in grade.checks)
    failed = {c.grader for c in grade.checks if not c.passed}
    assert failed == failing, [(c.grader, c.id, c.feedback) for c in grade.checks]
    sessions.stop(box.session_id, principal=INSTRUCTOR)
    assert sessions.finish_stop(box.session_id, actor="test").state == "terminated"


def test_the_starter_is_made_at_start_and_removed_at_stop(world: tuple[Sessions, Sweeper],
                                                          provider: AwsSandboxes) -> None:
    sessions, sweeper = world
    box = _start(sessions, "learner-starter")
    snapshot = sweeper.meter(box.session_id, sweeper.prices())
    [trainer] = snapshot.of_kind("Instance")
    assert (trainer.instance_type, trainer.capacity_type, trainer.labels.get("Name")) == (
        "g5.xlarge", "on-demand", "trainer")
    assert not set(OWNERS) & set(trainer.labels)
    scratch = [v for v in snapshot.of_kind("Volume") if v.labels.get("Name") == "scratch"]
    assert len(scratch) == 1 and scratch[0].mounted_by == [] and scratch[0].storage == 200 * 2**30
    provider.provision(sessions.spec_of(sessions.row_of(box.session_id)))  # a retried start makes nothing twice
    assert len(provider.snapshot(sessions.spec_of(sessions.row_of(box.session_id)),
                                 now=datetime.now(UTC)).of_kind("Instance")) == 1
    assert not sweeper.run_once().actions  # the starter breaks no guardrail of the lab

    sessions.stop(box.session_id, principal=INSTRUCTOR)
    assert sessions.finish_stop(box.session_id, actor="test").state == "terminated"
    assert provider.describe(sessions.spec_of(sessions.row_of(box.session_id)))[0].count == 0
