"""The fleet file: validation errors that name the file, pool and field; nodes labelled like real clouds."""

from __future__ import annotations

import pytest

from labctl.localcluster import fleet
from labctl.settings import Settings

GOOD = """
pools:
  - {name: a, count: 2, instance_type: m5.large, region: r, zone: z, capacity_type: spot, cpu: "2", memory: 8Gi}
  - name: g
    count: 1
    instance_type: p4de.24xlarge
    region: r
    zone: z
    capacity_type: on-demand
    cpu: "96"
    memory: 1152Gi
    gpu: {product: NVIDIA-A100-SXM4-80GB, count: 2, memory_mib: 81920, mig: {1g.10gb: 7, 3g.40gb: 2}}
"""


def test_shipped_fleet_is_valid_and_has_the_pools_labs_need() -> None:
    parsed = fleet.load(Settings().fleet_file)
    nodes = fleet.node_manifests(parsed)
    labels = [n["metadata"]["labels"] for n in nodes]
    caps = [n["status"]["capacity"] for n in nodes]
    assert any(lb["karpenter.sh/capacity-type"] == "spot" and "nvidia.com/gpu.product" not in lb for lb in labels)
    assert any(lb["karpenter.sh/capacity-type"] == "on-demand" and "nvidia.com/gpu.product" not in lb
               for lb in labels)
    assert any(c.get("nvidia.com/gpu") and lb["karpenter.sh/capacity-type"] == "on-demand"
               for c, lb in zip(caps, labels, strict=True))
    assert any("nvidia.com/mig-1g.10gb" in c and lb["karpenter.sh/capacity-type"] == "spot"
               for c, lb in zip(caps, labels, strict=True))


def test_spot_node_carries_every_spelling_of_capacity_type() -> None:
    node = fleet.node_manifests(fleet.parse(GOOD, source="f.yaml"))[0]
    labels = node["metadata"]["labels"]
    assert node["metadata"]["name"] == "a-0"
    assert labels["eks.amazonaws.com/capacityType"] == "SPOT"
    assert labels["karpenter.sh/capacity-type"] == "spot"
    assert labels["cloud.google.com/gke-spot"] == "true"
    assert labels["cloud.google.com/gke-provisioning"] == "spot"
    assert labels["node.kubernetes.io/instance-type"] == "m5.large"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_on_demand_node_labels() -> None:
    assert fleet.capacity_labels("on-demand") == {
        "eks.amazonaws.com/capacityType": "ON_DEMAND",
        "karpenter.sh/capacity-type": "on-demand",
        "cloud.google.com/gke-provisioning": "standard",
    }


def test_mig_pool_advertises_one_resource_per_profile_and_no_whole_gpu() -> None:
    node = fleet.node_manifests(fleet.parse(GOOD, source="f.yaml"))[-1]
    cap = node["status"]["capacity"]
    assert cap["nvidia.com/mig-1g.10gb"] == "7"
    assert cap["nvidia.com/mig-3g.40gb"] == "2"
    assert "nvidia.com/gpu" not in cap
    assert node["metadata"]["labels"]["nvidia.com/mig.strategy"] == "mixed"
    assert node["metadata"]["labels"]["nvidia.com/mig-3g.40gb.count"] == "2"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("capacity_type: spot", "capacity_type: spott"), "pools.0.capacity_type (pool 'a')"),
        (("memory: 8Gi", "memory: eight"), "pools.0.memory (pool 'a')"),
        (("1g.10gb: 7", "1g.5gb: 7"), "unknown MIG profile '1g.5gb'"),
        (("3g.40gb: 2", "3g.40gb: 3"), "MIG slices use 16 compute sevenths but 2 GPUs have 14"),
        (("name: a,", "name: A_1,"), "pools.0.name"),
        (("count: 2,", "count: 2, colour: red,"), "pools.0.colour (pool 'a')"),
    ],
)
def test_errors_name_file_pool_and_field(change: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(fleet.FleetError) as err:
        fleet.parse(text, source="labs/fleet.yaml")
    assert str(err.value).startswith("labs/fleet.yaml: invalid fleet")
    assert expected in str(err.value)


def test_duplicate_pool_names_rejected() -> None:
    text = GOOD + "  - {name: a, count: 1, instance_type: t, region: r, zone: z, capacity_type: spot, cpu: '1', " \
                  "memory: 1Gi}\n"
    with pytest.raises(fleet.FleetError, match="pool name 'a' is used twice"):
        fleet.parse(text, source="f.yaml")


def test_broken_yaml_names_the_file() -> None:
    with pytest.raises(fleet.FleetError, match=r"^f\.yaml: not valid YAML"):
        fleet.parse("pools: [", source="f.yaml")
