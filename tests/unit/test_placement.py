"""Placement as a table: room, GPUs, MIG slices, quota, taints, selectors, price ties, starts in flight, none fits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from labctl.cost.prices import load_sheet
from labctl.ports import ClusterRoom, LabNeeds, NodeRoom, PodNeed, Taint, Toleration
from labctl.service.placement import decide
from labctl.settings import REPO_ROOT

SHEET = load_sheet(REPO_ROOT / "labs" / "prices.yaml")
GI = Decimal(2**30)
GPU_TAINT = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
GPU_OK = Toleration(key="nvidia.com/gpu", operator="Exists", value=None, effect="NoSchedule")


def node(name: str, *, pool: str, capacity_type: str = "on-demand", instance_type: str = "m5.xlarge",
         cpu: str = "4", memory_gi: int = 16, used_cpu: str = "0", extra: dict[str, int] | None = None,
         used_extra: dict[str, int] | None = None, taints: tuple[Taint, ...] = (), schedulable: bool = True,
         labels: dict[str, str] | None = None) -> NodeRoom:
    allocatable = {"cpu": Decimal(cpu), "memory": memory_gi * GI, "pods": Decimal(110),
                   **{k: Decimal(v) for k, v in (extra or {}).items()}}
    requested = {"cpu": Decimal(used_cpu), **{k: Decimal(v) for k, v in (used_extra or {}).items()}}
    return NodeRoom(name=name, labels={"labctl.dev/pool": pool, "node.kubernetes.io/instance-type": instance_type,
                                       "topology.kubernetes.io/region": "us-east-1",
                                       "karpenter.sh/capacity-type": capacity_type, **(labels or {})},
                    allocatable=allocatable, requested=requested, taints=taints, schedulable=schedulable)


def web(cpu: str = "1500m", count: int = 1) -> LabNeeds:
    pods = tuple(PodNeed(name=f"Deployment/web#{i}", requests={"cpu": Decimal(cpu[:-1]) / 1000 if cpu.endswith("m")
                                                                else Decimal(cpu), "memory": GI})
                 for i in range(count))
    return LabNeeds(pods=pods, quota={"cpu": Decimal(2), "memory": 2 * GI})


def gpu_lab(resource: str = "nvidia.com/gpu") -> LabNeeds:
    return LabNeeds(pods=(PodNeed(name="Deployment/infer", requests={"cpu": Decimal(1), "memory": GI,
                                                                      resource: Decimal(1)},
                                  tolerations=(GPU_OK,)),),
                    quota={"cpu": Decimal(2), "memory": 4 * GI, resource: Decimal(1)})


def room(name: str, *nodes: NodeRoom, error: str | None = None) -> ClusterRoom:
    return ClusterRoom(name=name, nodes=nodes, error=error)


SPOT = room("a", node("a-0", pool="small-spot", capacity_type="spot"))
ON_DEMAND = room("b", node("b-0", pool="cpu-ondemand"), node("b-1", pool="cpu-ondemand"))
GPU = room("g", node("g-0", pool="gpu-one", instance_type="g5.xlarge", extra={"nvidia.com/gpu": 1},
                     taints=(GPU_TAINT,), labels={"nvidia.com/gpu.product": "NVIDIA-A10G",
                                                  "nvidia.com/gpu.count": "1", "nvidia.com/gpu.memory": "24576"}))


def test_the_cheaper_cluster_with_room_wins_and_each_fit_carries_its_price() -> None:
    decision = decide(needs=web(), rooms=[ON_DEMAND, SPOT], sheet=SHEET)
    assert decision.chosen == "a"
    prices = {f.cluster: f.hourly_usd for f in decision.fits}
    assert prices["a"] < prices["b"]  # spot m5.xlarge is 0.40 of on-demand in the sheet
    assert decision.refusals == {}


def test_a_full_cluster_is_refused_with_the_resource_that_is_short_and_the_other_takes_the_start() -> None:
    full = room("a", node("a-0", pool="small-spot", capacity_type="spot", used_cpu="3"))
    decision = decide(needs=web(), rooms=[full, ON_DEMAND], sheet=SHEET)
    assert decision.chosen == "b"
    assert decision.refusals == {"a": "no node in pool small-spot has 1.5 free cpu for Deployment/web#0 (most free: 1)"}


def test_whole_gpus_go_where_one_is_free_and_the_refusal_names_the_pool() -> None:
    decision = decide(needs=gpu_lab(), rooms=[SPOT, GPU], sheet=SHEET)
    assert decision.chosen == "g"
    assert decision.refusals["a"] == ("no node in pool small-spot has 1 free nvidia.com/gpu for Deployment/infer "
                                      "(most free: 0)")


def test_a_gpu_taint_not_tolerated_leaves_no_node_for_the_pod() -> None:
    needs = LabNeeds(pods=(PodNeed(name="Pod/p", requests={"nvidia.com/gpu": Decimal(1)}),))
    decision = decide(needs=needs, rooms=[GPU], sheet=SHEET)
    assert decision.chosen is None
    assert decision.refusals["g"] == "no schedulable node matches Pod/p's node selector (none) and tolerations"


def test_mig_slices_count_per_profile() -> None:
    mig = "nvidia.com/mig-1g.10gb"
    a100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.count": "8",
            "nvidia.com/gpu.memory": "81920"}
    used = room("a", node("a-0", pool="mig", instance_type="p4de.24xlarge", cpu="96", memory_gi=1152,
                          extra={mig: 7, "nvidia.com/mig-2g.20gb": 3}, used_extra={mig: 7}, labels=a100))
    free = room("b", node("b-0", pool="mig", instance_type="p4de.24xlarge", cpu="96", memory_gi=1152,
                          extra={mig: 7}, used_extra={mig: 6}, labels=a100))
    decision = decide(needs=gpu_lab(mig), rooms=[used, free], sheet=SHEET)
    assert decision.chosen == "b"
    assert decision.refusals["a"] == f"no node in pool mig has 1 free {mig} for Deployment/infer (most free: 0)"
    assert 0 < decision.fits[0].hourly_usd < 10  # the slice is priced at its share of the A100 node


def test_the_quota_must_fit_in_the_free_capacity_even_when_the_starters_do() -> None:
    tight = room("a", node("a-0", pool="small-spot", capacity_type="spot", used_cpu="2.25"))
    decision = decide(needs=web("500m"), rooms=[tight, ON_DEMAND], sheet=SHEET)
    assert decision.chosen == "b" and not decision.waiting
    assert decision.refusals["a"] == "the lab's quota of 2 cpu does not fit: the cluster has 1.75 free"


def test_a_node_selector_limits_the_nodes_a_pod_may_take() -> None:
    needs = LabNeeds(pods=(PodNeed(name="Pod/p", requests={"cpu": Decimal(1)},
                                   node_selector={"karpenter.sh/capacity-type": "spot"}),))
    decision = decide(needs=needs, rooms=[ON_DEMAND, SPOT], sheet=SHEET)
    assert decision.chosen == "a"
    assert "node selector (karpenter.sh/capacity-type=spot)" in decision.refusals["b"]


def test_a_price_tie_goes_to_the_cluster_listed_first() -> None:
    twin = room("c", node("c-0", pool="cpu-ondemand"), node("c-1", pool="cpu-ondemand"))
    assert decide(needs=web(), rooms=[ON_DEMAND, twin], sheet=SHEET).chosen == "b"
    assert decide(needs=web(), rooms=[twin, ON_DEMAND], sheet=SHEET).chosen == "c"


def test_starts_in_flight_hold_their_room_so_two_never_take_the_last_gpu() -> None:
    first = decide(needs=gpu_lab(), rooms=[GPU], sheet=SHEET)
    assert first.chosen == "g"
    second = decide(needs=gpu_lab(), rooms=[SPOT, GPU], sheet=SHEET, held={"g": [gpu_lab()]})
    assert "has 1 free nvidia.com/gpu" in second.refusals["g"] and "nvidia.com/gpu" in second.refusals["a"]
    # No GPU is free anywhere: the start waits where one would be (its pod Pending), never on a cluster without any.
    assert second.chosen == "g" and second.waiting


def test_full_everywhere_waits_on_the_cheapest_cluster_that_would_hold_it_empty() -> None:
    full_a = room("a", node("a-0", pool="small-spot", capacity_type="spot", used_cpu="4"))
    full_b = room("b", node("b-0", pool="cpu-ondemand", used_cpu="4"))
    decision = decide(needs=web(), rooms=[full_b, full_a], sheet=SHEET)
    assert decision.chosen == "a" and decision.waiting
    assert set(decision.refusals) == {"a", "b"}


def test_several_pods_take_room_one_after_another() -> None:
    decision = decide(needs=web("1500m", count=3), rooms=[SPOT], sheet=SHEET)  # 3 x 1.5 > 4 cores, even empty
    assert decision.chosen is None and not decision.waiting
    assert decision.refusals["a"].endswith("for Deployment/web#2 (most free: 1)")


@pytest.mark.parametrize(("cluster", "reason"), [
    (room("a", error="the Kubernetes API did not answer"), "did not answer (the Kubernetes API did not answer)"),
    (room("a", node("a-0", pool="x", schedulable=False)), "has no schedulable node (every node is cordoned or not "
                                                           "Ready)"),
])
def test_a_cluster_down_or_cordoned_has_no_room(cluster: ClusterRoom, reason: str) -> None:
    decision = decide(needs=web(), rooms=[cluster, ON_DEMAND], sheet=SHEET)
    assert decision.chosen == "b" and decision.refusals == {"a": reason}


def test_none_that_could_ever_hold_it_names_every_cluster_in_order() -> None:
    decision = decide(needs=gpu_lab(), rooms=[SPOT, ON_DEMAND, room("c", error="refused")], sheet=SHEET)
    assert decision.chosen is None and decision.fits == () and not decision.waiting
    assert decision.reasons() == ("a: no node in pool small-spot has 1 free nvidia.com/gpu for Deployment/infer "
                                  "(most free: 0); b: no node in pool cpu-ondemand has 1 free nvidia.com/gpu for "
                                  "Deployment/infer (most free: 0); c: did not answer (refused)")
