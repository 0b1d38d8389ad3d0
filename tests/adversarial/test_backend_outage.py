"""An apiserver that stops answering (the real kube-apiserver, stopped with SIGSTOP: connections are accepted, nothing
is answered) gives prompt 503 problem documents with ``Retry-After``, and a sweep over it finishes promptly instead of
hanging for the whole outage; once it answers again, so does labctl."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.localcluster.cluster import LocalCluster
from tests.adversarial.budget_world import World, quiet_world
from tests.support.outage import apiserver_stopped
from tests.support.wait import eventually

CONNECT_S, READ_S, COOLDOWN_S = 1.0, 2.0, 3.0


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    with quiet_world(tmp_path, local_cluster, kube_connect_timeout_s=CONNECT_S, kube_read_timeout_s=READ_S,
                     backend_cooldown_s=COOLDOWN_S) as w:
        yield w


def test_a_stopped_apiserver_gives_prompt_503s_with_retry_after_and_a_prompt_sweep(
        world: World, local_cluster: LocalCluster) -> None:
    learners = [world.token(f"outage-{i}", "learner", f"outage-{i}") for i in range(3)]
    sids = [world.start("tag-for-showback", f"outage-{i}", headers=learners[i])["id"] for i in range(3)]
    assert world.sweep().errors == []
    with apiserver_stopped(local_cluster):  # kept short: the controllers' leader leases outlive a few seconds
        began = time.monotonic()
        report = world.sweep()
        took_sweep = time.monotonic() - began
        began = time.monotonic()
        r = world.client.get(f"/v1/sessions/{sids[0]}/kubeconfig", headers=learners[0])
        took_call = time.monotonic() - began
    # Every session's reading failed, and the pass ended after about one request's deadline, not one per session.
    assert {sid for sid, _ in report.errors} - {"*"} == set(sids), report.errors
    assert took_sweep < CONNECT_S + READ_S + 3, took_sweep
    # A command meanwhile: a 503 problem at once, saying when to come back.
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"]
    assert "did not answer" in r.json()["detail"], r.text
    assert int(r.headers["retry-after"]) >= COOLDOWN_S
    assert took_call < 1, took_call

    def answers() -> bool:
        ok = world.client.get(f"/v1/sessions/{sids[2]}/kubeconfig", headers=learners[2])
        return ok.status_code == 200
    eventually(answers, timeout=30, interval=1)
    assert world.sweep().errors == []
