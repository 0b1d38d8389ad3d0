"""The simulated node fleet: a data file of node pools, validated, turned into Node objects.

Pure: reading YAML text and producing dicts. Applying them to a cluster is the caller's job
(:mod:`labctl.localcluster.cluster`). Each pool's nodes carry the labels real clouds put on nodes (EKS, Karpenter
and GKE spellings of the capacity type, instance type, region and zone, GPU feature discovery labels) and the
taints a cloud would add, so labs and graders meet the same facts they would meet on EKS or GKE.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# MIG profiles per GPU memory size (NVIDIA MIG user guide); compute is `g` sevenths of the GPU.
MIG_PROFILES: dict[int, frozenset[str]] = {
    40960: frozenset({"1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"}),
    81920: frozenset({"1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"}),
    144384: frozenset({"1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"}),
}
_PROFILE = re.compile(r"^(?P<g>[1-7])g\.(?P<gb>\d+)gb$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

MANAGED_BY = "labctl-localcluster"


class FleetError(ValueError):
    """The fleet file is invalid; the message names the file, the pool and the field."""


class Taint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Gpu(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
    count: int = Field(ge=1, le=16)
    memory_mib: int = Field(ge=1)
    mig: dict[str, int] = Field(default_factory=dict, description="mixed-strategy MIG slices: profile -> count")

    @model_validator(mode="after")
    def _mig_fits(self) -> Gpu:
        if not self.mig:
            return self
        known = MIG_PROFILES.get(self.memory_mib)
        if known is None:
            sizes = ", ".join(str(k) for k in sorted(MIG_PROFILES))
            raise ValueError(f"MIG is only modelled for GPUs of {sizes} MiB, not {self.memory_mib}")
        sevenths = 0
        for profile, count in self.mig.items():
            if profile not in known:
                raise ValueError(f"unknown MIG profile {profile!r} for a {self.memory_mib} MiB GPU; one of "
                                 f"{', '.join(sorted(known))}")
            if count < 1:
                raise ValueError(f"MIG profile {profile} needs a count >= 1, got {count}")
            match = _PROFILE.match(profile)
            assert match is not None  # every known profile matches
            sevenths += int(match["g"]) * count
        if sevenths > 7 * self.count:
            raise ValueError(f"MIG slices use {sevenths} compute sevenths but {self.count} GPUs have {7 * self.count}")
        return self


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=50)
    count: int = Field(ge=0, le=100)
    instance_type: str = Field(min_length=1)
    region: str = Field(min_length=1)
    zone: str = Field(min_length=1)
    capacity_type: Literal["on-demand", "spot"]
    cpu: str
    memory: str
    pods: int = Field(default=110, ge=1)
    gpu: Gpu | None = None
    taints: list[Taint] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be lowercase letters, digits and '-' (it names the nodes)")
        return v

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, v: str) -> str:
        if not _QUANTITY.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes quantity (e.g. '4', '500m', '16Gi')")
        return v


class Fleet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pools: list[Pool] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Fleet:
        seen: set[str] = set()
        for pool in self.pools:
            if pool.name in seen:
                raise ValueError(f"pool name {pool.name!r} is used twice")
            seen.add(pool.name)
        return self


def parse(text: str, *, source: str) -> Fleet:
    """Validate fleet YAML; errors name ``source``, the pool index and name, and the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FleetError(f"{source}: not valid YAML: {exc}") from exc
    try:
        return Fleet.model_validate(data)
    except ValidationError as exc:
        raise FleetError(_describe(exc, data, source)) from exc


def load(path: Path) -> Fleet:
    return parse(path.read_text(), source=str(path))


def _describe(exc: ValidationError, data: Any, source: str) -> str:
    lines = [f"{source}: invalid fleet"]
    for err in exc.errors():
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "pools" and isinstance(loc[1], int):
            try:
                name = data["pools"][loc[1]].get("name")
            except (KeyError, IndexError, TypeError, AttributeError):
                name = None
            if name:
                where += f" (pool {name!r})"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def capacity_labels(capacity_type: str) -> dict[str, str]:
    """The capacity-type labels EKS managed node groups, Karpenter and GKE put on a node."""
    spot = capacity_type == "spot"
    labels = {
        "eks.amazonaws.com/capacityType": "SPOT" if spot else "ON_DEMAND",
        "karpenter.sh/capacity-type": capacity_type,
        "cloud.google.com/gke-provisioning": "spot" if spot else "standard",
    }
    if spot:
        labels["cloud.google.com/gke-spot"] = "true"
    return labels


def node_manifests(fleet: Fleet) -> list[dict[str, Any]]:
    """The Node objects of the fleet, in pool order, with their status (kwok keeps supplied capacity)."""
    nodes: list[dict[str, Any]] = []
    for pool in fleet.pools:
        for index in range(pool.count):
            nodes.append(_node(pool, f"{pool.name}-{index}"))
    return nodes


def _node(pool: Pool, name: str) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": pool.instance_type,
        "topology.kubernetes.io/region": pool.region,
        "topology.kubernetes.io/zone": pool.zone,
        "labctl.dev/pool": pool.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "type": "kwok",
        **capacity_labels(pool.capacity_type),
    }
    capacity: dict[str, str] = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.pods)}
    if pool.gpu is not None:
        labels |= {
            "nvidia.com/gpu.product": pool.gpu.product,
            "nvidia.com/gpu.count": str(pool.gpu.count),
            "nvidia.com/gpu.memory": str(pool.gpu.memory_mib),
        }
        if pool.gpu.mig:
            labels["nvidia.com/mig.strategy"] = "mixed"
            for profile, count in sorted(pool.gpu.mig.items()):
                labels[f"nvidia.com/mig-{profile}.count"] = str(count)
                capacity[f"nvidia.com/mig-{profile}"] = str(count)
        else:
            capacity["nvidia.com/gpu"] = str(pool.gpu.count)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [t.model_dump() for t in pool.taints]},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
            "phase": "Running",
        },
    }
