"""Suspension stops all compute, whatever the learner wrote, and resume restores what labctl recorded, not what the
sandbox says: every kind the learner's Role may create, made with the learner's own kubeconfig and the real kubectl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from tests.adversarial.budget_world import (
    ADMIN,
    World,
    quiet_world,
    restricted_pod_spec,
)
from tests.support.wait import eventually

FAKE = "labctl.dev/replicas-before-suspend"  # what the old suspend trusted


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    with quiet_world(tmp_path, local_cluster) as w:
        yield w


def _workloads(node: str) -> str:
    pod = restricted_pod_spec()

    def template(app: str, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"labels": {"app": app}}, "spec": {**pod, **spec}}

    def selector(app: str) -> dict[str, Any]:
        return {"matchLabels": {"app": app}}

    docs = [
        # Pretends to be suspended already: the old suspend skipped anything carrying this annotation.
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {FAKE: "0"}},
         "spec": {"replicas": 2, "selector": selector("web"), "template": template("web")}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
         "spec": {"replicas": 1, "serviceName": "db", "selector": selector("db"), "template": template("db")}},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "cache"},
         "spec": {"replicas": 1, "selector": selector("cache"), "template": template("cache")}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
         "spec": {"selector": selector("agent"),
                  "template": template("agent", nodeSelector={"kubernetes.io/hostname": node})}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "crunch"},
         "spec": {"backoffLimit": 0, "template": template("crunch", restartPolicy="Never")}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
         "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template("nightly",
                                                                                          restartPolicy="Never")}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loner", "labels": {"app": "loner"}}, "spec": pod},
    ]
    return yaml.safe_dump_all(docs)


def _live_pods(core: client.CoreV1Api, ns: str) -> list[Any]:
    return [p for p in core.list_namespaced_pod(ns).items if p.status.phase not in ("Succeeded", "Failed")]


def test_suspend_stops_every_kind_and_resume_restores_the_record(world: World, kube: client.ApiClient,
                                                                 tmp_path: Path) -> None:
    core, apps, batch = client.CoreV1Api(kube), client.AppsV1Api(kube), client.BatchV1Api(kube)
    node = next(n.metadata.name for n in core.list_node().items if n.metadata.name.startswith("cpu-ondemand"))
    session = world.start("tag-for-showback", "hoarder")
    sid, ns = session["id"], session["namespace"]
    learner = world.token("hoarder", "learner", "hoarder")
    kubectl = world.kubectl_as(sid, learner, tmp_path / "laptop")

    made = kubectl("apply", "-f", "-", stdin=_workloads(node))
    assert made.returncode == 0, made.stderr
    mine = {"web", "db", "cache", "agent", "loner"}

    def running() -> bool:
        pods = _live_pods(core, ns)
        apps_running = {(p.metadata.labels or {}).get("app") for p in pods if p.status.phase == "Running"}
        return mine <= apps_running and sum((p.metadata.labels or {}).get("app") == "web" for p in pods) == 2

    eventually(running, timeout=120)
    world.sweep()
    assert world.session(sid)["cost"]["burn_rate_usd_per_hour"] > 0

    r = world.client.post(f"/v1/sessions/{sid}/suspend", headers=ADMIN)
    assert r.status_code == 200, r.text
    eventually(lambda: not _live_pods(core, ns), timeout=120)
    world.clock.advance(minutes=5)
    world.sweep()
    assert world.session(sid)["cost"]["burn_rate_usd_per_hour"] == 0  # no PVC or LB in this lab: compute is all
    assert core.read_namespaced_resource_quota("sandbox", ns).spec.hard["pods"] == "0"
    suspended = [e for e in world.events(sid) if e["kind"] == "suspended"][-1]
    assert "bare pods deleted" in suspended["detail"]["stopped"] and "loner" in suspended["detail"]["stopped"]
    assert FAKE not in {k for d in apps.list_namespaced_deployment(ns).items for k in (d.metadata.annotations or {})
                        if d.metadata.name != "web"}  # labctl writes no memory into the sandbox

    # Meanwhile the learner writes what the old resume believed, scales up and unparks the DaemonSet.
    assert kubectl("annotate", "deployment", "web", f"{FAKE}=lots", "--overwrite").returncode == 0
    assert kubectl("scale", "deployment", "web", "--replicas=7").returncode == 0
    assert kubectl("scale", "statefulset", "db", "--replicas=4").returncode == 0
    unpark = kubectl("patch", "daemonset", "agent", "--type=json",
                     "-p", '[{"op": "replace", "path": "/spec/template/spec/nodeSelector", "value": {}}]')
    assert unpark.returncode == 0, unpark.stderr
    sneaky = kubectl("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Pod",
                                                              "metadata": {"name": "sneaky"},
                                                              "spec": restricted_pod_spec()}))
    assert sneaky.returncode != 0 and "exceeded quota" in sneaky.stderr, sneaky.stderr
    world.clock.advance(minutes=5)
    world.sweep()
    assert world.session(sid)["cost"]["burn_rate_usd_per_hour"] == 0
    assert not _live_pods(core, ns)

    r = world.client.post(f"/v1/sessions/{sid}/resume", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 2
    assert apps.read_namespaced_stateful_set("db", ns).spec.replicas == 1
    assert apps.read_namespaced_replica_set("cache", ns).spec.replicas == 1
    assert apps.read_namespaced_daemon_set("agent", ns).spec.template.spec.node_selector == {
        "kubernetes.io/hostname": node}
    assert batch.read_namespaced_cron_job("nightly", ns).spec.suspend is False
    assert not batch.read_namespaced_job("crunch", ns).spec.suspend
    assert core.read_namespaced_resource_quota("sandbox", ns).spec.hard["pods"] == "20"
    eventually(lambda: {"web", "db", "cache", "agent"} <= {(p.metadata.labels or {}).get("app")
                                                          for p in _live_pods(core, ns)
                                                          if p.status.phase == "Running"}, timeout=120)
    assert world.session(sid)["state"] == "ready"
