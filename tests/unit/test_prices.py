"""The price sheet: the shipped sheet covers the fleet, lookups hit the right row (spot or on-demand), unknown types
fall back to OpenCost's unit rates with a warning and never zero, capacity types read in every platform's spelling,
and broken sheets give errors naming the file, the line and the field; `labctl prices` shows and validates."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from labctl.cli import prices as prices_cli
from labctl.cost import prices
from labctl.cost.prices import PriceError, PriceSheet, PriceSheetError, capacity_type, load_sheet, parse_sheet
from labctl.localcluster import fleet
from labctl.settings import REPO_ROOT

SHEET_FILE = REPO_ROOT / "labs" / "prices.yaml"
FLEET_FILE = REPO_ROOT / "labs" / "fleet.yaml"


@pytest.fixture(scope="module")
def sheet() -> PriceSheet:
    return load_sheet(SHEET_FILE)


# --- the shipped sheet --------------------------------------------------------------------------------------------


def test_shipped_sheet_covers_every_fleet_instance_type_without_fallback(sheet: PriceSheet) -> None:
    nodes = fleet.node_manifests(fleet.load(FLEET_FILE))
    assert nodes
    for node in nodes:
        labels = node["metadata"]["labels"]
        price = sheet.node_price_from_labels(labels, cpu_cores=4, memory_gib=16)
        assert price.source == "sheet", price.warning
        assert price.warning is None
        assert price.hourly_usd > 0
        assert price.capacity_type == labels["karpenter.sh/capacity-type"]


@pytest.mark.parametrize("instance_type", [
    "m5.large", "m5.xlarge", "c5.xlarge", "t3.medium", "g4dn.xlarge", "g5.xlarge", "g6.xlarge", "p3.2xlarge",
    "p4d.24xlarge", "p4de.24xlarge", "p5.4xlarge", "p5.48xlarge",
])
def test_every_aws_type_of_the_domain_facts_is_listed(sheet: PriceSheet, instance_type: str) -> None:
    row = sheet.instance("aws", "us-east-1", instance_type)
    assert row is not None
    assert row.as_of.isoformat() == "2026-07-20"
    assert "unconfirmed" in row.source  # every spot price is a per-row discount, and says so


@pytest.mark.parametrize(("instance_type", "on_demand", "vcpu", "memory_gib", "gpus", "product"), [
    ("m5.large", "0.096", 2, 8, 0, None),
    ("m5.xlarge", "0.192", 4, 16, 0, None),
    ("c5.xlarge", "0.170", 4, 8, 0, None),
    ("t3.medium", "0.0416", 2, 4, 0, None),
    ("g4dn.xlarge", "0.526", 4, 16, 1, "Tesla-T4"),
    ("g5.xlarge", "1.006", 4, 16, 1, "NVIDIA-A10G"),
    ("g6.xlarge", "0.8048", 4, 16, 1, "NVIDIA-L4"),
    ("p3.2xlarge", "3.06", 8, 61, 1, "Tesla-V100-SXM2-16GB"),
    ("p4d.24xlarge", "21.957642", 96, 1152, 8, "NVIDIA-A100-SXM4-40GB"),
    ("p4de.24xlarge", "27.44705", 96, 1152, 8, "NVIDIA-A100-SXM4-80GB"),
    ("p5.4xlarge", "6.88", 16, 256, 1, "NVIDIA-H100-80GB-HBM3"),
    ("p5.48xlarge", "55.04", 192, 2048, 8, "NVIDIA-H100-80GB-HBM3"),
])
def test_aws_rows_carry_the_domain_figures(sheet: PriceSheet, instance_type: str, on_demand: str, vcpu: int,
                                           memory_gib: int, gpus: int, product: str | None) -> None:
    price = sheet.node_price("aws", "us-east-1", instance_type, "on-demand")
    assert price.hourly_usd == Decimal(on_demand)
    assert (price.vcpu, price.memory_gib, price.gpus, price.gpu_product) == (
        Decimal(vcpu), Decimal(memory_gib), gpus, product)


def test_m5_xlarge_is_twice_m5_large_and_says_why(sheet: PriceSheet) -> None:
    large = sheet.instance("aws", "us-east-1", "m5.large")
    xlarge = sheet.instance("aws", "us-east-1", "m5.xlarge")
    assert large is not None and xlarge is not None
    assert xlarge.on_demand_hourly_usd == 2 * large.on_demand_hourly_usd
    assert "linear" in xlarge.source


def test_gcp_rows_are_marked_unconfirmed(sheet: PriceSheet) -> None:
    gcp = [row for row in sheet.instances if row.provider == "gcp"]
    assert {row.instance_type for row in gcp} == {"e2-standard-4", "n1-standard-8", "a2-highgpu-1g", "n2-standard-4",
                                                  "e2-small"}
    assert all("unconfirmed" in row.source for row in gcp)
    assert all("unconfirmed" in row.source for row in sheet.accelerators)


def test_shipped_fallback_and_other_rates(sheet: PriceSheet) -> None:
    fb = sheet.fallback
    assert (fb.vcpu_hourly_usd, fb.memory_gib_hourly_usd, fb.gpu_hourly_usd, fb.storage_gb_month_usd) == (
        Decimal("0.031611"), Decimal("0.004237"), Decimal("0.95"), Decimal("0.04"))
    assert sheet.load_balancer_hourly_usd == Decimal("0.0225")
    assert "unconfirmed" in sheet.load_balancer.source
    assert sheet.storage_gb_month_usd > 0


# --- lookups ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "region", "instance_type", "capacity", "hourly"), [
    ("aws", "us-east-1", "p4de.24xlarge", "on-demand", "27.44705"),
    ("aws", "us-east-1", "p4de.24xlarge", "spot", "9.6064675"),
    ("aws", "us-east-1", "m5.xlarge", "on-demand", "0.192"),
    ("aws", "us-east-1", "m5.xlarge", "spot", "0.0768"),
    ("gcp", "us-central1", "e2-standard-4", "on-demand", "0.134"),
    ("gcp", "us-central1", "a2-highgpu-1g", "spot", "1.28555"),
])
def test_sheet_hit(sheet: PriceSheet, provider: str, region: str, instance_type: str,
                   capacity: prices.CapacityType, hourly: str) -> None:
    price = sheet.node_price(provider, region, instance_type, capacity)
    assert price.source == "sheet"
    assert price.warning is None
    assert price.hourly_usd == Decimal(hourly)
    assert price.on_demand_hourly_usd >= price.hourly_usd
    assert price.capacity_type == capacity


def test_spot_is_cheaper_than_on_demand_for_every_row(sheet: PriceSheet) -> None:
    for row in sheet.instances:
        spot = sheet.node_price(row.provider, row.region, row.instance_type, "spot")
        on_demand = sheet.node_price(row.provider, row.region, row.instance_type, "on-demand")
        assert 0 < spot.hourly_usd < on_demand.hourly_usd, row.instance_type
        assert spot.on_demand_hourly_usd == on_demand.hourly_usd


@pytest.mark.parametrize(("capacity", "hourly"), [("on-demand", "0.73"), ("spot", "0.2745")])
def test_gcp_attached_gpus_add_their_accelerator_price(sheet: PriceSheet, capacity: prices.CapacityType,
                                                       hourly: str) -> None:
    price = sheet.node_price("gcp", "us-central1", "n1-standard-8", capacity, gpus=1, gpu_product="Tesla-T4")
    assert price.hourly_usd == Decimal(hourly)  # 0.38 + 0.35 on demand; 0.152 + 0.1225 spot
    assert price.gpus == 1
    assert price.warning is None


def test_attached_gpu_without_a_price_falls_back_per_gpu_with_a_warning(sheet: PriceSheet) -> None:
    price = sheet.node_price("gcp", "us-central1", "n1-standard-8", "on-demand", gpus=2, gpu_product="nvidia-l4")
    assert price.hourly_usd == Decimal("0.38") + 2 * Decimal("0.95")
    assert price.warning is not None and "no accelerators row" in price.warning


@pytest.mark.parametrize(("provider", "region", "instance_type", "capacity", "cpu", "memory", "gpus", "hourly"), [
    # unknown type: fallback rates x capacity
    ("aws", "us-east-1", "m7i.xlarge", "on-demand", 4, 16, 0, "0.194236"),
    # spot of an unknown type: no discount is known, so the on-demand fallback
    ("aws", "us-east-1", "m7i.xlarge", "spot", 4, 16, 0, "0.194236"),
    # a GPU node of unknown type
    ("aws", "us-east-1", "g7.2xlarge", "on-demand", 8, 32, 1, "1.338472"),
    # a known type in a region the sheet does not list
    ("aws", "eu-west-1", "m5.xlarge", "on-demand", 4, 16, 0, "0.194236"),
    # no provider or region at all
    (None, None, "weird", "on-demand", "0.5", "0.5", 0, "0.017924"),
])
def test_unknown_type_prices_at_the_fallback_rates_never_zero(
        sheet: PriceSheet, provider: str | None, region: str | None, instance_type: str,
        capacity: prices.CapacityType, cpu: int | str, memory: int | str, gpus: int, hourly: str) -> None:
    price = sheet.node_price(provider, region, instance_type, capacity, cpu_cores=Decimal(cpu),
                             memory_gib=Decimal(memory), gpus=gpus)
    assert price.source == "fallback"
    assert price.hourly_usd == Decimal(hourly) > 0
    assert price.on_demand_hourly_usd == price.hourly_usd
    assert price.warning is not None
    assert instance_type in price.warning and "fallback" in price.warning
    assert (price.vcpu, price.memory_gib, price.gpus) == (Decimal(cpu), Decimal(memory), gpus)


def test_fallback_warning_names_the_regions_where_the_type_is_known(sheet: PriceSheet) -> None:
    price = sheet.node_price("aws", "eu-west-1", "m5.xlarge", "spot", cpu_cores=4, memory_gib=16)
    assert price.warning is not None
    assert "aws us-east-1" in price.warning and "without a spot discount" in price.warning


@pytest.mark.parametrize(("cpu", "memory", "gpus", "match"), [
    (None, 16, 0, "capacity is unknown"),
    (4, None, 0, "capacity is unknown"),
    (0, 0, 0, "no capacity"),
    (-1, 16, 0, "negative"),
])
def test_an_unknown_type_without_capacity_is_an_error_not_a_zero(sheet: PriceSheet, cpu: int | None,
                                                                  memory: int | None, gpus: int, match: str) -> None:
    with pytest.raises(PriceError, match=match):
        sheet.node_price("aws", "us-east-1", "x9.large", "on-demand", cpu_cores=cpu, memory_gib=memory, gpus=gpus)


def test_mig_overrides_are_found_by_gpu_product_loosely(sheet: PriceSheet) -> None:
    text = SHEET_FILE.read_text().replace("mig: {}", "mig:\n  NVIDIA-A100-SXM4-80GB: {1g.10gb: 0.15}")
    custom = parse_sheet(text, source="custom.yaml")
    assert custom.mig_overrides("nvidia-a100-sxm4-80gb") == {"1g.10gb": Decimal("0.15")}
    assert custom.mig_overrides("NVIDIA-A100-SXM4-40GB") == {}
    assert custom.node_price("aws", "us-east-1", "p4de.24xlarge", "spot").mig_overrides == {"1g.10gb": Decimal("0.15")}


# --- labels -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("labels", "expected"), [
    ({"eks.amazonaws.com/capacityType": "SPOT"}, "spot"),
    ({"eks.amazonaws.com/capacityType": "spot"}, "spot"),
    ({"eks.amazonaws.com/capacityType": "ON_DEMAND"}, "on-demand"),
    ({"karpenter.sh/capacity-type": "spot"}, "spot"),
    ({"karpenter.sh/capacity-type": "Spot"}, "spot"),
    ({"karpenter.sh/capacity-type": "on-demand"}, "on-demand"),
    ({"karpenter.sh/capacity-type": "reserved"}, "on-demand"),
    ({"cloud.google.com/gke-spot": "true"}, "spot"),
    ({"cloud.google.com/gke-spot": "True"}, "spot"),
    ({"cloud.google.com/gke-spot": "false"}, "on-demand"),
    ({"cloud.google.com/gke-provisioning": "spot"}, "spot"),
    ({"cloud.google.com/gke-provisioning": "SPOT"}, "spot"),
    ({"cloud.google.com/gke-provisioning": "standard"}, "on-demand"),
    ({"cloud.google.com/gke-preemptible": "true"}, "spot"),
    ({"cloud.google.com/gke-preemptible": "TRUE"}, "spot"),
    ({"kubernetes.azure.com/scalesetpriority": "spot"}, "spot"),
    ({"kubernetes.azure.com/scalesetpriority": "Spot"}, "spot"),
    ({"kubernetes.azure.com/scalesetpriority": "regular"}, "on-demand"),
    ({"node.kubernetes.io/lifecycle": "spot"}, "spot"),
    ({"node.kubernetes.io/lifecycle": "normal"}, "on-demand"),
    ({"eks.amazonaws.com/capacitytype": "SPOT"}, "spot"),  # key case normalised too
    ({"karpenter.sh/capacity-type": " spot "}, "spot"),
    ({}, "on-demand"),  # AKS on-demand: the label is absent
    ({"kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "m5.xlarge"}, "on-demand"),
    (fleet.capacity_labels("spot"), "spot"),
    (fleet.capacity_labels("on-demand"), "on-demand"),
])
def test_capacity_type_in_every_spelling(labels: dict[str, str], expected: str) -> None:
    assert capacity_type(labels) == expected


@pytest.mark.parametrize(("labels", "expected"), [
    ({"node.kubernetes.io/instance-type": "m5.xlarge"}, "aws"),
    ({"node.kubernetes.io/instance-type": "p4de.24xlarge", "cloud.google.com/gke-provisioning": "spot"}, "aws"),
    ({"beta.kubernetes.io/instance-type": "u-6tb1.metal"}, "aws"),
    ({"node.kubernetes.io/instance-type": "e2-standard-4"}, "gcp"),
    ({"node.kubernetes.io/instance-type": "a2-highgpu-1g"}, "gcp"),
    ({"node.kubernetes.io/instance-type": "Standard_D4s_v3"}, "azure"),
    ({"eks.amazonaws.com/nodegroup": "ng-1"}, "aws"),
    ({"karpenter.k8s.aws/instance-family": "m5"}, "aws"),
    ({"cloud.google.com/gke-nodepool": "pool-1"}, "gcp"),
    ({"kubernetes.azure.com/agentpool": "spot1"}, "azure"),
    ({"kubernetes.io/os": "linux"}, None),
    ({}, None),
])
def test_provider_of(labels: dict[str, str], expected: str | None) -> None:
    assert prices.provider_of(labels) == expected


@pytest.mark.parametrize(("labels", "expected"), [
    ({"topology.kubernetes.io/region": "us-east-1"}, "us-east-1"),
    ({"failure-domain.beta.kubernetes.io/region": "us-central1"}, "us-central1"),
    ({"topology.kubernetes.io/region": "eu-west-1", "failure-domain.beta.kubernetes.io/region": "old"}, "eu-west-1"),
    ({"topology.kubernetes.io/zone": "us-east-1a"}, None),
])
def test_region_of(labels: dict[str, str], expected: str | None) -> None:
    assert prices.region_of(labels) == expected


@pytest.mark.parametrize(("labels", "count", "memory", "product"), [
    ({"nvidia.com/gpu.count": "8", "nvidia.com/gpu.memory": "81920", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
     8, 81920, "NVIDIA-A100-SXM4-80GB"),
    ({"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, 0, None, "nvidia-tesla-t4"),
    ({"nvidia.com/gpu.count": "x", "nvidia.com/gpu.memory": "0"}, 0, None, None),
    ({}, 0, None, None),
])
def test_gpu_labels(labels: dict[str, str], count: int, memory: int | None, product: str | None) -> None:
    assert prices.gpu_count_of(labels) == count
    assert prices.gpu_memory_mib_of(labels) == memory
    assert prices.gpu_product_of(labels) == product


def test_node_price_from_labels_of_the_fleet_spot_mig_node(sheet: PriceSheet) -> None:
    nodes = fleet.node_manifests(fleet.load(FLEET_FILE))
    mig = next(n for n in nodes if n["metadata"]["name"].startswith("gpu-a100-mig-spot"))
    price = sheet.node_price_from_labels(mig["metadata"]["labels"], cpu_cores=96, memory_gib=1152)
    assert (price.provider, price.region, price.instance_type) == ("aws", "us-east-1", "p4de.24xlarge")
    assert price.capacity_type == "spot"
    assert price.hourly_usd == Decimal("9.6064675")
    assert price.gpus == 8


# --- validation errors --------------------------------------------------------------------------------------------

MINIMAL = """\
fallback:
  vcpu_hourly_usd: 0.031611
  memory_gib_hourly_usd: 0.004237
  gpu_hourly_usd: 0.95
  storage_gb_month_usd: 0.04
  as_of: 2026-07-20
  source: OpenCost
