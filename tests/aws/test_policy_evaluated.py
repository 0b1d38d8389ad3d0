"""The session policy, decided by an independent IAM evaluator (moto does not evaluate condition keys).

Each case is one API call as IAM authorizes it: one request per resource the call touches, with the condition keys
AWS sets for it. A call is allowed only when every one of its requests is.
"""

from __future__ import annotations

import pytest

from labctl.providers.aws import policy
from tests.support import iam
from tests.support.iam import Request

SID = "lab-abc123"
OTHER = "lab-def456"
ACCOUNT = "123456789012"
FENCE = policy.Fence(session_id=SID, regions=("us-east-1", "us-west-2"), instance_types=("m5.large", "g4dn.xlarge"))


@pytest.fixture(scope="module", autouse=True)
def _evaluator() -> None:
    iam.ensure_installed()


def arn(kind: str, region: str = "us-east-1", name: str = "*") -> str:
    return f"arn:aws:ec2:{region}:{ACCOUNT}:{kind}/{name}"


def launch(*, session: str | None = SID, instance_type: str = "g4dn.xlarge", region: str = "us-east-1",
           extra_tags: dict[str, str] | None = None, spot: bool = False) -> list[Request]:
    """RunInstances with tags on the instance and its volume: the instance, the volume, and the shared parts (and
    the spot request a spot launch makes)."""
    tags = {**({policy.SESSION_TAG: session} if session else {}), **(extra_tags or {})}
    tagged = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    keys = {"aws:TagKeys": sorted(tags)} if tags else {}
    where = {"aws:RequestedRegion": region}
    return [Request("ec2:RunInstances", arn("instance", region),
                    {**tagged, **keys, **where, "ec2:InstanceType": instance_type}),
            Request("ec2:RunInstances", arn("volume", region), {**tagged, **keys, **where}),
            Request("ec2:RunInstances", f"arn:aws:ec2:{region}::image/ami-0123456789abcdef0", where),  # no account
            *(Request("ec2:RunInstances", arn(kind, region, name), where) for kind, name in (
                ("subnet", "subnet-0123"), ("security-group", "sg-0123"), ("network-interface", "*"))),
            *([Request("ec2:RunInstances", arn("spot-instances-request", region),
                       {**where, "ec2:InstanceMarketType": "spot"})] if spot else []),
            *([Request("ec2:CreateTags", arn(kind, region), {**tagged, **keys, **where,
                                                             "ec2:CreateAction": "RunInstances"})
               for kind in ("instance", "volume")] if tags else [])]


def on(action: str, resource: str, session: str | None = SID, region: str = "us-east-1",
       **context: object) -> list[Request]:
    owned = {f"aws:ResourceTag/{policy.SESSION_TAG}": session} if session else {}
    return [Request(action, resource, {**owned, "aws:RequestedRegion": region, **context})]


MINE = arn("instance", name="i-0aaa")
THEIRS = arn("instance", name="i-0bbb")

