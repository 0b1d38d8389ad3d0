"""The learner tries to inflate the starter it is compared with, so that any change looks like a saving.

``burn-rate`` passes when the burn rate at submission is at most a share of the starter's, and the receipt and the
unit-cost feedback set the learner's figures beside the starter's. Those were taken at the session's first metering,
up to a sweep interval after the learner got its kubeconfig: a learner who scaled the starter up in those seconds
(here: the thumbnailer from 2 to 8 replicas, and back down to 2 before submitting) doubled the starter's burn rate and
passed ``burn-rate`` with the starter unchanged. Played with the learner's kubeconfig and the real kubectl: the
baseline is labctl's own figure, taken while provisioning, and neither it nor the grade moves.

The lab's starter here is its thumbnailer alone: on the local control plane kwok's stock stages end the backfill
Job's pods at once (its 10-minute ``pod-complete`` delay is not honoured), so the starter's Job runs for seconds and
how many of its pods a baseline finds depends on the moment (0 to 4; one in a full-suite run), which would decide
this test's ``burn-rate`` by luck. A standing Deployment has one figure at any moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from tests.adversarial.test_grade_forgery import _learner, _submit
from tests.support.lab_copies import without_starters
from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import World, _pods_running, _stop_all, _world

pytestmark = pytest.mark.cluster

LAB = "move-batch-to-spot"
BURN_RATE = ("cheaper-per-hour", "burn-rate")


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    """The adversarial world, with the lab's starter cut to its thumbnailer (the module docstring says why)."""
    labs = without_starters(tmp_path, {LAB: "labs/move-batch-to-spot/embeddings-backfill.yaml.j2"})
    w = _world(tmp_path, local_cluster, labs)
    with w.client:
        yield w
        _stop_all(w)


def _starter_of(world: World, sid: str) -> tuple[float, Any]:
    row = world.app.state.parts.runtime.sessions.row_of(sid)
    return float(row.starter_burn_rate_usd_per_hour), row.starter_service


def test_scaling_the_starter_up_before_the_first_sweep_does_not_move_its_baseline(
        world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path) -> None:
    session = world.start(LAB, "baseline-forger")
    sid, ns = session["id"], session["namespace"]
    sweeper = world.app.state.parts.runtime.sweeper
    # Taken while provisioning, before any sweep: the starter as labctl made it (the same figure labctl takes of the
    # sandbox now, before the learner has done anything; where its pods landed is the cluster's choice).
    recorded, service = _starter_of(world, sid)
    assert recorded > 0 and service

    kubeconfig = _learner(world, sid, tmp_path)
    scaled = kubectl("scale", "deployment/thumbnailer", "--replicas=8", kubeconfig=kubeconfig)
    assert scaled.returncode == 0, scaled.stderr
    eventually(lambda: _pods_running(kube, ns, "app=thumbnailer", 8), timeout=90)
    assert world.sweep().errors == []  # the first metering sees the inflated sandbox...
    inflated = world.session(sid)["cost"]["burn_rate_usd_per_hour"]
    assert inflated > recorded * 1.2, (inflated, recorded)
    # ...as a baseline taken now would (the first sweep's, once): the recorded one does not move.
    assert float(sweeper.baseline(sid, wait_s=0).burn_rate_usd_per_hour) > recorded * 1.2
    assert _starter_of(world, sid) == (pytest.approx(recorded, rel=1e-9), service)

    back = kubectl("scale", "deployment/thumbnailer", "--replicas=2", kubeconfig=kubeconfig)
    assert back.returncode == 0, back.stderr
    eventually(lambda: _pods_running(kube, ns, "app=thumbnailer", 2), timeout=90)
    judged = _submit(world, sid)[BURN_RATE]
    # The starter back as it was is judged against the starter labctl recorded: no saving.
    why = f"{judged['feedback']} {judged['evidence']} pods: {_pods(kube, ns)}"  # short: the whole dict is cut
    assert not judged["passed"] and judged["score"] < 0.5, why
    (evidence,) = judged["evidence"]
    assert evidence["starter_usd_per_hour"] == pytest.approx(recorded, rel=1e-9)
    assert _starter_of(world, sid) == (pytest.approx(recorded, rel=1e-9), service)


def _pods(kube: client.ApiClient, ns: str) -> list[tuple[str, str, str | None]]:
    """The sandbox's pods as (name, phase, node): what a failed assertion shows beside the figures."""
    return [(p.metadata.name, p.status.phase, p.spec.node_name)
            for p in client.CoreV1Api(kube).list_namespaced_pod(ns).items]
