"""The apiserver stopped for 30 s while sweeps run (the real kube-apiserver of a private cluster, SIGSTOP): every API
answer in the outage is a success or a 503 problem with ``Retry-After``; the sweeps fail fast during it and resume
after it; and the ledger neither loses nor double-counts the outage: the money accrued from the last metering before
it to the first after it is the sandbox's burn rate x that time.

Why the figure is exact up to rounding: the meter accrues ``burn rate x time since last_metered_at`` in the
transaction that moves ``last_metered_at``, so a failed metering accrues nothing and moves nothing, and the first
metering after the outage accrues the whole window at the rate measured before it (the sandbox did not change: the
learner could not reach it either). The tolerance is the ledger's rounding, 1e-6 USD per metering (``Numeric(14,
6)``), over the two meterings that bound the window.

A private cluster, removed afterwards with its sandboxes: the controller-manager and the scheduler lose their leader
leases in a 30 s outage and exit (then namespaces are never finalized), which would break the shared test cluster for
the tests after this one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import Settings
from labctl.store.models import SandboxSession
from tests.adversarial.budget_world import QUIET_TIME, World, labs_with, make_world
from tests.conftest import TEST_CLUSTER
from tests.support.outage import apiserver_stopped
from tests.support.wait import eventually

pytestmark = [pytest.mark.resilience, pytest.mark.cluster]

LAB = "tag-for-showback"
OUTAGE_S = 30.0
FAKE_STEP_S = 60  # the fake clock moves a minute per sweep, so the window's money is large against the rounding
CONNECT_S, READ_S, COOLDOWN_S = 1.0, 2.0, 3.0
ROUNDING = Decimal("0.000001")  # the ledger's precision, per metering


@pytest.fixture(scope="module")
def private_cluster(settings: Settings) -> Iterator[LocalCluster]:
    cluster = LocalCluster(workdir=settings.local_cluster_workdir, fleet_file=settings.fleet_file,
                           name=f"{TEST_CLUSTER}-outage")
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def world(tmp_path: Path, private_cluster: LocalCluster) -> Iterator[World]:
    labs = labs_with(tmp_path, LAB, {"time": {**QUIET_TIME, "max_extension": "1d"}})  # extend succeeds
    w = make_world(tmp_path, private_cluster, labs, kube_connect_timeout_s=CONNECT_S, kube_read_timeout_s=READ_S,
                   backend_cooldown_s=COOLDOWN_S, simulate_demand=False)
    with w.client:
        yield w


def _calls(sid: str) -> list[tuple[str, str, str, dict[str, int] | None]]:
    """What a learner does meanwhile: reads, the kubeconfig and metrics (the cluster), extend (the store alone),
    suspend (the cluster), and readiness."""
    base = f"/v1/sessions/{sid}"
    return [("get", "GET", base, None), ("kubeconfig", "GET", f"{base}/kubeconfig", None),
            ("metrics", "GET", f"{base}/metrics", None), ("extend", "POST", f"{base}/extend", {"seconds": 60}),
            ("suspend", "POST", f"{base}/suspend", None), ("readyz", "GET", "/readyz", None)]


def _ledger(world: World, sid: str) -> tuple[Decimal, Decimal, object]:
    with world.rt.store.session() as db:
        row = db.get(SandboxSession, sid)
        assert row is not None
        return Decimal(row.accrued_usd or 0), Decimal(row.burn_rate_usd_per_hour or 0), row.last_metered_at


def test_a_30s_apiserver_outage_gives_503s_or_successes_and_the_ledger_counts_it_once(
        world: World, private_cluster: LocalCluster) -> None:
    learners = [world.token(f"outage-{i}", "learner", f"outage-{i}") for i in range(3)]
    sids = [world.start(LAB, f"outage-{i}", headers=learners[i])["id"] for i in range(3)]
    assert world.sweep().errors == []
    world.clock.advance(seconds=FAKE_STEP_S)
    assert world.sweep().errors == []  # a metering with a measured burn rate: the window starts here
    before = {sid: _ledger(world, sid) for sid in sids}
    assert all(burn > 0 for _, burn, _ in before.values()), before

    answers: list[tuple[str, httpx.Response]] = []
    sweeps: list[tuple[float, int]] = []
    took: dict[str, float] = {}  # the slowest answer of each kind of call
    with apiserver_stopped(private_cluster):
        ends = time.monotonic() + OUTAGE_S
        while time.monotonic() < ends:
            world.clock.advance(seconds=FAKE_STEP_S)
            began = time.monotonic()
            report = world.sweep()
            sweeps.append((time.monotonic() - began, len(report.errors)))
            for i, sid in enumerate(sids):
                for what, method, path, body in _calls(sid):
                    began = time.monotonic()
                    answers.append((what, world.client.request(method, path, json=body, headers=learners[i])))
                    took[what] = max(took.get(what, 0.0), time.monotonic() - began)
            time.sleep(1)
    world.clock.advance(seconds=FAKE_STEP_S)

    wrong = [f"{what}: {r.status_code} {r.headers.get('retry-after')} {r.text[:200]}" for what, r in answers
             if not (r.status_code < 300 or (r.status_code == 503 and int(r.headers.get("retry-after", "0")) >= 1
                                            and r.headers["content-type"] == "application/problem+json"))]
    assert not wrong, "\n".join(wrong)
    refused = sum(1 for _, r in answers if r.status_code == 503)
    assert refused > 0 and {w for w, r in answers if r.status_code == 503} >= {"kubeconfig", "suspend", "readyz"}
    assert len(sweeps) >= 5 and all(errors > 0 for _, errors in sweeps), sweeps  # each sweep in it failed ...
    assert max(took for took, _ in sweeps) < CONNECT_S + READ_S + 3, sweeps  # ... after one request's deadline

    def resumed() -> bool:
        return world.sweep().errors == []
    eventually(resumed, timeout=60, interval=1)  # each try after the first moves no fake time: nothing to accrue twice

    for sid in sids:
        accrued0, burn, metered0 = before[sid]
        accrued1, _, metered1 = _ledger(world, sid)
        assert metered0 is not None and metered1 is not None
        hours = Decimal((metered1 - metered0).total_seconds()) / Decimal(3600)
        expected = burn * hours
        assert hours * 3600 >= OUTAGE_S, hours  # the window really spans the outage (fake time)
        assert abs((accrued1 - accrued0) - expected) <= 2 * ROUNDING, (sid, accrued1 - accrued0, expected)
    print(f"{len(answers)} answers in the outage, {refused} of them 503; {len(sweeps)} failed sweeps, the slowest "
          f"{max(t for t, _ in sweeps):.2f}s; slowest answers {took}")
