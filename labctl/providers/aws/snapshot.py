"""Pure: what EC2's Describe calls answered about one session's resources -> the provider-neutral ``Snapshot``.

Instances become ``kind: Instance`` (tags as labels, instance type, ``capacity_type`` spot when EC2 says
``InstanceLifecycle == "spot"`` — the field is absent for on-demand —, state as ``phase``, hours since the launch
while running, zone and region, attached volumes), EBS volumes ``kind: Volume`` (size in bytes, the instances they
are attached to), Elastic IPs ``kind: Address`` and EBS snapshots ``kind: VolumeSnapshot``. The snapshot is unpriced;
the meter prices it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labctl.grading.snapshot import BudgetInfo, CostInfo, Resource, SessionInfo, Snapshot

GIB = 2**30
RUNNING_STATES = ("pending", "running")


@dataclass(frozen=True)
class Described:
    """EC2's answers for one region, as boto3 returns them (dicts of the Describe* responses' items)."""

    region: str
    instances: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    volumes: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    addresses: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    snapshots: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    @property
    def count(self) -> int:
        return len(self.instances) + len(self.volumes) + len(self.addresses) + len(self.snapshots)

    def refs(self) -> list[str]:
        """``Kind/id`` of everything described: how a leftover is named."""
        return ([f"Instance/{i['InstanceId']}" for i in self.instances]
                + [f"Volume/{v['VolumeId']}" for v in self.volumes]
                + [f"Address/{a.get('AllocationId') or a.get('PublicIp')}" for a in self.addresses]
                + [f"VolumeSnapshot/{s['SnapshotId']}" for s in self.snapshots])


def tags(item: Mapping[str, Any]) -> dict[str, str]:
    """EC2's ``[{"Key": k, "Value": v}]`` as a map."""
    return {str(t["Key"]): str(t.get("Value", "")) for t in item.get("Tags") or []}


def _hours(since: datetime | None, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds() / 3600) if since is not None else 0.0


def instance(item: Mapping[str, Any], *, region: str, now: datetime) -> Resource:
    state = str((item.get("State") or {}).get("Name") or "unknown")
    launched = item.get("LaunchTime")
    volumes = [str(m["Ebs"]["VolumeId"]) for m in item.get("BlockDeviceMappings") or [] if (m.get("Ebs") or {})
               .get("VolumeId")]
    return Resource(kind="Instance", name=str(item["InstanceId"]), labels=tags(item),
                    instance_type=str(item.get("InstanceType") or ""),
                    capacity_type="spot" if item.get("InstanceLifecycle") == "spot" else "on-demand",
                    phase=state,
                    running_hours=_hours(launched if isinstance(launched, datetime) else None, now)
                    if state in RUNNING_STATES else 0.0,
                    zone=(item.get("Placement") or {}).get("AvailabilityZone"), region=region, volumes=volumes)


def volume(item: Mapping[str, Any], *, region: str, now: datetime) -> Resource:
    created = item.get("CreateTime")
    return Resource(kind="Volume", name=str(item["VolumeId"]), labels=tags(item),
                    volume_type=str(item.get("VolumeType") or "") or None,
                    storage=int(item.get("Size") or 0) * GIB, phase=str(item.get("State") or "unknown"),
                    running_hours=_hours(created if isinstance(created, datetime) else None, now),
                    mounted_by=sorted(str(a["InstanceId"]) for a in item.get("Attachments") or []
                                      if a.get("InstanceId")),
                    zone=item.get("AvailabilityZone"), region=region)


def address(item: Mapping[str, Any], *, region: str) -> Resource:
    attached = item.get("InstanceId")
    return Resource(kind="Address", name=str(item.get("AllocationId") or item.get("PublicIp")), labels=tags(item),
                    annotations={"aws/public-ip": str(item.get("PublicIp") or "")},
                    phase="associated" if attached else "unassociated",
                    mounted_by=[str(attached)] if attached else [], region=region)


def volume_snapshot(item: Mapping[str, Any], *, region: str, now: datetime) -> Resource:
    started = item.get("StartTime")
    return Resource(kind="VolumeSnapshot", name=str(item["SnapshotId"]), labels=tags(item),
                    storage=int(item.get("VolumeSize") or 0) * GIB, phase=str(item.get("State") or "unknown"),
                    running_hours=_hours(started if isinstance(started, datetime) else None, now), region=region)


def build(described: Sequence[Described], *, session: SessionInfo, budget: BudgetInfo, now: datetime) -> Snapshot:
    """The unpriced snapshot of one session over the lab's regions."""
    resources: list[Resource] = []
    for d in described:
        resources += [instance(i, region=d.region, now=now) for i in d.instances]
        resources += [volume(v, region=d.region, now=now) for v in d.volumes]
        resources += [address(a, region=d.region) for a in d.addresses]
        resources += [volume_snapshot(s, region=d.region, now=now) for s in d.snapshots]
    return Snapshot(session=session, budget=budget,
                    cost=CostInfo(accrued_usd=0.0, burn_rate_usd_per_hour=0.0, usage_source="requests"),
                    resources=resources)
