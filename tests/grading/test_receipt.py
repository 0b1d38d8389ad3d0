"""The receipt on a small snapshot whose figures are computed by hand below."""

from __future__ import annotations

from typing import Any

import pytest

from labctl.grading.receipt import receipt
from labctl.grading.snapshot import ServiceFigures, Snapshot

NODES = [
    {"name": "od-0", "instance_type": "m5.xlarge", "capacity_type": "on-demand", "zone": "z", "region": "r",
     "hourly_usd": 0.192, "on_demand_hourly_usd": 0.192, "price_source": "sheet"},
    {"name": "spot-0", "instance_type": "m5.xlarge", "capacity_type": "spot", "zone": "z", "region": "r",
     "hourly_usd": 0.0672, "on_demand_hourly_usd": 0.192, "price_source": "sheet"},
]


def pod(name: str, node: str, hours: float, hourly: float, on_demand: float, cpu: float | None,
        phase: str = "Running") -> dict[str, Any]:
    usage = {"usage": {"cpu": cpu}} if cpu is not None else {}
    return {"kind": "Pod", "name": name, "labels": {"app": name.rsplit("-", 1)[0]}, "node": node, "phase": phase,
            "running_hours": hours,
            "hourly_usd": hourly, "on_demand_hourly_usd": on_demand, "cost_usd": hourly * hours,
            "containers": [{"name": "c", "requests": {"cpu": 0.25}, **usage}]}


SNAPSHOT = {
    "schema": "labctl.snapshot/v1",
    "session": {"id": "s", "lab_id": "idle-hunter", "learner_id": "ada", "provider": "kubernetes",
                "started_at": "2026-07-20T08:00:00Z", "taken_at": "2026-07-20T10:00:00Z"},
    "budget": {"budget_usd": 3},
    "cost": {"accrued_usd": 0.5, "burn_rate_usd_per_hour": 0.1, "usage_source": "metrics"},
    "nodes": NODES,
    "resources": [
        # busy, on spot: 2 h x 0.0168 = 0.0336; saved (0.048 - 0.0168) x 2 = 0.0624
        pod("worker-0", "spot-0", 2.0, 0.0168, 0.048, cpu=0.45),
        # idle (1m CPU), on-demand: 2 h x 0.012 = 0.024, all idle waste
        pod("dashboard-0", "od-0", 2.0, 0.012, 0.012, cpu=0.001),
        # use not measured: never idle; 1.5 h x 0.012 = 0.018
        pod("unmeasured-0", "od-0", 1.5, 0.012, 0.012, cpu=None),
        # finished on spot, idle use no longer matters: 0.5 h x 0.0168 = 0.0084; saved 0.0156
        pod("job-0", "spot-0", 0.5, 0.0168, 0.048, cpu=0.0, phase="Succeeded"),
        # unmounted claim, ledger cost given: 0.02 over 2 h -> 0.01 / h, idle waste
        {"kind": "PersistentVolumeClaim", "name": "scratch", "storage": 5 * 2**30, "mounted_by": [],
         "running_hours": 2.0, "cost_usd": 0.02, "hourly_usd": 0.01},
        # LoadBalancer with no endpoints, no hours given: hours = 0.045 / 0.0225 = 2
        {"kind": "Service", "name": "old-demo", "service_type": "LoadBalancer", "endpoints": 0,
         "cost_usd": 0.045, "hourly_usd": 0.0225},
        # LoadBalancer, endpoints unknown, selector matches the running worker: not idle; 2 x 0.0225
        {"kind": "Service", "name": "front", "service_type": "LoadBalancer", "selector": {"app": "worker"},
         "running_hours": 2.0, "hourly_usd": 0.0225},
        # costs nothing: no item
        {"kind": "Deployment", "name": "worker", "replicas": 1},
    ],
}


def test_receipt_items_and_totals() -> None:
    result = receipt(Snapshot.model_validate(SNAPSHOT))
    rows = {i.resource: (i.hours, i.hourly_usd, i.usd, i.capacity_type, i.idle is not None) for i in result.items}
    assert rows == {
        "Pod/worker-0": (2.0, 0.0168, pytest.approx(0.0336), "spot", False),
        "Pod/dashboard-0": (2.0, 0.012, pytest.approx(0.024), "on-demand", True),
        "Pod/unmeasured-0": (1.5, 0.012, pytest.approx(0.018), "on-demand", False),
        "Pod/job-0": (0.5, 0.0168, pytest.approx(0.0084), "spot", False),
        "PersistentVolumeClaim/scratch": (2.0, 0.01, 0.02, None, True),
        "Service/old-demo": (pytest.approx(2.0), 0.0225, 0.045, None, True),
        "Service/front": (2.0, 0.0225, pytest.approx(0.045), None, False),
    }
    assert result.total_usd == pytest.approx(0.0336 + 0.024 + 0.018 + 0.0084 + 0.02 + 0.045 + 0.045)
    assert result.spot_savings_usd == pytest.approx(0.0624 + 0.0156)
    assert result.idle_waste_usd == pytest.approx(0.024 + 0.02 + 0.045)
    assert result.accrued_usd == 0.5
    idle = {i.resource: i.idle for i in result.items if i.idle}
    assert idle == {"Pod/dashboard-0": "used 1m CPU (idle under 5m)",
                    "PersistentVolumeClaim/scratch": "mounted by no pod",
                    "Service/old-demo": "a LoadBalancer with no ready endpoints"}


def test_receipt_is_exact_in_data_and_rounded_for_people() -> None:
    result = receipt(Snapshot.model_validate(SNAPSHOT))
    assert result.spot_savings_usd != round(result.spot_savings_usd, 2)
    text = result.render()
    assert "Pod/worker-0" in text and "$0.03" in text
    assert "total" in text and f"${result.total_usd:.2f}" in text
    assert "spot saved $0.08; idle waste $0.09" in text
    assert "idle: mounted by no pod" in text


def test_an_empty_sandbox_has_an_empty_receipt() -> None:
    result = receipt(Snapshot.model_validate({**SNAPSHOT, "resources": []}))
    assert (result.items, result.total_usd, result.spot_savings_usd, result.idle_waste_usd) == ([], 0, 0, 0)


SERVICE = [{"workload": "Deployment/web", "offered": 10000, "served": 9900, "dropped": 100, "served_share": 0.99,
            "cost_usd": 0.0396, "cost_per_1000_requests": 0.004}]
STARTER = [ServiceFigures(workload="Deployment/web", offered=10000, served=10000, dropped=0, served_share=1.0,
                          cost_usd=0.12, cost_per_1000_requests=0.012)]


def test_the_service_lines_set_the_learners_window_beside_the_starters() -> None:
    snap = Snapshot.model_validate({**SNAPSHOT, "service": SERVICE})
    result = receipt(snap, starter=STARTER)
    (line,) = result.service
    assert line.workload == "Deployment/web"
    assert snap.service is not None and line.learner == snap.service[0]
    assert line.starter == STARTER[0]
    text = result.render()
    you = next(row for row in text.splitlines() if " you " in row)
    start = next(row for row in text.splitlines() if " starter " in row)
    assert "Deployment/web" in you and "9,900" in you and "99.00%" in you and "$0.0040" in you
    assert "10,000" in start and "100.00%" in start and "$0.0120" in start
    # No starter figures recorded: the learner's line stands alone, marked unknown beside it.
    alone = receipt(snap)
    assert alone.service[0].starter is None and "unknown" in alone.render()
    # No demand in the lab: no service lines at all.
    assert receipt(Snapshot.model_validate(SNAPSHOT), starter=STARTER).service == []
