"""The IAM policy documents of an AWS sandbox, as pure data: what a learner's session role may do.

A session is a tag, not an account: every EC2 resource the learner makes must carry ``labctl-session=<id>`` from the
moment it is created (``aws:RequestTag`` on the create call: tag-on-create), and every later call is allowed only on
resources carrying it (``aws:ResourceTag``). Launches are limited to the lab's instance types (``ec2:InstanceType``)
and every EC2 call to the lab's regions (``aws:RequestedRegion``). Allows alone would do, but the fence is written
twice: explicit Deny statements repeat the type, region and tag rules, and deny what a sandbox must never buy or make
whatever else is attached (commitments: each service's ``Purchase*``, reservations, savings plans; IAM users and
keys; region enabling), as the SCP sets of trusted sandbox systems do. The learner may add and change its own tags
but never the session tag, so it cannot adopt another session's resources or hide its own.

A frozen sandbox (a submission being graded) gets :func:`frozen_policy`: reads and the same denies, no writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

SESSION_TAG: Final = "labctl-session"
"""The tag key that names a resource's session; the learner may not set or change it except to its own session id
when creating a resource."""

PROTECTED_TAG_PREFIX: Final = "labctl-"
"""Tag keys labctl writes (session, lab, learner): the learner cannot write any key with this prefix afterwards."""

# Create calls and the resource types they make, which must carry the session tag when they are created.
CREATED_BY: Final[dict[str, tuple[str, ...]]] = {
    "ec2:RunInstances": ("instance", "volume"),
    "ec2:CreateVolume": ("volume",),
    "ec2:AllocateAddress": ("elastic-ip",),
    "ec2:CreateSnapshot": ("snapshot",),
}

# Existing shared parts a launch uses (an AMI, the subnet, a security group, an interface it makes, the spot request
# a spot launch makes): no tag needed.
LAUNCH_PARTS: Final = ("image", "subnet", "security-group", "network-interface", "key-pair", "launch-template",
                       "spot-instances-request")

# Calls on the learner's own resources (each resource the call touches must carry the session tag).
OWN_RESOURCE_ACTIONS: Final = (
    "ec2:StartInstances", "ec2:StopInstances", "ec2:RebootInstances", "ec2:TerminateInstances",
    "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume", "ec2:CreateSnapshot", "ec2:DeleteSnapshot",
    "ec2:AssociateAddress", "ec2:DisassociateAddress", "ec2:ReleaseAddress",
)

# EBS types priced by size alone (the meter prices volumes per GB-month): provisioned-IOPS and throughput-billed
# types (io1, io2) are refused, so a volume cannot cost far more than its size says.
VOLUME_TYPES: Final = ("gp3", "gp2", "st1", "sc1", "standard")

READ_ACTIONS: Final = ("ec2:Describe*", "ec2:GetConsoleOutput", "sts:GetCallerIdentity")

# IAM has no wildcard for the service prefix ("*:Purchase*" is refused by policy validation), so each service that
# sells commitments is named: EC2 (reserved instances, host reservations, capacity blocks, scheduled instances) and
# the reserved capacity of the database and cache services.
COMMITMENT_AND_ACCOUNT_ACTIONS: Final = (
    "ec2:Purchase*", "rds:Purchase*", "elasticache:Purchase*", "redshift:Purchase*", "es:Purchase*",
    "dynamodb:Purchase*", "memorydb:Purchase*",
    "ec2:AcceptReservedInstancesExchangeQuote", "ec2:ModifyReservedInstances",
    "ec2:CreateReservedInstancesListing", "ec2:CreateCapacityReservation*",
    "savingsplans:*",
    "iam:CreateUser", "iam:CreateAccessKey", "iam:CreateLoginProfile",
    "account:EnableRegion", "account:DisableRegion", "account:PutAlternateContact",
    "organizations:*",
)


@dataclass(frozen=True)
class Fence:
    """What one session's role is fenced to: its session id, the lab's regions and instance types."""

    session_id: str
    regions: tuple[str, ...]
    instance_types: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.session_id:
            raise ValueError("a fence needs the session id")
        if not self.regions or not self.instance_types:
            raise ValueError("a fence needs at least one region and one instance type")


def _arns(types: Sequence[str]) -> list[str]:
    return [f"arn:aws:ec2:*:*:{t}/*" for t in types]


def _in_regions(fence: Fence) -> dict[str, Any]:
    return {"aws:RequestedRegion": list(fence.regions)}


def _denies(fence: Fence) -> list[dict[str, Any]]:
    """What no session role may do, written or frozen: outside the regions, commitments, IAM users, regions."""
    return [
        {"Sid": "DenyCommitmentsAndAccountChanges", "Effect": "Deny",
         "Action": list(COMMITMENT_AND_ACCOUNT_ACTIONS), "Resource": "*"},
        {"Sid": "DenyOutsideLabRegions", "Effect": "Deny", "Action": "ec2:*", "Resource": "*",
         "Condition": {"StringNotEquals": _in_regions(fence)}},
    ]


def session_policy(fence: Fence) -> dict[str, Any]:
    """The writable sandbox: launch and manage only session-tagged EC2 resources of the lab's types and regions."""
    tagged = {"aws:RequestTag/" + SESSION_TAG: fence.session_id}
    own = {"aws:ResourceTag/" + SESSION_TAG: fence.session_id}
    created_types = sorted({t for types in CREATED_BY.values() for t in types})
    statements: list[dict[str, Any]] = [
        {"Sid": "Read", "Effect": "Allow", "Action": list(READ_ACTIONS), "Resource": "*"},
        {"Sid": "LaunchLabInstanceTypesTagged", "Effect": "Allow", "Action": "ec2:RunInstances",
         "Resource": _arns(["instance"]),
         "Condition": {"StringEquals": {**tagged, **_in_regions(fence),
                                        "ec2:InstanceType": list(fence.instance_types)}}},
        {"Sid": "CreateTagged", "Effect": "Allow", "Action": sorted(CREATED_BY),
         "Resource": _arns([t for t in created_types if t != "instance"]),
         "Condition": {"StringEquals": {**tagged, **_in_regions(fence)}}},
        {"Sid": "LaunchWithSharedParts", "Effect": "Allow", "Action": "ec2:RunInstances",
         "Resource": _arns(LAUNCH_PARTS), "Condition": {"StringEquals": _in_regions(fence)}},
        {"Sid": "TagOnCreate", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": _arns(created_types),
         "Condition": {"StringEquals": {"ec2:CreateAction": sorted(a.removeprefix("ec2:") for a in CREATED_BY)}}},
        {"Sid": "ManageOwnResources", "Effect": "Allow", "Action": list(OWN_RESOURCE_ACTIONS), "Resource": "*",
         "Condition": {"StringEquals": own}},
        {"Sid": "RetagOwnResources", "Effect": "Allow", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
         "Resource": _arns(created_types),
         "Condition": {"StringEquals": own,
                       "ForAllValues:StringNotLike": {"aws:TagKeys": [PROTECTED_TAG_PREFIX + "*"]}}},
        {"Sid": "DenyUntaggedCreate", "Effect": "Deny", "Action": sorted(CREATED_BY),
         "Resource": _arns(created_types),
         "Condition": {"StringNotEquals": tagged}},
        {"Sid": "DenyOtherInstanceTypes", "Effect": "Deny", "Action": "ec2:RunInstances",
         "Resource": _arns(["instance"]),
         "Condition": {"StringNotEquals": {"ec2:InstanceType": list(fence.instance_types)}}},
        {"Sid": "DenyIopsPricedVolumes", "Effect": "Deny", "Action": ["ec2:RunInstances", "ec2:CreateVolume"],
         "Resource": _arns(["volume"]),
         "Condition": {"Null": {"ec2:VolumeType": "false"},
                       "StringNotEquals": {"ec2:VolumeType": list(VOLUME_TYPES)}}},
        {"Sid": "DenySessionTagChanges", "Effect": "Deny", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
         "Resource": "*",
         "Condition": {"Null": {"ec2:CreateAction": "true"},
                       "ForAnyValue:StringLike": {"aws:TagKeys": [PROTECTED_TAG_PREFIX + "*"]}}},
        *_denies(fence),
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def frozen_policy(fence: Fence) -> dict[str, Any]:
    """The frozen sandbox: reads only, and the same denies."""
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": "Read", "Effect": "Allow", "Action": list(READ_ACTIONS), "Resource": "*"},
                          *_denies(fence)]}


def trust_policy(principal_arn: str) -> dict[str, Any]:
    """Who may assume a session role: labctl's own principal (it hands the learner the STS credentials)."""
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal_arn}, "Action": "sts:AssumeRole"}]}


def text(document: dict[str, Any]) -> str:
    """A policy document as the compact JSON IAM takes (inline policies are limited to 10,240 characters)."""
    out = json.dumps(document, separators=(",", ":"), sort_keys=True)
    if len(out) > 10240:
        raise ValueError(f"the policy is {len(out)} characters; IAM's limit for a role's inline policies is 10240")
    return out
