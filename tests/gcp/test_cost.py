"""GCP sandboxes priced from the sheet: machine types by market (spot rows), disks by GB-month, an unknown type at a
stated fallback, never zero; then a snapshot the GCP provider took on the fake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labctl.cost import meter
from labctl.cost.prices import PriceSheet, load_sheet
from labctl.grading.snapshot import BudgetInfo, CostInfo, Resource, SessionInfo, Snapshot
from labctl.providers.gcp.sandbox import GcpSandboxes
from labctl.settings import REPO_ROOT
from tests.support import gcp

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
GIB = 2**30


@pytest.fixture(scope="module")
def sheet() -> PriceSheet:
    return load_sheet(REPO_ROOT / "labs" / "prices.yaml")


def _snap(*resources: Resource) -> Snapshot:
    return Snapshot(session=SessionInfo(id="s-1", lab_id="gcp-test", learner_id="l", provider="gcp", started_at=T0,
                                        taken_at=T0 + timedelta(hours=2)),
                    budget=BudgetInfo(budget_usd=10), cost=CostInfo(accrued_usd=0, burn_rate_usd_per_hour=0,
                                                                    usage_source="requests"),
                    resources=list(resources))


def _vm(name: str, machine_type: str, *, spot: bool = False, phase: str = "running",
        accelerators: dict[str, int] | None = None) -> Resource:
    return Resource(kind="Instance", name=name, instance_type=machine_type, phase=phase, region="us-central1",
                    zone="us-central1-a", capacity_type="spot" if spot else "on-demand", running_hours=2.0,
                    accelerators=accelerators or {})


@pytest.mark.parametrize(("machine_type", "on_demand", "spot"), [
    ("a2-highgpu-1g", 3.673, 1.28555), ("n2-standard-4", 0.194236, 0.0776944), ("e2-small", 0.016751, 0.0067004)])
def test_the_lab_s_machine_types_are_in_the_sheet_by_market(sheet: PriceSheet, machine_type: str, on_demand: float,
                                                           spot: float) -> None:
    priced = meter.price(_snap(_vm("od", machine_type), _vm("sp", machine_type, spot=True)), sheet)
    od, sp = priced.snapshot.resource("Instance", "od"), priced.snapshot.resource("Instance", "sp")
    assert od is not None and (od.hourly_usd, od.on_demand_hourly_usd) == (on_demand, on_demand)
    assert sp is not None and (sp.hourly_usd, sp.on_demand_hourly_usd) == (spot, on_demand)
    assert priced.warnings == ()


def test_disks_by_size_stopped_vms_free_unknown_types_at_the_dearest_row(sheet: PriceSheet) -> None:
    priced = meter.price(_snap(_vm("stopped", "a2-highgpu-1g", phase="stopped"), _vm("odd", "z9-mega-96"),
                               Resource(kind="Volume", name="disk", storage=200 * GIB, running_hours=2.0)), sheet)
    snap = priced.snapshot
    stopped, odd, disk = snap.resource("Instance", "stopped"), snap.resource("Instance", "odd"), \
        snap.resource("Volume", "disk")
    assert stopped is not None and stopped.hourly_usd == 0.0
    assert odd is not None and odd.hourly_usd == 3.673  # the dearest gcp row: an unlisted type is never cheaper
    assert [w for w in priced.warnings if "z9-mega-96" in w and "not in the price sheet" in w]
    assert disk is not None and disk.hourly_usd == pytest.approx(200 * 0.04 / 730)


def test_volumes_are_priced_by_type_and_an_unlisted_type_at_the_storage_rate(sheet: PriceSheet) -> None:
    def disk(name: str, volume_type: str | None) -> Resource:
        return Resource(kind="Volume", name=name, storage=100 * GIB, running_hours=2.0, region="us-central1",
                        volume_type=volume_type)

    priced = meter.price(_snap(disk("ssd", "pd-ssd"), disk("std", "pd-standard"), disk("odd", "hyperdisk-ml"),
                               disk("none", None)), sheet)
    rates = {r.name: r.hourly_usd for r in priced.snapshot.resources}
    assert rates["ssd"] == pytest.approx(100 * 0.17 / 730) and rates["std"] == pytest.approx(100 * 0.04 / 730)
    assert rates["odd"] == rates["none"] == pytest.approx(100 * float(sheet.storage_gb_month_usd) / 730)


def test_gpus_attached_to_a_machine_type_add_their_accelerator_price_by_market(sheet: PriceSheet) -> None:
    t4s = {"nvidia-tesla-t4": 2}
    priced = meter.price(_snap(_vm("od", "n1-standard-8", accelerators=t4s),
                               _vm("sp", "n1-standard-8", spot=True, accelerators=t4s),
                               _vm("odd", "n1-standard-8", accelerators={"nvidia-h200-141gb": 1})), sheet)
    od, sp, odd = (priced.snapshot.resource("Instance", n) for n in ("od", "sp", "odd"))
    assert od is not None and od.hourly_usd == pytest.approx(0.38 + 2 * 0.35)
    assert sp is not None and (sp.hourly_usd, sp.on_demand_hourly_usd) == (
        pytest.approx(0.152 + 2 * 0.1225), pytest.approx(0.38 + 2 * 0.35))
    assert odd is not None and odd.hourly_usd == pytest.approx(0.38 + 0.95)  # the fallback GPU-hour, never free
    assert [w for w in priced.warnings if "nvidia-h200-141gb" in w and "no accelerators row" in w]


def test_the_starter_burns_what_the_sheet_says(provider: GcpSandboxes, sheet: PriceSheet) -> None:
    spec = gcp.spec()
    provider.provision(spec)
    priced = meter.price(provider.snapshot(spec, now=datetime.now(UTC) + timedelta(hours=1)), sheet)
    # the A100 VM, its 10 GB boot disk (pd-standard) and the 200 GB scratch disk (pd-balanced), each by its type
    assert float(priced.burn_rate_usd_per_hour) == pytest.approx(3.673 + (10 * 0.04 + 200 * 0.10) / 730)
    vm = priced.snapshot.resource("Instance", gcp.starter_name("trainer-a100", spec.session_id))
    assert vm is not None and vm.cost_usd == pytest.approx(3.673, rel=0.01)


def test_a_learner_s_attached_gpus_are_read_from_compute_and_billed(provider: GcpSandboxes, sheet: PriceSheet) -> None:
    spec = gcp.spec(gcp.gcp_lab(cloud_starter=None, gcp={"project": gcp.PROJECT, "zones": gcp.ZONES,
                                                         "machine_types": ["n1-standard-8"]}))
    provider.provision(spec)
    who = gcp.learner(provider.credentials(spec))
    name = who.launch(f"t4-{spec.session_id[-10:]}", machine_type="n1-standard-8", accelerators={"nvidia-tesla-t4": 1})
    snap = provider.snapshot(spec, now=datetime.now(UTC))
    vm = snap.resource("Instance", name)
    assert vm is not None and vm.accelerators == {"nvidia-tesla-t4": 1}
    priced = meter.price(snap, sheet)
    billed = priced.snapshot.resource("Instance", name)
    assert billed is not None and billed.hourly_usd == pytest.approx(0.38 + 0.35)
