"""OpenCost's cost model: the node price split into unit rates that add up to it, MIG slice shares, containers priced
at max(request, usage), pods at their effective requests, PVCs and load balancers, money accrued and forecast over
fixed datetimes; and the meter, which prices a snapshot into a new one, billing what holds a node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from labctl.cost import meter, model
from labctl.cost.model import UnitRates, container_hourly_usd, mig_fraction, mig_share, unit_rates
from labctl.cost.prices import CapacityType, InstancePrice, PriceSheet, load_sheet, parse_sheet
from labctl.grading.snapshot import (
    BudgetInfo,
    Container,
    ContainerUsage,
    CostInfo,
    Node,
    Resource,
    SessionInfo,
    Snapshot,
)
from labctl.settings import REPO_ROOT

SHEET_FILE = REPO_ROOT / "labs" / "prices.yaml"
SHEET = load_sheet(SHEET_FILE)
TINY = Decimal("1e-20")
A100_80GB_MIB = 81920
GIB = 2**30


def rates_of(instance_type: str, capacity: CapacityType, sheet: PriceSheet = SHEET) -> UnitRates:
    return unit_rates(sheet.node_price("aws", "us-east-1", instance_type, capacity))


# --- the split ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", ["on-demand", "spot"])
@pytest.mark.parametrize("row", SHEET.instances, ids=lambda row: f"{row.provider}-{row.instance_type}")
def test_unit_rate_split_sums_to_the_node_price_for_every_row(row: InstancePrice, capacity: CapacityType) -> None:
    price = SHEET.node_price(row.provider, row.region, row.instance_type, capacity)
    rates = unit_rates(price)
    assert rates.cpu_part_usd + rates.memory_part_usd + rates.gpu_part_usd == price.hourly_usd  # exactly
    by_rate = (rates.cpu_core_hourly_usd * price.vcpu + rates.memory_gib_hourly_usd * price.memory_gib
               + rates.gpu_hourly_usd * price.gpus)
    assert abs(by_rate - price.hourly_usd) < TINY
    assert min(rates.cpu_core_hourly_usd, rates.memory_gib_hourly_usd, rates.gpu_hourly_usd) > 0
    # OpenCost's ratio: the rates keep the fallback unit rates' proportions
    fallback = SHEET.fallback
    assert abs(rates.cpu_core_hourly_usd / rates.memory_gib_hourly_usd
               - fallback.vcpu_hourly_usd / fallback.memory_gib_hourly_usd) < Decimal("1e-18")
    assert abs(rates.gpu_hourly_usd / rates.cpu_core_hourly_usd
               - fallback.gpu_hourly_usd / fallback.vcpu_hourly_usd) < Decimal("1e-18")
    if price.gpus == 0:
        assert rates.gpu_part_usd == 0


def test_the_split_formula_on_p4de() -> None:
    price = SHEET.node_price("aws", "us-east-1", "p4de.24xlarge", "on-demand")
    rates = unit_rates(price)
    weight = 96 * Decimal("0.031611") + 1152 * Decimal("0.004237") + 8 * Decimal("0.95")
    assert weight == Decimal("15.51568")
    k = Decimal("27.44705") / weight
    assert abs(rates.cpu_core_hourly_usd - k * Decimal("0.031611")) < TINY
    assert abs(rates.memory_gib_hourly_usd - k * Decimal("0.004237")) < TINY
    assert abs(rates.gpu_hourly_usd - k * Decimal("0.95")) < TINY
    assert rates.cpu_part_usd + rates.memory_part_usd + rates.gpu_part_usd == Decimal("27.44705")
    assert round(rates.gpu_hourly_usd, 6) == Decimal("1.680538")


def test_a_fallback_priced_node_splits_back_into_the_fallback_rates() -> None:
    price = SHEET.node_price("aws", "us-east-1", "z9.large", "on-demand", cpu_cores=8, memory_gib=32, gpus=2)
    rates = unit_rates(price)
    assert rates.cpu_core_hourly_usd == Decimal("0.031611")
    assert rates.memory_gib_hourly_usd == Decimal("0.004237")
    assert rates.gpu_hourly_usd == Decimal("0.95")


def test_the_split_uses_the_capacity_passed_in() -> None:
    price = SHEET.node_price("aws", "us-east-1", "m5.xlarge", "on-demand")
    allocatable = unit_rates(price, cpu_cores=Decimal("3.92"), memory_gib=Decimal("15.3"), gpus=0)
    assert allocatable.cpu_part_usd + allocatable.memory_part_usd == Decimal("0.192")
    assert allocatable.cpu_core_hourly_usd > unit_rates(price).cpu_core_hourly_usd  # fewer cores carry the price
    assert allocatable.gpu_part_usd == 0 and allocatable.gpu_hourly_usd > 0


@pytest.mark.parametrize(("cpu", "memory", "gpus", "match"), [
    (0, 0, 0, "no capacity"),
    (-1, 16, 0, "negative"),
    (4, 16, -1, "negative"),
])
def test_split_rejects_impossible_capacity(cpu: int, memory: int, gpus: int, match: str) -> None:
    price = SHEET.node_price("aws", "us-east-1", "m5.xlarge", "on-demand")
    with pytest.raises(ValueError, match=match):
        unit_rates(price, cpu_cores=cpu, memory_gib=memory, gpus=gpus)


# --- the acceptance figures: a whole A100 on demand, a 1g.10gb slice on spot --------------------------------------


def test_one_whole_a100_on_the_on_demand_p4de_costs_the_gpu_hour_rate_of_its_split() -> None:
    rates = rates_of("p4de.24xlarge", "on-demand")
    assert rates.cpu_part_usd + rates.memory_part_usd + rates.gpu_part_usd == Decimal("27.44705")
    cost = container_hourly_usd({"nvidia.com/gpu": "1"}, None, rates, node_gpu_memory_mib=A100_80GB_MIB)
    assert cost.hourly_usd == rates.gpu_hourly_usd == cost.gpu_hourly_usd
    assert cost.gpus == 1
    assert round(cost.hourly_usd, 6) == Decimal("1.680538")
    assert abs(8 * cost.hourly_usd - rates.gpu_part_usd) < TINY  # eight such pods pay the node's GPU part
    assert not cost.usage_known


def test_the_same_workload_on_a_spot_1g_10gb_slice_costs_a_seventh_of_the_spot_gpu_hour() -> None:
    rates = rates_of("p4de.24xlarge", "spot")
    assert rates.node_hourly_usd == Decimal("9.6064675")
    on_demand = container_hourly_usd({"nvidia.com/gpu": 1}, None, rates_of("p4de.24xlarge", "on-demand"))
    cost = container_hourly_usd({"nvidia.com/mig-1g.10gb": "1"}, None, rates, node_gpu_memory_mib=A100_80GB_MIB)
    assert mig_share("1g.10gb", A100_80GB_MIB) == Fraction(1, 7)  # max(1/7, 10/80)
    assert cost.hourly_usd == rates.gpu_hourly_usd / 7
    assert cost.hourly_usd == model.mig_slice_hourly_usd("1g.10gb", rates, gpu_memory_mib=A100_80GB_MIB)
    assert round(cost.hourly_usd, 6) == Decimal("0.084027")
    assert abs(cost.gpus - Decimal(1) / 7) < TINY
    assert cost.hourly_usd < on_demand.hourly_usd / 19  # 0.35 spot x 1/7 slice


def test_the_fleets_a100_nodes_give_the_same_figures_from_their_labels() -> None:
    from labctl.localcluster import fleet  # the simulated nodes, labelled like EKS / Karpenter / GKE

    nodes = {n["metadata"]["name"]: n for n in fleet.node_manifests(fleet.load(REPO_ROOT / "labs" / "fleet.yaml"))}
    on_demand = nodes["gpu-a100-ondemand-0"]["metadata"]["labels"]
    spot = nodes["gpu-a100-mig-spot-0"]["metadata"]["labels"]
    whole = unit_rates(SHEET.node_price_from_labels(on_demand, cpu_cores=96, memory_gib=1152))
    sliced = unit_rates(SHEET.node_price_from_labels(spot, cpu_cores=96, memory_gib=1152))
    assert whole.gpu_hourly_usd == rates_of("p4de.24xlarge", "on-demand").gpu_hourly_usd
    memory = int(spot["nvidia.com/gpu.memory"])
    assert model.mig_slice_hourly_usd("1g.10gb", sliced, gpu_memory_mib=memory) == sliced.gpu_hourly_usd / 7


# --- MIG ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gpu", "memory_mib", "profile", "share"), [
    # A100 40GB: memory share of 40 GB vs compute share of 7
    ("A100 40GB", 40960, "1g.5gb", Fraction(1, 7)),      # max(1/7, 5/40)
    ("A100 40GB", 40960, "1g.10gb", Fraction(1, 4)),     # max(1/7, 10/40)
    ("A100 40GB", 40960, "2g.10gb", Fraction(2, 7)),     # max(2/7, 10/40)
    ("A100 40GB", 40960, "3g.20gb", Fraction(1, 2)),     # max(3/7, 20/40)
    ("A100 40GB", 40960, "4g.20gb", Fraction(4, 7)),     # max(4/7, 20/40)
    ("A100 40GB", 40960, "7g.40gb", Fraction(1)),
    ("A100 40GB (nvidia-smi)", 40536, "3g.20gb", Fraction(1, 2)),
    # A100 80GB
    ("A100 80GB", 81920, "1g.10gb", Fraction(1, 7)),     # max(1/7, 10/80)
    ("A100 80GB", 81920, "1g.20gb", Fraction(1, 4)),     # max(1/7, 20/80)
    ("A100 80GB", 81920, "2g.20gb", Fraction(2, 7)),
    ("A100 80GB", 81920, "3g.40gb", Fraction(1, 2)),
    ("A100 80GB", 81920, "4g.40gb", Fraction(4, 7)),
    ("A100 80GB", 81920, "7g.80gb", Fraction(1)),
    # H100 80GB: the same profiles; GPU feature discovery reports 81559 MiB, still an 80 GB GPU
    ("H100 80GB", 81559, "1g.10gb", Fraction(1, 7)),
    ("H100 80GB", 81559, "1g.20gb", Fraction(1, 4)),
    ("H100 80GB", 81559, "2g.20gb", Fraction(2, 7)),
    ("H100 80GB", 81559, "3g.40gb", Fraction(1, 2)),
    ("H100 80GB", 81559, "4g.40gb", Fraction(4, 7)),
    ("H100 80GB", 81559, "7g.80gb", Fraction(1)),
    ("H100 80GB", 81920, "3g.40gb", Fraction(1, 2)),
    # H200 141GB
    ("H200", 144384, "1g.18gb", Fraction(1, 7)),         # max(1/7, 18/141)
    ("H200", 144384, "1g.35gb", Fraction(35, 141)),
    ("H200", 144384, "3g.71gb", Fraction(71, 141)),
    ("H200", 144384, "7g.141gb", Fraction(1)),
])
def test_mig_fraction_of_every_profile(gpu: str, memory_mib: int, profile: str, share: Fraction) -> None:
    assert mig_share(profile, memory_mib) == share
    assert mig_fraction(profile, memory_mib) == pytest.approx(float(share))
    assert 0 < mig_fraction(profile, memory_mib) <= 1


@pytest.mark.parametrize(("profile", "memory_mib", "match"), [
    ("1g10gb", 81920, "not a MIG profile"),
    ("8g.80gb", 81920, "not a MIG profile"),
    ("0g.10gb", 81920, "not a MIG profile"),
    ("7g.80gb", 40960, "needs 80 GB"),
    ("1g.10gb", 0, "must be positive"),
])
def test_mig_share_rejects(profile: str, memory_mib: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mig_share(profile, memory_mib)


def test_the_sheet_may_override_a_mig_share() -> None:
    text = SHEET_FILE.read_text().replace("mig: {}", "mig:\n  NVIDIA-A100-SXM4-80GB: {1g.10gb: 0.2}")
    sheet = parse_sheet(text, source="custom.yaml")
    rates = unit_rates(sheet.node_price("aws", "us-east-1", "p4de.24xlarge", "spot"))
    assert model.mig_slice_hourly_usd("1g.10gb", rates, gpu_memory_mib=None) == rates.gpu_hourly_usd * Decimal("0.2")
    assert model.mig_slice_hourly_usd("3g.40gb", rates, gpu_memory_mib=81920) == rates.gpu_hourly_usd / 2
    cost = container_hourly_usd({"nvidia.com/mig-1g.10gb": 2}, None, rates)
    assert cost.gpus == Decimal("0.4")


@pytest.mark.parametrize(("resource", "profile"), [
    ("nvidia.com/mig-1g.10gb", "1g.10gb"), ("nvidia.com/mig-7g.80gb", "7g.80gb"),
    ("nvidia.com/gpu", None), ("cpu", None),
])
def test_mig_profile_of(resource: str, profile: str | None) -> None:
    assert model.mig_profile_of(resource) == profile


# --- containers ---------------------------------------------------------------------------------------------------

M5 = rates_of("m5.xlarge", "on-demand")


@pytest.mark.parametrize(("requests", "usage", "cpu", "memory_gib", "usage_known"), [
    # usage below the request: the request is paid for (it was reserved)
    ({"cpu": "1", "memory": "2Gi"}, {"cpu": "250m", "memory": "512Mi"}, "1", "2", True),
    # usage above the request: the usage is paid for
    ({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1500m", "memory": "3Gi"}, "1.5", "3", True),
    # mixed: cpu above, memory below
    ({"cpu": "100m", "memory": "4Gi"}, {"cpu": "2", "memory": "1Gi"}, "2", "4", True),
    # no metrics: requests alone, and the breakdown says so
    ({"cpu": "2", "memory": "8Gi"}, None, "2", "8", False),
    ({"cpu": "2", "memory": "8Gi"}, {}, "2", "8", False),
    # no requests (BestEffort): usage alone
    ({}, {"cpu": "0.25", "memory": 268435456}, "0.25", "0.25", True),
    # numbers in base units: cores and bytes
    ({"cpu": 2, "memory": 2 * GIB}, {"cpu": 0.5}, "2", "2", True),
])
def test_container_cost_is_max_of_request_and_usage(requests: dict[str, object], usage: dict[str, object] | None,
                                                    cpu: str, memory_gib: str, usage_known: bool) -> None:
    cost = container_hourly_usd(requests, usage, M5)  # type: ignore[arg-type]
    assert cost.cpu_cores == Decimal(cpu)
    assert cost.memory_gib == Decimal(memory_gib)
    assert cost.cpu_hourly_usd == Decimal(cpu) * M5.cpu_core_hourly_usd
    assert cost.memory_hourly_usd == Decimal(memory_gib) * M5.memory_gib_hourly_usd
    assert cost.gpu_hourly_usd == 0
    assert cost.hourly_usd == cost.cpu_hourly_usd + cost.memory_hourly_usd
    assert cost.usage_known is usage_known


def test_a_container_using_the_whole_node_pays_the_whole_node() -> None:
    cost = container_hourly_usd({"cpu": "4", "memory": "16Gi"}, None, M5)
    assert abs(cost.hourly_usd - Decimal("0.192")) < TINY


def test_gpu_usage_does_not_change_the_gpu_price_and_unknown_extended_resources_are_listed() -> None:
    rates = rates_of("p4de.24xlarge", "on-demand")
    cost = container_hourly_usd(
        {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "2", "example.com/fpga": "1", "ephemeral-storage": "1Gi"},
        {"cpu": "1", "memory": "8Gi", "nvidia.com/gpu": "0"}, rates)
    assert cost.gpu_hourly_usd == 2 * rates.gpu_hourly_usd
    assert cost.hourly_usd == 4 * rates.cpu_core_hourly_usd + 32 * rates.memory_gib_hourly_usd + cost.gpu_hourly_usd
    assert cost.unpriced == ("example.com/fpga",)


def test_several_mig_profiles_add_up() -> None:
    rates = rates_of("p4de.24xlarge", "spot")
    cost = container_hourly_usd({"nvidia.com/mig-1g.10gb": "2", "nvidia.com/mig-3g.40gb": "1",
                                 "nvidia.com/mig-2g.20gb": "0"}, None, rates, node_gpu_memory_mib=A100_80GB_MIB)
    assert cost.gpu_hourly_usd == 2 * (rates.gpu_hourly_usd / 7) + rates.gpu_hourly_usd / 2
    assert abs(cost.gpus - (Decimal(2) / 7 + Decimal("0.5"))) < TINY


@pytest.mark.parametrize(("requests", "memory", "match"), [
    ({"nvidia.com/mig-1g.10gb": "1"}, None, "needs the GPU's memory"),
    ({"nvidia.com/gpu": "0.5"}, A100_80GB_MIB, "whole units"),
    ({"nvidia.com/mig-1g.10gb": -1}, A100_80GB_MIB, "whole units"),
    ({"nvidia.com/mig-1g.10gb": "-1"}, A100_80GB_MIB, "not a Kubernetes quantity"),
    ({"nvidia.com/mig-banana": "1"}, A100_80GB_MIB, "not a MIG profile"),
    ({"cpu": "lots"}, None, "not a Kubernetes quantity"),
])
def test_container_cost_rejects(requests: dict[str, object], memory: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        container_hourly_usd(requests, None, rates_of("p4de.24xlarge", "spot"),  # type: ignore[arg-type]
                             node_gpu_memory_mib=memory)


# --- PVCs and load balancers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "hourly"), [
    ("10Gi", Decimal(10) * Decimal("0.04") / 730),
    (GIB, Decimal("0.04") / 730),
    ("0", Decimal(0)),
    ("730Gi", Decimal("0.04")),
])
def test_pvc_by_requested_size(size: str | int, hourly: Decimal) -> None:
    assert model.pvc_hourly_usd(size, SHEET) == hourly


def test_pvc_rejects_a_negative_size() -> None:
    with pytest.raises(ValueError, match="negative"):
        model.pvc_hourly_usd(-1, SHEET)


def test_load_balancer_rate() -> None:
    assert model.load_balancer_hourly_usd(SHEET) == Decimal("0.0225")


# --- money over time ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("previous", "hourly", "seconds", "expected"), [
    ("0", "27.44705", 3600, "27.44705"),
    ("1.50", "3.6", 60, "1.56"),
    ("0", "0.192", 0, "0"),
    ("2", "0", 86400, "2"),
    ("0.10", "1.2", 1.5, "0.1005"),
    ("0", Decimal("1.680538"), 1800, "0.840269"),
    ("0", "0.0225", Decimal("0.5"), "0.000003125"),
])
def test_accrue(previous: str, hourly: str | Decimal, seconds: float, expected: str) -> None:
    assert model.accrue(previous, hourly, seconds) == Decimal(expected)


def test_accrual_in_steps_equals_accrual_at_once() -> None:
    rate = rates_of("p4de.24xlarge", "spot").gpu_hourly_usd / 7
    stepped = Decimal(0)
    for _ in range(60):
        stepped = model.accrue(stepped, rate, 60)
    assert abs(stepped - model.accrue(0, rate, 3600)) < TINY


@pytest.mark.parametrize(("hourly", "seconds", "match"), [
    ("1", -1, "negative"),
    ("-1", 60, "negative"),
])
def test_accrue_rejects(hourly: str, seconds: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model.accrue(0, hourly, seconds)


BERLIN = ZoneInfo("Europe/Berlin")
NOON = datetime(2026, 7, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("accrued", "rate", "now", "expires_at", "expected"), [
    ("1", "2", NOON, NOON + timedelta(hours=1, minutes=30), "4"),
    ("0.5", "0.192", NOON, NOON + timedelta(hours=10), "2.42"),
    # already expired: nothing more accrues
    ("3", "10", NOON, NOON - timedelta(minutes=5), "3"),
    ("3", "10", NOON, NOON, "3"),
    # across the spring-forward night in Berlin: 01:30 CET to 03:30 CEST is one hour, not two
    ("0", "6", datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN), datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN), "6"),
    # across the autumn night: 01:30 CEST to 03:30 CET is three hours
    ("0", "6", datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN), datetime(2026, 10, 25, 3, 30, tzinfo=BERLIN), "18"),
    # mixed zones: the same instant
    ("1", "1", datetime(2026, 7, 20, 14, 0, tzinfo=BERLIN), NOON + timedelta(hours=2), "3"),
])
def test_forecast_at_expiry(accrued: str, rate: str, now: datetime, expires_at: datetime, expected: str) -> None:
    assert model.forecast(accrued, rate, now, expires_at) == Decimal(expected)


def test_forecast_needs_aware_datetimes() -> None:
    with pytest.raises(ValueError, match="time zone"):
        model.forecast(0, 1, datetime(2026, 7, 20, 12, 0), NOON)
    with pytest.raises(ValueError, match="time zone"):
        model.forecast(0, 1, NOON, datetime(2026, 7, 20, 13, 0))


@pytest.mark.parametrize(("accrued", "budget", "share"), [
    ("0", "10", "0"), ("5", "10", "0.5"), ("0.8", "1", "0.8"), ("1", "1", "1"), ("12.5", "10", "1.25"),
])
def test_budget_share(accrued: str, budget: str, share: str) -> None:
    assert model.budget_share(accrued, budget) == Decimal(share)


@pytest.mark.parametrize("budget", ["0", "-5"])
def test_budget_share_rejects_a_non_positive_budget(budget: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        model.budget_share(1, budget)


# --- effective requests: what the scheduler holds for a pod -----------------------------------------------------------

Demand = model.ContainerDemand


@pytest.mark.parametrize(("containers", "init", "pod_requests", "overhead", "expected"), [
    # app containers add up
    ([Demand({"cpu": "100m"}), Demand({"cpu": "200m"})], [], None, None, {"cpu": "0.3"}),
    # a regular init container larger than the app: the node holds the init's request
    ([Demand({"cpu": "100m", "memory": "64Mi"})], [Demand({"cpu": "2", "memory": "32Mi"})], None, None,
     {"cpu": "2", "memory": str(64 * 2**20)}),
    # init containers run one at a time: the largest counts, not their sum
    ([Demand({"cpu": "100m"})], [Demand({"cpu": "1"}), Demand({"cpu": "1500m"})], None, None, {"cpu": "1.5"}),
    # a sidecar declared before the init container runs beside it, and beside the app afterwards
    ([Demand({"cpu": "100m"})], [Demand({"cpu": "500m"}, sidecar=True), Demand({"cpu": "2"})], None, None,
     {"cpu": "2.5"}),
    # a sidecar declared after the init container: the init runs alone; steady state is app + sidecar
    ([Demand({"cpu": "100m"})], [Demand({"cpu": "2"}), Demand({"cpu": "500m"}, sidecar=True)], None, None,
     {"cpu": "2"}),
    ([Demand({"cpu": "1"})], [Demand({"cpu": "500m"}), Demand({"cpu": "1"}, sidecar=True)], None, None,
     {"cpu": "2"}),
    # GPUs in an init container are held too (extended resources: the same max)
    ([Demand({"nvidia.com/gpu": 1})], [Demand({"nvidia.com/gpu": 2})], None, None, {"nvidia.com/gpu": "2"}),
    # pod-level requests are what the scheduler holds when they are larger; overhead comes on top
    ([Demand({"cpu": "100m"})], [], {"cpu": "2", "memory": "1Gi"}, None, {"cpu": "2", "memory": str(2**30)}),
    ([Demand({"cpu": "1"})], [], None, {"cpu": "250m"}, {"cpu": "1.25"}),
    # explicit zero requests with large limits: usage is paid for
    ([Demand({"cpu": "0", "memory": "0"}, usage={"cpu": "3", "memory": "2Gi"})], [], None, None,
     {"cpu": "3", "memory": str(2 * 2**30)}),
    # usage folds in per container: 0.5 used of 1 requested, 2 used of 0.1 requested
    ([Demand({"cpu": "1"}, usage={"cpu": "500m"}), Demand({"cpu": "100m"}, usage={"cpu": "2"})], [], None, None,
     {"cpu": "3"}),
    # nothing at all
    ([], [], None, None, {}),
])
def test_effective_requests(containers: list[model.ContainerDemand], init: list[model.ContainerDemand],
                            pod_requests: dict[str, str] | None, overhead: dict[str, str] | None,
                            expected: dict[str, str]) -> None:
    got = model.effective_requests(containers, init, pod_requests=pod_requests, overhead=overhead)
    assert {k: v for k, v in got.items() if v} == {k: Decimal(v) for k, v in expected.items()}


def test_a_pod_pays_its_effective_requests_at_the_node_rates() -> None:
    amounts = model.effective_requests([Demand({"cpu": "100m", "memory": "1Gi"})], [Demand({"cpu": "2"})])
    cost = model.pod_hourly_usd(amounts, M5)
    assert cost.hourly_usd == 2 * M5.cpu_core_hourly_usd + M5.memory_gib_hourly_usd


# --- the meter: a priced copy of the snapshot, billed by what holds a node --------------------------------------------

TAKEN = datetime(2026, 7, 20, 10, tzinfo=UTC)


def _snapshot(*resources: Resource, usage_source: str = "requests") -> Snapshot:
    labels = {"node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/region": "us-east-1",
              "karpenter.sh/capacity-type": "on-demand"}
    return Snapshot(
        session=SessionInfo(id="s", lab_id="x", learner_id="ada", provider="kubernetes",
                            started_at=TAKEN - timedelta(hours=1), taken_at=TAKEN),
        budget=BudgetInfo(budget_usd=5), cost=CostInfo(accrued_usd=0, burn_rate_usd_per_hour=0,
                                                       usage_source=usage_source),  # type: ignore[arg-type]
        nodes=[Node(name="n-0", instance_type="m5.xlarge", capacity_type="on-demand", zone="z", region="us-east-1",
                    labels=labels, capacity={"cpu": 4, "memory": 16 * GIB})],
        resources=list(resources))


def _pod(name: str, phase: str | None, node: str | None = "n-0", cpu: float = 1.0, **fields: object) -> Resource:
    return Resource(kind="Pod", name=name, phase=phase, node=node, running_hours=2.0,
                    containers=[Container(name="c", requests={"cpu": cpu, "memory": float(GIB)})],
                    **fields)  # type: ignore[arg-type]


def test_the_meter_bills_what_holds_a_node_and_returns_a_new_snapshot() -> None:
    snap = _snapshot(_pod("running", "Running"), _pod("pending-on-node", "Pending"), _pod("unknown", "Unknown"),
                     _pod("unscheduled", "Pending", node=None), _pod("done", "Succeeded"), _pod("crashed", "Failed"),
                     Resource(kind="PersistentVolumeClaim", name="data", storage=1500, running_hours=2.0))
    before = snap.model_copy(deep=True)
    priced = meter.price(snap, SHEET)
    assert snap == before  # the input is not changed
    one = float(M5.cpu_core_hourly_usd + M5.memory_gib_hourly_usd)
    hourly = {r.name: r.hourly_usd for r in priced.snapshot.resources}
    assert hourly["running"] == hourly["pending-on-node"] == hourly["unknown"] == pytest.approx(one)
    assert hourly["unscheduled"] is hourly["done"] is hourly["crashed"] is None
    assert priced.running_pods == 3
    assert priced.snapshot.cost.burn_rate_usd_per_hour == pytest.approx(3 * one + hourly["data"])
    assert priced.snapshot.nodes[0].hourly_usd == 0.192 and priced.snapshot.nodes[0].price_source == "sheet"
    assert priced.warnings == (meter.NO_USAGE,)
    running = priced.snapshot.resource("Pod", "running")
    assert running is not None and running.cost_usd == pytest.approx(2 * one)


def test_no_label_or_annotation_changes_a_figure() -> None:
    plain = _snapshot(_pod("web", "Running"))
    loud = {"kwok.x-k8s.io/usage-cpu": "64", "kwok.x-k8s.io/usage-memory": "256Gi",
            "labctl.dev/expected-cpu-millicores": "64000", "labctl.dev/expected-gpu-engine-active": "1"}
    dressed = _snapshot(_pod("web", "Running", labels={"cost": "0", "team": "x"}, annotations=loud))
    a, b = meter.price(plain, SHEET), meter.price(dressed, SHEET)
    assert (a.burn_rate_usd_per_hour, a.idle_usd_per_hour, a.running_pods) == \
        (b.burn_rate_usd_per_hour, b.idle_usd_per_hour, b.running_pods)
    assert a.snapshot.resources[0].hourly_usd == b.snapshot.resources[0].hourly_usd


def test_measured_use_above_the_request_is_billed_and_idle_use_is_idle_cost() -> None:
    busy = _pod("busy", "Running", cpu=0.0)
    busy = busy.model_copy(update={"containers": [busy.containers[0].model_copy(
        update={"usage": ContainerUsage(cpu=3.0, memory=GIB)})]})
    idle = _pod("idle", "Running")
    idle = idle.model_copy(update={"containers": [idle.containers[0].model_copy(
        update={"usage": ContainerUsage(cpu=0.001)})]})
    priced = meter.price(_snapshot(busy, idle, usage_source="metrics"), SHEET)
    hourly = {r.name: r.hourly_usd for r in priced.snapshot.resources}
    assert hourly["busy"] == pytest.approx(float(3 * M5.cpu_core_hourly_usd + M5.memory_gib_hourly_usd))
    assert priced.idle_usd_per_hour == pytest.approx(Decimal(str(hourly["idle"])))
    assert priced.usage_known and priced.warnings == ()


def test_a_gpu_the_model_cannot_price_is_a_warning_not_a_failure() -> None:
    # A MIG slice on a node without the nvidia.com/gpu.memory label: its share is unknown.
    odd = Resource(kind="Pod", name="mig", phase="Running", node="n-0", running_hours=1.0, containers=[
        Container(name="c", requests={"cpu": 1.0, "nvidia.com/mig-1g.10gb": 1.0})])
    priced = meter.price(_snapshot(odd), SHEET)
    assert priced.snapshot.resources[0].hourly_usd == pytest.approx(float(M5.cpu_core_hourly_usd))
    assert any("Pod/mig: its GPUs could not be priced" in w for w in priced.warnings)


def test_a_node_shared_by_many_snapshots_is_priced_alike_in_each_with_its_warnings() -> None:
    # The sweep's snapshots carry the same node objects; each node is priced once per sheet, and what its pricing
    # said (an unlisted type's fallback, a node that cannot be priced) is said in every snapshot that carries it.
    unlisted = Node(name="n-odd", instance_type="z9.mega", capacity_type="on-demand", zone="z", region="us-east-1",
                    labels={"node.kubernetes.io/instance-type": "z9.mega", "topology.kubernetes.io/region": "us-east-1",
                            "karpenter.sh/capacity-type": "on-demand"}, capacity={"cpu": 4, "memory": 16 * GIB})
    first, second = _snapshot(_pod("a", "Running")), _snapshot(_pod("b", "Running"))
    shared = [*first.nodes, unlisted]
    a = meter.price(first.model_copy(update={"nodes": shared}), SHEET)
    b = meter.price(second.model_copy(update={"nodes": shared}), SHEET)
    assert a.warnings == b.warnings and any("z9.mega" in w for w in a.warnings)
    assert [n.model_dump() for n in a.snapshot.nodes] == [n.model_dump() for n in b.snapshot.nodes]
    assert a.snapshot.nodes[0].hourly_usd is not None and a.burn_rate_usd_per_hour == b.burn_rate_usd_per_hour > 0
    other = SHEET.model_copy(deep=True)  # another sheet (a file edited while running) is priced anew
    assert meter.price(first.model_copy(update={"nodes": shared}), other).burn_rate_usd_per_hour == \
        a.burn_rate_usd_per_hour
