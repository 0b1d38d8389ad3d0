"""A learner over budget stays stopped: no reset, resume or token of theirs restarts the workloads, the policy
follows the level of spend (not whether a threshold was once recorded), and a meter that cannot read the sandbox
stops it too (fail closed)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.store.models import SandboxSession
from tests.adversarial.budget_world import (
    ADMIN,
    QUIET_TIME,
    MeterOutage,
    World,
    compute_burn,
    labs_with,
    make_world,
)

BUDGET = {"usd": 1, "thresholds": [{"percent": 50, "action": "notify"}, {"percent": 100, "action": "suspend"}]}


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    labs = labs_with(tmp_path, "idle-hunter", {"budget": BUDGET, "time": QUIET_TIME})
    w = make_world(tmp_path, local_cluster, labs)
    with w.client:
        yield w
        w.stop_all()


def _spend_past_budget(w: World, sid: str) -> None:
    w.sweep()
    rate = w.session(sid)["cost"]["burn_rate_usd_per_hour"]
    assert rate > 0
    w.clock.advance(hours=1.2 / rate)
    w.sweep()


def _replicas(kube: client.ApiClient, ns: str) -> dict[str, int]:
    return {d.metadata.name: d.spec.replicas for d in client.AppsV1Api(kube).list_namespaced_deployment(ns).items}


def test_no_learner_platform_or_exam_token_lifts_a_budget_suspension(world: World, kube: client.ApiClient) -> None:
    session = world.start("idle-hunter", "escaper")
    sid, ns = session["id"], session["namespace"]
    _spend_past_budget(world, sid)
    assert (world.session(sid)["state"], world.session(sid)["suspend_reason"]) == ("suspended", "budget")
    learner = world.token("escaper", "learner", "escaper")
    platform = world.token("course-site", "platform")
    exam = world.token("exam", "exam")

    for who in (learner, platform):
        reset = world.client.post(f"/v1/sessions/{sid}/reset", headers=who)
        assert reset.status_code == 409, reset.text
        assert reset.headers["content-type"] == "application/problem+json"
        assert "budget" in reset.json()["detail"] and "reset" in reset.json()["detail"]
        resume = world.client.post(f"/v1/sessions/{sid}/resume", headers=who)
        assert resume.status_code == 409, resume.text
    assert world.client.post(f"/v1/sessions/{sid}/resume", headers=exam).status_code == 403
    assert world.client.post(f"/v1/sessions/{sid}/reset", headers=exam).status_code == 403

    world.clock.advance(minutes=10)
    world.sweep()
    s = world.session(sid)
    assert (s["state"], s["suspend_reason"]) == ("suspended", "budget")
    assert set(_replicas(kube, ns).values()) == {0}
    assert compute_burn(world, sid) == 0  # the orphaned volume and load balancer may still cost


def test_over_the_suspend_level_means_suspended_whatever_was_recorded(world: World, kube: client.ApiClient) -> None:
    # The state the old reset left behind: a ready sandbox at full scale, over budget, its 100 % already "acted on".
    session = world.start("idle-hunter", "lucky")
    sid, ns = session["id"], session["namespace"]
    world.sweep()
    with world.rt.store.session() as db:
        row = db.get(SandboxSession, sid)
        assert row is not None
        row.accrued_usd = Decimal("1.3")
        row.thresholds_crossed = [50, 100]
    world.clock.advance(minutes=1)
    report = world.sweep()
    assert (sid, "suspend") in [(s, k) for s, k, _ in report.actions]
    s = world.session(sid)
    assert (s["state"], s["suspend_reason"]) == ("suspended", "budget")
    assert set(_replicas(kube, ns).values()) == {0}
    kinds = [e["kind"] for e in world.events(sid)]
    assert "budget_threshold_crossed" not in kinds  # notifications stay once per crossing


def test_an_instructor_suspension_is_not_lifted_by_the_learner(world: World) -> None:
    session = world.start("idle-hunter", "paused")
    sid = session["id"]
    learner = world.token("paused", "learner", "paused")
    suspended = world.client.post(f"/v1/sessions/{sid}/suspend", headers=ADMIN)
    assert suspended.status_code == 200, suspended.text
    resume = world.client.post(f"/v1/sessions/{sid}/resume", headers=learner)
    assert resume.status_code == 409
    assert "instructor" in resume.json()["detail"]
    assert world.client.post(f"/v1/sessions/{sid}/reset", headers=learner).status_code == 409
    assert world.session(sid)["state"] == "suspended"
    assert world.client.post(f"/v1/sessions/{sid}/resume", headers=ADMIN).status_code == 200


def test_a_meter_that_keeps_failing_suspends_the_session_until_it_reads_again(world: World,
                                                                             kube: client.ApiClient) -> None:
    session = world.start("idle-hunter", "unmetered")
    sid, ns = session["id"], session["namespace"]
    before = _replicas(kube, ns)
    outage = MeterOutage(world.rt.sessions.provider)
    world.rt.sessions.provider = outage
    world.sweep()

    outage.armed = True  # two failures, then a success: the count starts again
    for _ in range(2):
        world.clock.advance(minutes=1)
        world.sweep()
    outage.armed = False
    world.clock.advance(minutes=1)
    world.sweep()
    outage.armed = True
    for _ in range(2):
        world.clock.advance(minutes=1)
        world.sweep()
    assert world.session(sid)["state"] == "ready"

    world.clock.advance(minutes=1)
    world.sweep()  # the third failure in a row
    s = world.session(sid)
    assert (s["state"], s["suspend_reason"]) == ("suspended", "meter")
    assert "3 times in a row" in s["reason"]
    assert set(_replicas(kube, ns).values()) == {0}
    assert [e["kind"] for e in world.events(sid)].count("meter_failed") == 5
    learner = world.token("unmetered", "learner", "unmetered")
    assert world.client.post(f"/v1/sessions/{sid}/resume", headers=learner).status_code == 409

    outage.armed = False
    world.clock.advance(minutes=1)
    world.sweep()  # the reading works again: the clock lifts its own suspension
    assert world.session(sid)["state"] == "ready"
    assert _replicas(kube, ns) == before
