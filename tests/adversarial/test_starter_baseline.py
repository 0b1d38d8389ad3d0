"""The learner tries to inflate the starter it is compared with, so that any change looks like a saving.

``burn-rate`` passes when the burn rate at submission is at most a share of the starter's, and the receipt and the
unit-cost feedback set the learner's figures beside the starter's. Those were taken at the session's first metering,
up to a sweep interval after the learner got its kubeconfig: a learner who scaled the starter up in those seconds
(here: the thumbnailer from 2 to 8 replicas, and back down to 2 before submitting) doubled the starter's burn rate and
passed ``burn-rate`` with the starter unchanged. Played with the learner's kubeconfig and the real kubectl: the
baseline is labctl's own figure, taken while provisioning, equal to an untouched session's, and the grade does not
move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.adversarial.test_grade_forgery import _learner, _submit
from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import World, _pods_running

pytestmark = pytest.mark.cluster

LAB = "move-batch-to-spot"
BURN_RATE = ("budget", "burn-rate")


def _starter_of(world: World, sid: str) -> tuple[float, Any]:
    row = world.app.state.parts.runtime.sessions.row_of(sid)
    return float(row.starter_burn_rate_usd_per_hour), row.starter_service


def test_scaling_the_starter_up_before_the_first_sweep_does_not_move_its_baseline(
        world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path) -> None:
    control = world.start(LAB, "baseline-control")
    forger = world.start(LAB, "baseline-forger")
    # Taken while provisioning: both sessions have it before any sweep ran.
    control_burn, control_service = _starter_of(world, control["id"])
    forged_burn, _ = _starter_of(world, forger["id"])
    assert control_burn > 0
    assert forged_burn == pytest.approx(control_burn, rel=1e-9)

    kubeconfig = _learner(world, forger["id"], tmp_path)
    scaled = kubectl("scale", "deployment/thumbnailer", "--replicas=8", kubeconfig=kubeconfig)
    assert scaled.returncode == 0, scaled.stderr
    ns = forger["namespace"]
    eventually(lambda: _pods_running(kube, ns, "app=thumbnailer", 8), timeout=90)
    assert world.sweep().errors == []  # the first metering sees the inflated sandbox...
    inflated = world.session(forger["id"])["cost"]["burn_rate_usd_per_hour"]
    assert inflated > control_burn * 1.2, (inflated, control_burn)
    assert _starter_of(world, forger["id"])[0] == pytest.approx(control_burn, rel=1e-9)  # ...the baseline does not

    back = kubectl("scale", "deployment/thumbnailer", "--replicas=2", kubeconfig=kubeconfig)
    assert back.returncode == 0, back.stderr
    eventually(lambda: _pods_running(kube, ns, "app=thumbnailer", 2), timeout=90)
    forged = _submit(world, forger["id"])[BURN_RATE]
    honest = _submit(world, control["id"])[BURN_RATE]
    # The starter unchanged is judged as the starter: no saving, whatever the learner did before the first sweep.
    assert not forged["passed"] and forged["score"] == pytest.approx(honest["score"]) == pytest.approx(0.0)
    assert _starter_of(world, forger["id"]) == (pytest.approx(control_burn, rel=1e-9), control_service)
