"""Pure: what Compute's aggregated lists answered about one session's instances and disks -> the ``Snapshot``.

The input is the REST resources as JSON-shaped mappings (``Instance.to_dict`` / ``Disk.to_dict`` of the client, or
the API's JSON), so this module needs no SDK. Instances become ``kind: Instance``: labels as they are, the machine
type from the ``machineType`` URL's last segment, ``capacity_type`` spot when ``scheduling.provisioningModel`` is
``SPOT`` or ``scheduling.preemptible`` is true (legacy preemptible VMs), GCE's ``status`` mapped onto the phases the
meter bills (``PROVISIONING``/``STAGING`` -> pending, ``RUNNING`` -> running, ``STOPPING`` -> stopping,
``TERMINATED`` -> stopped, ``SUSPENDED`` -> suspended; the raw status in the ``gcp/status`` annotation), hours since
the last start while running, zone and region, attached disks as ``volumes``. Disks become ``kind: Volume`` (size in
bytes, ``volume_type``, the instances using them as ``mounted_by``), attached or not. Names are unique per zone in
GCE, so a name used in two zones is written ``<zone>/<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labctl.grading.snapshot import BudgetInfo, CostInfo, Resource, SessionInfo, Snapshot

GIB = 2**30
PHASES = {"PROVISIONING": "pending", "STAGING": "pending", "RUNNING": "running", "STOPPING": "stopping",
          "TERMINATED": "stopped", "SUSPENDING": "stopping", "SUSPENDED": "suspended", "REPAIRING": "running"}
RUNNING_STATUSES = ("PROVISIONING", "STAGING", "RUNNING", "REPAIRING")
SPOT_MODELS = ("SPOT",)


@dataclass(frozen=True)
class Listed:
    """The session's resources as the aggregated lists returned them: ``(zone, resource)`` pairs."""

    instances: Sequence[tuple[str, Mapping[str, Any]]] = field(default_factory=tuple)
    disks: Sequence[tuple[str, Mapping[str, Any]]] = field(default_factory=tuple)

    def refs(self) -> list[str]:
        """``Kind/zone/name`` of everything listed: how a leftover is named."""
        return ([f"Instance/{z}/{i['name']}" for z, i in self.instances]
                + [f"Volume/{z}/{d['name']}" for z, d in self.disks])


def last_segment(url: str | None) -> str:
    """``.../zones/us-central1-a/machineTypes/n2-standard-4`` -> ``n2-standard-4``."""
    return (url or "").rstrip("/").rsplit("/", 1)[-1]


def zone_of(key: str) -> str:
    """An aggregated list's key (``zones/us-central1-a``) or a zone URL -> ``us-central1-a``."""
    return last_segment(key)


def region_of(zone: str) -> str:
    """``us-central1-a`` -> ``us-central1``."""
    return zone.rsplit("-", 1)[0] if "-" in zone else zone


def is_spot(item: Mapping[str, Any]) -> bool:
    """GCE's spot test: ``provisioningModel == "SPOT"`` or the legacy ``preemptible`` flag."""
    scheduling = item.get("scheduling") or {}
    return str(scheduling.get("provisioningModel") or scheduling.get("provisioning_model") or "") in SPOT_MODELS \
        or bool(scheduling.get("preemptible"))


def _time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _hours(since: datetime | None, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds() / 3600) if since is not None else 0.0


def _field(item: Mapping[str, Any], camel: str, snake: str) -> Any:
    return item.get(camel, item.get(snake))


def instance(item: Mapping[str, Any], *, zone: str, name: str, now: datetime) -> Resource:
    status = str(item.get("status") or "UNKNOWN")
    started = _time(_field(item, "lastStartTimestamp", "last_start_timestamp")) or _time(
        _field(item, "creationTimestamp", "creation_timestamp"))
    accelerators: dict[str, int] = {}
    for attached in _field(item, "guestAccelerators", "guest_accelerators") or []:
        product = last_segment(_field(attached, "acceleratorType", "accelerator_type"))
        count = int(_field(attached, "acceleratorCount", "accelerator_count") or 1)
        if product and count > 0:
            accelerators[product] = accelerators.get(product, 0) + count
    return Resource(kind="Instance", name=name, labels=dict(item.get("labels") or {}),
                    annotations={"gcp/status": status}, accelerators=accelerators,
                    instance_type=last_segment(_field(item, "machineType", "machine_type")),
                    capacity_type="spot" if is_spot(item) else "on-demand",
                    phase=PHASES.get(status, status.lower()),
                    running_hours=_hours(started, now) if status in RUNNING_STATUSES else 0.0,
                    zone=zone, region=region_of(zone),
                    volumes=[last_segment(d.get("source")) for d in item.get("disks") or [] if d.get("source")])


def disk(item: Mapping[str, Any], *, zone: str, name: str, now: datetime) -> Resource:
    return Resource(kind="Volume", name=name, labels=dict(item.get("labels") or {}),
                    volume_type=last_segment(item.get("type") or item.get("type_")) or None,
                    storage=int(_field(item, "sizeGb", "size_gb") or 0) * GIB,
                    phase=str(item.get("status") or "unknown").lower(),
                    running_hours=_hours(_time(_field(item, "creationTimestamp", "creation_timestamp")), now),
                    mounted_by=sorted(last_segment(u) for u in item.get("users") or []),
                    zone=zone, region=region_of(zone))


def _names(items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Each item's snapshot name: its GCE name, or ``zone/name`` when another zone has the same name."""
    counts: dict[str, int] = {}
    for _, item in items:
        counts[str(item["name"])] = counts.get(str(item["name"]), 0) + 1
    return [str(item["name"]) if counts[str(item["name"])] == 1 else f"{zone}/{item['name']}" for zone, item in items]


def build(listed: Listed, *, session: SessionInfo, budget: BudgetInfo, now: datetime) -> Snapshot:
    """The unpriced snapshot of one session's slice of the project."""
    resources = [instance(i, zone=z, name=n, now=now) for (z, i), n in zip(listed.instances, _names(listed.instances),
                                                                           strict=True)]
    resources += [disk(d, zone=z, name=n, now=now) for (z, d), n in zip(listed.disks, _names(listed.disks),
                                                                        strict=True)]
    return Snapshot(session=session, budget=budget,
                    cost=CostInfo(accrued_usd=0.0, burn_rate_usd_per_hour=0.0, usage_source="requests"),
                    resources=resources)
