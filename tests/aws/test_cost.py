"""Cloud sandboxes priced from the same sheet: instance-hours by type and market, EBS by GB-month, addresses hourly.

Pure tests of the meter over fixed snapshots, then one over a snapshot the AWS provider took on moto.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from labctl.cost import meter
from labctl.cost.prices import PriceSheet, load_sheet
from labctl.grading.snapshot import BudgetInfo, CostInfo, Resource, SessionInfo, Snapshot
from labctl.providers.aws.sandbox import AwsSandboxes
from labctl.settings import REPO_ROOT
from tests.support import aws

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
GIB = 2**30


@pytest.fixture(scope="module")
def sheet() -> PriceSheet:
    return load_sheet(REPO_ROOT / "labs" / "prices.yaml")


def _snap(*resources: Resource) -> Snapshot:
    return Snapshot(session=SessionInfo(id="s-1", lab_id="aws-test", learner_id="l", provider="aws", started_at=T0,
                                        taken_at=T0 + timedelta(hours=2)),
                    budget=BudgetInfo(budget_usd=10), cost=CostInfo(accrued_usd=0, burn_rate_usd_per_hour=0,
                                                                    usage_source="requests"),
                    resources=list(resources))


def _instance(name: str, instance_type: str, *, spot: bool = False, phase: str = "running",
              region: str = "us-east-1") -> Resource:
    return Resource(kind="Instance", name=name, instance_type=instance_type, phase=phase, region=region,
                    capacity_type="spot" if spot else "on-demand", running_hours=2.0)


def test_instances_by_type_and_market_volumes_by_size_addresses_hourly(sheet: PriceSheet) -> None:
    priced = meter.price(_snap(_instance("i-od", "g4dn.xlarge"), _instance("i-spot", "g4dn.xlarge", spot=True),
                               _instance("i-stopped", "g5.xlarge", phase="stopped"),
                               Resource(kind="Volume", name="vol-1", storage=100 * GIB, running_hours=2.0),
                               Resource(kind="VolumeSnapshot", name="snap-1", storage=50 * GIB, running_hours=2.0),
                               Resource(kind="Address", name="eipalloc-1", running_hours=2.0)), sheet)
    snap = priced.snapshot
    od, spot, stopped = (snap.resource("Instance", n) for n in ("i-od", "i-spot", "i-stopped"))
    assert od is not None and (od.hourly_usd, od.on_demand_hourly_usd) == (0.526, 0.526)
    assert od.cost_usd == pytest.approx(1.052)
    assert spot is not None and (spot.hourly_usd, spot.on_demand_hourly_usd) == (0.1841, 0.526)
    assert stopped is not None and stopped.hourly_usd == 0.0  # a stopped instance pays for its volumes only
    volume = snap.resource("Volume", "vol-1")
    assert volume is not None and volume.hourly_usd == pytest.approx(100 * 0.04 / 730)
    backup = snap.resource("VolumeSnapshot", "snap-1")
    assert backup is not None and backup.hourly_usd == pytest.approx(50 * 0.04 / 730)
    address = snap.resource("Address", "eipalloc-1")
    assert address is not None and address.hourly_usd == 0.005
    expected = Decimal("0.526") + Decimal("0.1841") + Decimal(100) * Decimal("0.04") / 730 \
        + Decimal(50) * Decimal("0.04") / 730 + Decimal("0.005")
    assert priced.burn_rate_usd_per_hour == pytest.approx(expected)
    assert snap.cost.burn_rate_usd_per_hour == pytest.approx(float(expected))
    assert priced.warnings == ()


def test_an_unlisted_type_is_priced_at_a_stated_fallback_never_zero(sheet: PriceSheet) -> None:
    priced = meter.price(_snap(_instance("i-x", "x9.metal"), _instance("i-west", "m5.large", region="us-west-2",
                                                                       spot=True)), sheet)
    unknown, west = priced.snapshot.resource("Instance", "i-x"), priced.snapshot.resource("Instance", "i-west")
    assert unknown is not None and unknown.hourly_usd == 55.04  # the dearest aws row: never cheaper than listed
    assert west is not None and west.hourly_usd == 0.0384  # m5.large as in us-east-1, spot price kept
    assert any("x9.metal in aws us-east-1 is not in the price sheet; priced at the dearest on-demand aws row "
               "(p5.48xlarge in us-east-1, $55.04/h)" in w for w in priced.warnings)
    assert any("m5.large in aws us-west-2 is not in the price sheet; priced as in us-east-1" in w
               for w in priced.warnings)


def test_a_sheet_without_an_address_row_prices_addresses_at_a_stated_fallback(sheet: PriceSheet) -> None:
    bare = sheet.model_copy(update={"address": None})
    priced = meter.price(_snap(Resource(kind="Address", name="eipalloc-1")), bare)
    address = priced.snapshot.resource("Address", "eipalloc-1")
    assert address is not None and address.hourly_usd == float(sheet.fallback.vcpu_hourly_usd) > 0
    assert any("no `address` row" in w for w in priced.warnings)


def test_the_meter_prices_what_the_provider_inventoried(provider: AwsSandboxes, admin_ec2: Any,
                                                        sheet: PriceSheet) -> None:
    spec = aws.spec()
    provider.provision(spec)
    ec2 = aws.learner_ec2(provider.credentials(spec))
    gpu = aws.launch(ec2, spec.session_id, instance_type="g4dn.xlarge", spot=True)
    priced = meter.price(provider.snapshot(spec, now=datetime.now(UTC)), sheet)
    instance = priced.snapshot.resource("Instance", gpu)
    assert instance is not None and instance.hourly_usd == 0.1841
    root = priced.snapshot.resource("Volume", instance.volumes[0])
    assert root is not None and root.hourly_usd is not None and root.hourly_usd > 0
    assert priced.burn_rate_usd_per_hour == pytest.approx(Decimal("0.1841") + Decimal(str(root.hourly_usd)))