CASES: list[tuple[str, list[Request], bool]] = [
    ("a tagged launch of an allowed type in a lab region", launch(), True),
    ("a tagged spot launch", launch(spot=True), True),
    ("an untagged spot launch", launch(session=None, spot=True), False),
    ("a tagged launch in the lab's second region", launch(region="us-west-2", instance_type="m5.large"), True),
    ("a tagged launch with the learner's own cost tags", launch(extra_tags={"team": "ml", "env": "dev"}), True),
    ("an untagged launch", launch(session=None), False),
    ("a launch tagged only with cost tags", launch(session=None, extra_tags={"team": "ml"}), False),
    ("a launch tagged with another session", launch(session=OTHER), False),
    ("a launch of a type the lab does not allow", launch(instance_type="p5.48xlarge"), False),
    ("a launch in a region the lab does not use", launch(region="eu-west-1"), False),
    ("stopping my own instance", on("ec2:StopInstances", MINE), True),
    ("terminating my own instance", on("ec2:TerminateInstances", MINE), True),
    ("terminating another session's instance", on("ec2:TerminateInstances", THEIRS, session=OTHER), False),
    ("terminating an untagged instance", on("ec2:TerminateInstances", THEIRS, session=None), False),
    ("starting another session's instance", on("ec2:StartInstances", THEIRS, session=OTHER), False),
    ("a tagged volume", [Request("ec2:CreateVolume", arn("volume"), {
        f"aws:RequestTag/{policy.SESSION_TAG}": SID, "aws:TagKeys": [policy.SESSION_TAG],
        "aws:RequestedRegion": "us-east-1"})], True),
    ("a tagged io2 volume (priced by IOPS, not size)", [Request("ec2:CreateVolume", arn("volume"), {
        f"aws:RequestTag/{policy.SESSION_TAG}": SID, "aws:TagKeys": [policy.SESSION_TAG],
        "aws:RequestedRegion": "us-east-1", "ec2:VolumeType": "io2"})], False),
    ("a tagged gp3 volume", [Request("ec2:CreateVolume", arn("volume"), {
        f"aws:RequestTag/{policy.SESSION_TAG}": SID, "aws:TagKeys": [policy.SESSION_TAG],
        "aws:RequestedRegion": "us-east-1", "ec2:VolumeType": "gp3"})], True),
    ("adopting an untagged instance into my session", on("ec2:CreateTags", THEIRS, session=None, **{
        "aws:TagKeys": [policy.SESSION_TAG], f"aws:RequestTag/{policy.SESSION_TAG}": SID}), False),
    ("an untagged volume", [Request("ec2:CreateVolume", arn("volume"), {"aws:RequestedRegion": "us-east-1"})], False),
    ("adding a cost tag to my instance", on("ec2:CreateTags", MINE, **{"aws:TagKeys": ["team"],
                                                                       "aws:RequestTag/team": "ml"}), True),
    ("re-tagging my instance into another session", on("ec2:CreateTags", MINE, **{
        "aws:TagKeys": [policy.SESSION_TAG], f"aws:RequestTag/{policy.SESSION_TAG}": OTHER}), False),
    ("removing the session tag from my instance", on("ec2:DeleteTags", MINE, **{
        "aws:TagKeys": [policy.SESSION_TAG]}), False),
    ("tagging another session's instance", on("ec2:CreateTags", THEIRS, session=OTHER, **{
        "aws:TagKeys": ["team"], "aws:RequestTag/team": "ml"}), False),
    ("changing my instance's type", on("ec2:ModifyInstanceAttribute", MINE), False),
    ("buying a reserved instance", [Request("ec2:PurchaseReservedInstancesOffering", "*",
                                            {"aws:RequestedRegion": "us-east-1"})], False),
    ("buying a host reservation", [Request("ec2:PurchaseHostReservation", "*",
                                           {"aws:RequestedRegion": "us-east-1"})], False),
    ("a capacity reservation", [Request("ec2:CreateCapacityReservation",
                                        arn("capacity-reservation"), {"aws:RequestedRegion": "us-east-1"})], False),
    ("a savings plan", [Request("savingsplans:CreateSavingsPlan", "*")], False),
    ("an IAM user", [Request("iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/escape")], False),
    ("enabling a region", [Request("account:EnableRegion", "*")], False),
    ("describing instances", [Request("ec2:DescribeInstances", "*", {"aws:RequestedRegion": "us-east-1"})], True),
    ("describing instances of another region", [Request("ec2:DescribeInstances", "*",
                                                        {"aws:RequestedRegion": "eu-west-1"})], False),
]


@pytest.mark.parametrize(("call", "allowed"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_the_session_policy(call: list[Request], allowed: bool) -> None:
    answers = iam.evaluate(policy.session_policy(FENCE), call)
    assert all(a == "Allowed" for a in answers) is allowed, list(zip([r.resource for r in call], answers,
                                                                     strict=True))


FROZEN_CASES: list[tuple[str, list[Request], bool]] = [
    ("describing instances", [Request("ec2:DescribeInstances", "*", {"aws:RequestedRegion": "us-east-1"})], True),
    ("a tagged launch", launch(), False),
    ("stopping my own instance", on("ec2:StopInstances", MINE), False),
    ("terminating my own instance", on("ec2:TerminateInstances", MINE), False),
    ("adding a cost tag", on("ec2:CreateTags", MINE, **{"aws:TagKeys": ["team"], "aws:RequestTag/team": "ml"}), False),
    ("buying a reserved instance", [Request("ec2:PurchaseReservedInstancesOffering", "*",
                                            {"aws:RequestedRegion": "us-east-1"})], False),
]


@pytest.mark.parametrize(("call", "allowed"), [(c[1], c[2]) for c in FROZEN_CASES], ids=[c[0] for c in FROZEN_CASES])
def test_the_frozen_policy(call: list[Request], allowed: bool) -> None:
    answers = iam.evaluate(policy.frozen_policy(FENCE), call)
    assert all(a == "Allowed" for a in answers) is allowed, answers


def test_a_denied_launch_is_denied_explicitly_not_only_for_want_of_an_allow() -> None:
    """The fence holds even beside a broader Allow another policy might grant: the instance request of an untagged,
    wrong-type or wrong-region launch meets an explicit Deny."""
    for call in (launch(session=None), launch(instance_type="p5.48xlarge"), launch(region="eu-west-1")):
        assert iam.evaluate(policy.session_policy(FENCE), call[:1]) == ["ExplicitlyDenied"]
