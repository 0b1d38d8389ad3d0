"""The sweeps play a lab's demand on the live cluster: usage the learner sees in `kubectl top`, requests served and
dropped in the service ledger, one fake-clock sweep at a time.

The lab is gpu-rightsizing with a constant demand of 10 requests per second on its inference Deployment (2 replicas,
a whole A100 and 8 cores each), so the expected figures are plain arithmetic: each replica serves 5 requests/s, using
5 x 0.15 = 0.75 cores, 5904Mi + 5 x 16Mi = 5984Mi of memory and 5 x 0.02 = 0.1 of its GPU's engine; over 60 s the
workload is offered 600 requests and serves them all. Scaled to zero, it serves nothing and drops everything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.simulator import ledger
from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import HEADERS, World, _labs_with, _pods_running, _stop_all, _world

WORKLOAD = "Deployment/llm-inference"
DEMAND = {
    "time_scale": 288,
    "workloads": [{
        "workload": WORKLOAD, "rps": 10,
        "per_request": {"cpu_core_seconds": 0.15, "gpu_seconds": 0.02, "memory_per_rps": "16Mi"},
        "per_replica": {"memory": "5904Mi", "gpu_memory_mib": 7000},
    }],
}


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    w = _world(tmp_path, local_cluster, _labs_with(tmp_path, "gpu-rightsizing", {"demand": DEMAND}))
    with w.client:
        yield w
        _stop_all(w)


def _ledger(world: World, session_id: str) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    with world.app.state.parts.runtime.store.session() as db:
        return {r.workload: (r.offered, r.served, r.dropped) for r in ledger.ledger(db, session_id=session_id)}


def _top(kubectl: Any, kubeconfig: Path) -> dict[str, tuple[int, int]]:
    """``kubectl top pods`` as the learner: pod -> (millicores, MiB)."""
    out = kubectl("top", "pods", "--no-headers", kubeconfig=kubeconfig)
    if out.returncode != 0:
        return {}
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return {name: (int(cpu.removesuffix("m")), int(mem.removesuffix("Mi"))) for name, cpu, mem in rows}


def test_demand_becomes_usage_and_served_requests(world: World, kube: client.ApiClient, kubectl: Any,
                                                  tmp_path: Path) -> None:
    session = world.start("gpu-rightsizing", "sim-learner")
    sid, ns = session["id"], session["namespace"]
    selector = "app=llm-inference"
    eventually(lambda: _pods_running(kube, ns, selector, 2), timeout=90)
    kubeconfig = tmp_path / "learner.kubeconfig"
    kubeconfig.write_text(world.client.get(f"/v1/sessions/{sid}/kubeconfig", headers=HEADERS).text)

    world.sweep()  # the first metering, at the moment the session became ready: nothing has been played yet
    assert _ledger(world, sid) == {}
    world.clock.advance(seconds=60)
    assert world.sweep().errors == []
    assert _ledger(world, sid) == {WORKLOAD: (Decimal(600), Decimal(600), Decimal(0))}

    # A reading no time later (as a submission takes one) carries the pods' simulated use, DCGM figures included,
    # and counts no request twice.
    rt = world.app.state.parts.runtime
    snap = rt.sweeper.meter(sid, rt.sweeper.prices())
    assert snap.cost.usage_source == "simulator"
    pods = [r for r in snap.resources if r.kind == "Pod"]
    assert len(pods) == 2
    for pod in pods:
        usage = pod.containers[0].usage
        assert usage is not None
        assert usage.cpu == pytest.approx(0.75) and usage.memory == 5984 * 2**20
        assert usage.gpu_engine_active == pytest.approx(0.1) and usage.gpu_memory_mib == pytest.approx(7000)
    assert _ledger(world, sid) == {WORKLOAD: (Decimal(600), Decimal(600), Decimal(0))}
    # ... and the outcome figures graders judge: the ledger's counts beside what the workload's pods cost over the
    # step the ledger counted (their hourly rates x 60 s, at the money ledger's 6 places), not what the pods present
    # have cost so far (the fake clock is days before the pods' real start: their running hours read 0 here).
    assert snap.service is not None and len(snap.service) == 1
    outcome = snap.service[0]
    step_cost = ledger.to_ledger(sum((Decimal(str(p.hourly_usd)) for p in pods), Decimal(0)) * 60 / 3600)
    assert step_cost > 0 and sum(p.cost_usd or 0.0 for p in pods) == 0
    assert (outcome.workload, outcome.offered, outcome.served, outcome.dropped, outcome.served_share) == \
        (WORKLOAD, 600, 600, 0, 1)
    assert outcome.cost_usd == float(step_cost)
    assert outcome.cost_per_1000_requests == pytest.approx(float(step_cost) / 600 * 1000)

    # The same figures through the API: GPU in DCGM terms beside CPU and memory, and the workload's service so far.
    seen = world.client.get(f"/v1/sessions/{sid}/metrics", headers=HEADERS)
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["usage_source"] == "simulator"
    assert [(p["cpu_cores"], p["DCGM_FI_PROF_GR_ENGINE_ACTIVE"], p["DCGM_FI_DEV_FB_USED"], p["status"])
            for p in body["pods"]] == [(pytest.approx(0.75), pytest.approx(0.1), pytest.approx(7000), "serving")] * 2
    assert body["workloads"] == [{"workload": WORKLOAD, "requests_offered": 600.0, "requests_served": 600.0,
                                  "requests_dropped": 0.0, "served_share": 1.0}]
    assert _ledger(world, sid) == {WORKLOAD: (Decimal(600), Decimal(600), Decimal(0))}  # reading changed nothing

    # The learner's own kubectl shows what the simulator wrote (metrics-server scrapes every 10 s).
    def learner_sees_the_load() -> bool:
        figures = _top(kubectl, kubeconfig)
        return len(figures) == 2 and all(abs(cpu - 750) <= 10 and mem == 5984 for cpu, mem in figures.values())
    eventually(learner_sees_the_load, timeout=120)

    # Scaled to zero: the workload is cheaper and serves nothing; every request offered is dropped.
    scaled = kubectl("scale", "deployment/llm-inference", "--replicas=0", kubeconfig=kubeconfig)
    assert scaled.returncode == 0, scaled.stderr
    eventually(lambda: not client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=selector).items, timeout=90)
    world.clock.advance(seconds=60)
    assert world.sweep().errors == []
    assert _ledger(world, sid) == {WORKLOAD: (Decimal(1200), Decimal(600), Decimal(600))}
    assert world.session(sid)["cost"]["burn_rate_usd_per_hour"] < 1.0  # no A100 held any more


def test_usage_objects_belong_to_labctl_not_the_learner(world: World, kube: client.ApiClient, kubectl: Any,
                                                        tmp_path: Path) -> None:
    session = world.start("gpu-rightsizing", "sim-owner")
    sid, ns = session["id"], session["namespace"]
    eventually(lambda: _pods_running(kube, ns, "app=llm-inference", 2), timeout=90)
    world.clock.advance(seconds=30)
    assert world.sweep().errors == []
    kubeconfig = tmp_path / "learner.kubeconfig"
    kubeconfig.write_text(world.client.get(f"/v1/sessions/{sid}/kubeconfig", headers=HEADERS).text)
    found = client.CustomObjectsApi(kube).list_cluster_custom_object(
        "kwok.x-k8s.io", "v1alpha1", "clusterresourceusages", label_selector=f"labctl.dev/usage-namespace={ns}")
    assert len(found["items"]) == 2
    name = found["items"][0]["metadata"]["name"]
    patch = json.dumps({"spec": {"usages": [{"usage": {"cpu": {"value": "1m"}}}]}})
    forged = kubectl("patch", "clusterresourceusage", name, "--type=merge", "-p", patch, kubeconfig=kubeconfig)
    assert forged.returncode != 0 and "forbidden" in forged.stderr.lower()
