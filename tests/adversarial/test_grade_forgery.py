"""The learner tries to forge a grade by writing "measured use" on its workloads; the grade must not move.

Before the labs declared simulated demand, the graders read pod-template annotations (``labctl.dev/expected-*``) as
measured use, and kwok's stock rule read ``kwok.x-k8s.io/usage-*``: raising them on ``llm-inference`` to match its
oversized requests made the rightsizing checks pass, and declaring the idle dashboard busy took it out of the idle
waste. Played here as the learner, with the kubeconfig labctl issues and the real kubectl, against the shipped labs
on the live control plane: submit the starter, write the old annotations on the pod template and on the running
pods, submit again, and compare. The checks that judge use score what they scored before, still failing, because
use comes only from what labctl's simulator measured (``kubectl top`` shows the same figures).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import HEADERS, World, _pods_running

pytestmark = pytest.mark.cluster

GPU_CHECKS = (("gpu-right-size", "gpu-size:Deployment/llm-inference"),
              ("cpu-memory-right-size", "right-size:Deployment/llm-inference"))
IDLE_CHECKS = (("idle-and-orphans", "idle-workloads"), ("idle-waste-gone", "idle-share"))
# What the annotations would have claimed: the starter's requests fully used (8 cores, 64 GiB, a busy whole GPU).
BUSY_GPU = {"labctl.dev/expected-gpu-engine-active": "0.95", "labctl.dev/expected-gpu-memory-mib": "70000",
            "labctl.dev/expected-cpu-millicores": "7600", "labctl.dev/expected-memory-mib": "60000",
            "kwok.x-k8s.io/usage-cpu": "7600m", "kwok.x-k8s.io/usage-memory": "60000Mi"}
BUSY_DASHBOARD = {"kwok.x-k8s.io/usage-cpu": "200m", "kwok.x-k8s.io/usage-memory": "200Mi",
                  "labctl.dev/expected-cpu-millicores": "200"}


def _submit(world: World, sid: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Submit the session as it is and return its graded checks by (grader, check)."""
    world.clock.advance(minutes=5)
    assert world.sweep().errors == []
    posted = world.client.post(f"/v1/sessions/{sid}/submissions", headers=HEADERS)
    assert posted.status_code == 202, posted.text
    deadline = time.monotonic() + 60
    while True:
        sub = world.client.get(f"/v1/submissions/{posted.json()['id']}", headers=HEADERS).json()
        if sub["state"] != "grading" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sub["state"] == "graded", sub
    return {(c["grader"], c["id"]): c for c in sub["checks"]}


def _forge(kubectl: Any, kubeconfig: Path, deployment: str, notes: dict[str, str]) -> None:
    """As the learner: the annotations on every running pod of the Deployment, then on its pod template (the new
    pods a rollout makes carry them from birth)."""
    pairs = [f"{k}={v}" for k, v in notes.items()]
    annotated = kubectl("annotate", "pods", "-l", f"app={deployment}", "--overwrite", *pairs, kubeconfig=kubeconfig)
    assert annotated.returncode == 0, annotated.stderr
    patch = json.dumps({"spec": {"template": {"metadata": {"annotations": notes}}}})
    patched = kubectl("patch", f"deployment/{deployment}", "--type=merge", "-p", patch, kubeconfig=kubeconfig)
    assert patched.returncode == 0, patched.stderr


def _annotated_pods(kube: client.ApiClient, ns: str, app: str, notes: dict[str, str]) -> int:
    pods = client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=f"app={app}").items
    return sum(p.status.phase == "Running" and notes.items() <= (p.metadata.annotations or {}).items() for p in pods)


def _learner(world: World, sid: str, tmp_path: Path) -> Path:
    kubeconfig = tmp_path / f"{sid}.kubeconfig"
    kubeconfig.write_text(world.client.get(f"/v1/sessions/{sid}/kubeconfig", headers=HEADERS).text)
    return kubeconfig


def test_annotations_matching_the_requests_do_not_rightsize_llm_inference(
        world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path) -> None:
    session = world.start("gpu-rightsizing", "forger-gpu")
    sid, ns = session["id"], session["namespace"]
    eventually(lambda: _pods_running(kube, ns, "app=llm-inference", 2), timeout=90)
    world.sweep()  # the starter's first reading
    before = _submit(world, sid)
    for key in GPU_CHECKS:
        assert before[key]["score"] == 0 and not before[key]["passed"], before[key]

    kubeconfig = _learner(world, sid, tmp_path)
    _forge(kubectl, kubeconfig, "llm-inference", BUSY_GPU)
    # The template change starts a rollout the GPU quota stalls; the two old pods, now annotated, keep serving.
    eventually(lambda: _annotated_pods(kube, ns, "llm-inference", BUSY_GPU) == 2, timeout=60)
    after = _submit(world, sid)
    for key in GPU_CHECKS:
        assert after[key]["score"] == before[key]["score"] == 0, after[key]["feedback"]
        assert not after[key]["passed"]
    # The figures behind the verdicts are the simulator's, exactly as before: 0.12 of a GPU, 900m of 8 cores.
    gpu = after[GPU_CHECKS[0]]["evidence"][0]
    assert (gpu["engine_active"], gpu["memory_mib"]) == pytest.approx((0.12, 7000))
    cpu = [e for e in after[GPU_CHECKS[1]]["evidence"] if e.get("what") == "cpu"]
    assert cpu and cpu[0]["use"] == pytest.approx(0.9) and cpu[0]["request"] == 8
    assert after[GPU_CHECKS[0]]["evidence"] == before[GPU_CHECKS[0]]["evidence"]
    assert after[GPU_CHECKS[1]]["evidence"] == before[GPU_CHECKS[1]]["evidence"]


def test_declaring_the_idle_dashboard_busy_keeps_it_idle_waste(
        world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path) -> None:
    session = world.start("idle-hunter", "forger-idle")
    sid, ns = session["id"], session["namespace"]
    eventually(lambda: _pods_running(kube, ns, "app=legacy-dashboard", 3), timeout=90)
    world.sweep()
    before = _submit(world, sid)
    for key in IDLE_CHECKS:
        assert not before[key]["passed"], before[key]
    assert "Pod/legacy-dashboard-" in before[IDLE_CHECKS[1]]["feedback"]

    kubeconfig = _learner(world, sid, tmp_path)
    _forge(kubectl, kubeconfig, "legacy-dashboard", BUSY_DASHBOARD)
    # The template change rolls the dashboard's pods over (the quota has room); wait for 3 annotated pods only.
    eventually(lambda: _pods_running(kube, ns, "app=legacy-dashboard", 3)
               and _annotated_pods(kube, ns, "legacy-dashboard", BUSY_DASHBOARD) == 3, timeout=120)
    after = _submit(world, sid)
    for key in IDLE_CHECKS:
        assert after[key]["score"] == pytest.approx(before[key]["score"]), after[key]["feedback"]
        assert not after[key]["passed"]
    idle = [e for e in after[IDLE_CHECKS[1]]["evidence"] if str(e["resource"]).startswith("Pod/legacy-dashboard-")]
    assert len(idle) == 3, after[IDLE_CHECKS[1]]["evidence"]
