"""The learner declares a unit cost it did not earn; the measured figure, and the grade on it, must not move.

``cost-per-inference`` asks the learner to report the cost per 1,000 requests it computed in ConfigMap/unit-cost, and
grades only whether that report agrees with labctl's measured figure (the service ledger's requests and the meter's
prices). Played here as the learner, with the kubeconfig labctl issues and the real kubectl, on the live control
plane: keep the starter's whole on-demand A100 ($0.0596 per 1,000 requests), write the target-beating $0.0116 into
ConfigMap/unit-cost, stuff a second ConfigMap with more and longer keys than the snapshot keeps, and try to write an
autoscaler's status. The grade still measures $0.0596 (within 1 % of the price sheet's arithmetic): the unit-cost
check fails, the report is judged a mismatch, and the oversized ConfigMap is capped rather than breaking the
snapshot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes.snapshot import MAX_CONFIG_KEYS, MAX_CONFIG_VALUE
from labctl.store.models import Submission
from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import HEADERS, World, _pods_running, _stop_all, _world

pytestmark = pytest.mark.cluster

CHAT = "Deployment/chat-inference"
UNIT = ("unit-cost", f"unit-cost:{CHAT}")
REPORT = ("reported-unit-cost", f"reported-unit-cost:{CHAT}")
SLO = ("slo", f"slo:{CHAT}")
# The starter's pod on the on-demand p4de.24xlarge ($27.44705/h): the sheet's price split by the fallback rates
# (0.95 per GPU, 0.031611 per vCPU, 0.004237 per GiB over 8 GPUs, 96 vCPUs, 1152 GiB), for 1 GPU, 4 CPUs, 32 GiB,
# over the 36,000 requests an hour it serves.
WEIGHTS = 8 * 0.95 + 96 * 0.031611 + 1152 * 0.004237
STARTER_USD_PER_1000 = 27.44705 / WEIGHTS * (0.95 + 4 * 0.031611 + 32 * 0.004237) / 36


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    w = _world(tmp_path, local_cluster)
    # A pod's cost so far counts its real hours: start the fake clock at the real time (see tests/labs).
    w.clock.now = datetime.now(UTC).replace(microsecond=0)
    with w.client:
        yield w
        _stop_all(w)


def test_a_declared_unit_cost_moves_no_measured_figure(world: World, kube: client.ApiClient, kubectl: Any,
                                                        tmp_path: Path) -> None:
    session = world.start("cost-per-inference", "declarer")
    sid, ns = session["id"], session["namespace"]
    eventually(lambda: _pods_running(kube, ns, "app=chat-inference", 1), timeout=90)
    world.sweep()  # the starter's first reading
    kubeconfig = tmp_path / "learner.kubeconfig"
    kubeconfig.write_text(world.client.get(f"/v1/sessions/{sid}/kubeconfig", headers=HEADERS).text)

    lie = kubectl("create", "configmap", "unit-cost", "--from-literal=usd_per_1000_requests=0.0116",
                  kubeconfig=kubeconfig)
    assert lie.returncode == 0, lie.stderr
    stuffed = tmp_path / "stuffed.json"
    data = {f"k{i:03d}": "x" * (MAX_CONFIG_VALUE * 4) for i in range(MAX_CONFIG_KEYS * 3)}
    stuffed.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stuffed"},
                                   "data": data}))
    applied = kubectl("create", "-f", str(stuffed), kubeconfig=kubeconfig)
    assert applied.returncode == 0, applied.stderr
    hpa = kubectl("autoscale", "deployment/chat-inference", "--min=1", "--max=1", "--cpu-percent=90",
                  kubeconfig=kubeconfig)
    assert hpa.returncode == 0, hpa.stderr
    status = json.dumps({"status": {"currentReplicas": 7, "desiredReplicas": 7}})
    forged = kubectl("patch", "hpa/chat-inference", "--subresource=status", "--type=merge", "-p", status,
                     kubeconfig=kubeconfig)
    assert forged.returncode != 0 and "forbidden" in forged.stderr.lower(), forged.stdout + forged.stderr

    world.clock.advance(minutes=60)
    assert world.sweep().errors == []
    posted = world.client.post(f"/v1/sessions/{sid}/submissions", headers=HEADERS)
    assert posted.status_code == 202, posted.text
    deadline = time.monotonic() + 60
    while (sub := world.client.get(f"/v1/submissions/{posted.json()['id']}", headers=HEADERS).json())["state"] \
            == "grading" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sub["state"] == "graded", sub
    checks = {(c["grader"], c["id"]): c for c in sub["checks"]}

    assert checks[SLO]["passed"], checks[SLO]["feedback"]  # the whole A100 serves every request
    unit = checks[UNIT]
    assert not unit["passed"] and unit["score"] == 0, unit["feedback"]
    measured = unit["evidence"][0]["cost_per_1000_requests"]
    assert measured == pytest.approx(STARTER_USD_PER_1000, rel=0.01)
    report = checks[REPORT]
    assert not report["passed"] and report["score"] == 0 and report["status"] != "error", report["feedback"]
    assert report["evidence"][0]["reported"] == pytest.approx(0.0116)
    assert report["evidence"][0]["measured_usd_per_1000"] == pytest.approx(measured)

    with world.app.state.parts.runtime.store.session() as db:
        row = db.get(Submission, sub["id"])
        assert row is not None and row.snapshot is not None
        snapshot: dict[str, Any] = dict(row.snapshot)
    kept = {c["name"]: c for c in snapshot["config_maps"]}
    assert kept["unit-cost"]["data"] == {"usd_per_1000_requests": "0.0116"}
    assert kept["stuffed"]["truncated"] is True
    assert len(kept["stuffed"]["data"]) == MAX_CONFIG_KEYS
    assert {len(v) for v in kept["stuffed"]["data"].values()} == {MAX_CONFIG_VALUE}
    # The autoscaler is in the snapshot as declared, with the controller's status, not the learner's.
    (autoscaler,) = snapshot["autoscalers"]
    assert autoscaler["target"] == {"kind": "Deployment", "name": "chat-inference"}
    assert (autoscaler["min_replicas"], autoscaler["max_replicas"]) == (1, 1)
    assert autoscaler.get("desired_replicas", 0) <= 1 and autoscaler.get("current_replicas", 0) <= 1
