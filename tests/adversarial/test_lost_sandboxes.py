"""The sweep repairs what disagrees between the store and the cluster, each repair with an event: a live session
whose namespace vanished (a recreated cluster, a deletion behind labctl's back) ends instead of being metered at
$0/h, and a namespace left behind a terminated session is removed. Other sessions are not touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from tests.adversarial.budget_world import ADMIN, World, quiet_world
from tests.support.wait import eventually, namespace_gone


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    with quiet_world(tmp_path, local_cluster) as w:
        yield w


def test_a_vanished_namespace_ends_its_session_with_an_event(world: World, kube: client.ApiClient) -> None:
    lost = world.start("tag-for-showback", "vanished")
    kept = world.start("tag-for-showback", "bystander")
    world.sweep()
    core = client.CoreV1Api(kube)
    core.delete_namespace(lost["namespace"])  # what a recreated cluster looks like to this session
    eventually(lambda: namespace_gone(kube, lost["namespace"]), timeout=120, interval=0.5)
    world.clock.advance(seconds=60)
    report = world.sweep()
    assert (lost["id"], "terminate", "its sandbox no longer exists") in report.actions, report
    session = world.session(lost["id"])
    assert session["state"] == "terminated"
    reasons = [e["detail"].get("reason", "") for e in world.events(lost["id"]) if e["kind"] == "terminating"]
    assert reasons and "no longer exists" in reasons[-1], reasons
    assert world.session(kept["id"])["state"] == "ready"
    assert not namespace_gone(kube, kept["namespace"])
    # No more metering of the lost one; the learner may start again.
    accrued = session["cost"]["accrued_usd"]
    world.clock.advance(hours=1)
    world.sweep()
    assert world.session(lost["id"])["cost"]["accrued_usd"] == accrued
    again = world.client.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "vanished"},
                              headers=ADMIN)
    assert again.status_code == 201, again.text


def test_a_namespace_left_behind_a_terminated_session_is_removed_with_an_event(world: World,
                                                                               kube: client.ApiClient) -> None:
    done = world.start("tag-for-showback", "leftover")
    kept = world.start("tag-for-showback", "neighbour")
    assert world.client.delete(f"/v1/sessions/{done['id']}", headers=ADMIN).status_code == 202
    eventually(lambda: world.session(done["id"])["state"] == "terminated", timeout=120)
    sessions = world.rt.sessions
    # What a reset racing a stop once left: the sandbox made again behind the terminated session.
    sessions.provider.provision(sessions.spec_of(sessions.row_of(done["id"])))
    assert not namespace_gone(kube, done["namespace"])
    report = world.sweep()
    assert (done["id"], "cleanup", "sandbox left behind a terminated session") in report.actions, report
    assert namespace_gone(kube, done["namespace"])
    assert "leftover_removed" in [e["kind"] for e in world.events(done["id"])]
    assert world.session(done["id"])["state"] == "terminated"
    assert world.session(kept["id"])["state"] == "ready" and not namespace_gone(kube, kept["namespace"])
    assert world.sweep().actions == []  # repaired once