load_balancer: {hourly_usd: 0.0225, as_of: 2026-07-20, source: "AWS, unconfirmed"}
storage: {gb_month_usd: 0.08, as_of: 2026-07-20, source: "EBS, unconfirmed"}
instances:
  - provider: aws
    region: us-east-1
    instance_type: m5.large
    on_demand_hourly_usd: 0.096
    spot_hourly_usd: 0.0384
    vcpu: 2
    memory_gib: 8
    as_of: 2026-07-20
    source: Karpenter
  - provider: aws
    region: us-east-1
    instance_type: p4de.24xlarge
    on_demand_hourly_usd: 27.44705
    spot_hourly_usd: 9.6064675
    vcpu: 96
    memory_gib: 1152
    gpus: 8
    gpu_product: NVIDIA-A100-SXM4-80GB
    as_of: 2026-07-20
    source: Karpenter
"""


def test_minimal_sheet_is_valid_and_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(MINIMAL)
    sheet = load_sheet(path)
    assert sheet.mig == {} and sheet.accelerators == []
    assert sheet.instances[0].gpus == 0


@pytest.mark.parametrize(("old", "new", "line", "field", "message"), [
    ("    spot_hourly_usd: 0.0384\n", "    spot_hourly_usd: 0.2\n", 11, "instances.0",
     "(aws us-east-1 m5.large) spot_hourly_usd (0.2) is above on_demand_hourly_usd (0.096)"),
    ("    on_demand_hourly_usd: 27.44705\n", "    on_demand_hourly_usd: 0\n", 23, "instances.1.on_demand_hourly_usd",
     "(aws us-east-1 p4de.24xlarge) Input should be greater than 0"),
    ("    on_demand_hourly_usd: 27.44705\n", "    on_demand_hourly_usd: cheap\n", 23,
     "instances.1.on_demand_hourly_usd", "Input should be a valid decimal"),
    ("    spot_hourly_usd: 0.0384\n", "    spto_hourly_usd: 0.0384\n", 15, "instances.0.spto_hourly_usd",
     "unknown field 'spto_hourly_usd' (did you mean 'spot_hourly_usd'?)"),
    ("    spot_hourly_usd: 0.0384\n", "", 11, "instances.0.spot_hourly_usd", "required field is missing"),
    ("    vcpu: 2\n", "    vcpu: two\n", 16, "instances.0.vcpu", "valid integer"),
    ("  - provider: aws\n    region: us-east-1\n    instance_type: m5.large\n",
     "  - provider: ibm\n    region: us-east-1\n    instance_type: m5.large\n", 11, "instances.0.provider",
     "Input should be 'aws', 'gcp' or 'azure'"),
    ("    as_of: 2026-07-20\n    source: Karpenter\n  - provider", "    as_of: 2026-13-40\n    source: Karpenter\n"
     "  - provider", 18, "instances.0.as_of", "valid date"),
    ("    gpus: 8\n", "    gpus: 0\n", 20, "instances.1", "gpu_product 'NVIDIA-A100-SXM4-80GB' is set but gpus is 0"),
    ("    instance_type: p4de.24xlarge\n", "    instance_type: m5.large\n", 20, "instances.1",
     "row 1 repeats row 0 (aws us-east-1 m5.large)"),
    ("  gpu_hourly_usd: 0.95\n", "  gpu_hourly_usd: -0.95\n", 4, "fallback.gpu_hourly_usd", "greater than 0"),
    ("  source: OpenCost\n", "  source: ''\n", 7, "fallback.source", "at least 1 character"),
    ("  source: OpenCost\n", "  source: '   '\n", 7, "fallback.source", "should match pattern"),
    ("  source: OpenCost\n", "  source: OpenCost\n  sorce: x\n", 8, "fallback.sorce", "did you mean 'source'?"),
    ("load_balancer: {hourly_usd: 0.0225,", "load_balancer: {", 8, "load_balancer.hourly_usd",
     "required field is missing"),
    ("instances:\n", "mig:\n  NVIDIA-A100-SXM4-80GB: {1g.10gb: 1.5}\ninstances:\n", 11,
     "mig.NVIDIA-A100-SXM4-80GB.1g.10gb", "less than or equal to 1"),
    ("instances:\n", "mig:\n  NVIDIA-A100-SXM4-80GB: {9g.1gb: 0.1}\ninstances:\n", 11,
     "mig.NVIDIA-A100-SXM4-80GB.9g.1gb", "not a MIG profile"),
    ("instances:\n", "mig: {A100: {1g.10gb: 0.2}, a100: {1g.10gb: 0.2}}\ninstances:\n", 10, "mig",
     "'A100' and 'a100' are the same product"),
    ("instances:\n", "accelerators:\n  - {provider: gcp, region: us-central1, gpu_product: nvidia-tesla-t4, "
     "on_demand_hourly_usd: 0.35, spot_hourly_usd: 0.1, as_of: 2026-07-20, source: x}\n"
     "  - {provider: gcp, region: us-central1, gpu_product: Tesla-T4, "
     "on_demand_hourly_usd: 0.35, spot_hourly_usd: 0.1, as_of: 2026-07-20, source: x}\ninstances:\n", 12,
     "accelerators.1", "row 1 repeats row 0 (gcp us-central1 tesla-t4)"),
    ("instances:\n", "extra_section: 1\ninstances:\n", 10, "extra_section",
     "unknown field 'extra_section'; the fields here are fallback, load_balancer, storage, mig, accelerators"),
    ('storage: {gb_month_usd: 0.08, as_of: 2026-07-20, source: "EBS, unconfirmed"}\n', "", 1, "storage",
     "required field is missing"),
])
def test_validation_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, line: int, field: str,
                                                    message: str) -> None:
    assert old in MINIMAL
    path = tmp_path / "prices.yaml"
    path.write_text(MINIMAL.replace(old, new, 1))
    with pytest.raises(PriceSheetError) as caught:
        load_sheet(path)
    problems = caught.value.problems
    # one problem, or two when a misspelt key also leaves its field missing
    assert len(problems) == (2 if "spto_" in new else 1), problems
    (problem,) = [p for p in problems if p.field == field] or problems
    assert problem.file == str(path)
    assert (problem.line, problem.field) == (line, field), str(problem)
    assert message in problem.message
    assert str(problem).startswith(f"{path}:{line}: {field}: ")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("", None, "the file is empty"),
    ("fallback: [\n", 2, "not valid YAML"),
    ("- 1\n- 2\n", 1, "a price sheet is a YAML mapping"),
    (MINIMAL + "storage: {gb_month_usd: 1, as_of: 2026-07-20, source: x}\n", 31,
     "storage: appears twice (first on line 9)"),
])
def test_unreadable_sheets(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceSheetError) as caught:
        load_sheet(path)
    (problem,) = caught.value.problems
    assert problem.line == line
    assert message in str(problem)
    assert str(path) in str(problem)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PriceSheetError, match=r"nope\.yaml: cannot read"):
        load_sheet(tmp_path / "nope.yaml")


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(MINIMAL.replace("    vcpu: 2\n", "    vcpu: 0\n").replace("    gpus: 8\n", "    gpus: 99\n"))
    with pytest.raises(PriceSheetError) as caught:
        load_sheet(path)
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (16, "instances.0.vcpu"), (27, "instances.1.gpus")]


# --- the CLI ------------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_the_shipped_sheet() -> None:
    result = runner.invoke(prices_cli.app, ["validate"])
    assert result.exit_code == 0, result.stderr
    assert "valid (17 instance types, 1 attached-GPU price, 8 volume types)" in result.stdout


def test_cli_validate_a_broken_sheet_exits_1_with_problems_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(MINIMAL.replace("    vcpu: 2\n", "    vcpu: 0\n").replace("  source: OpenCost\n", ""))
    result = runner.invoke(prices_cli.app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{path}:1: fallback.source: required field is missing" in result.stderr
    assert f"{path}:15: instances.0.vcpu: (aws us-east-1 m5.large) Input should be greater than or equal to 1" \
        in result.stderr
    assert "2 problems in" in result.stderr


def test_cli_validate_uses_the_labs_dir_setting(tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text(MINIMAL)
    result = runner.invoke(prices_cli.app, ["validate"], env={"LABCTL_LABS_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.stderr
    assert "valid (2 instance types, 0 attached-GPU prices, 0 volume types)" in result.stdout


@pytest.mark.parametrize(("args", "types"), [
    (["show", "-o", "json"], 17),
    (["show", "--provider", "gcp", "-o", "json"], 5),
    (["show", "--provider", "AWS", "-o", "json"], 12),
])
def test_cli_show_json(args: list[str], types: int) -> None:
    result = runner.invoke(prices_cli.app, args)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["instances"]) == types
    assert data["fallback"]["gpu_hourly_usd"] == 0.95  # numbers, not text
    p4de = [row for row in data["instances"] if row["instance_type"] == "p4de.24xlarge"]
    assert [row["on_demand_hourly_usd"] for row in p4de] == ([27.44705] if types != 5 else [])


def test_cli_show_yaml_and_table() -> None:
    as_yaml = runner.invoke(prices_cli.app, ["show", "-o", "yaml", "--provider", "gcp"])
    assert as_yaml.exit_code == 0, as_yaml.stderr
    data = yaml.safe_load(as_yaml.stdout)
    assert data["accelerators"][0]["gpu_product"] == "nvidia-tesla-t4"
    table = runner.invoke(prices_cli.app, ["show"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.stderr
    assert "p4de.24xlarge" in table.stdout and "27.44705" in table.stdout and "65 %" in table.stdout


def test_cli_show_rejects_an_unknown_provider_and_a_broken_sheet(tmp_path: Path) -> None:
    unknown = runner.invoke(prices_cli.app, ["show", "--provider", "ibm"])
    assert unknown.exit_code == 1 and "unknown provider 'ibm'" in unknown.stderr
    (tmp_path / "prices.yaml").write_text("fallback: 1\n")
    broken = runner.invoke(prices_cli.app, ["show"], env={"LABCTL_LABS_DIR": str(tmp_path)})
    assert broken.exit_code == 1
    assert "fallback: Input should be a valid dictionary" in broken.stderr
