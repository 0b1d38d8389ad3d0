"""The learner against the grading window's replay: while the replay runs (the sandbox frozen), the learner's own
kubectl tries to steer what is graded — scale the workload, widen or delete its HPA, delete a pod so fewer are
billed, annotate pods with usage, create a ConfigMap — and every write is refused; the grade's ``service`` figures
are still exactly the replay window's ledger rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.simulator import ledger
from tests.grading.replay_world import HPA, INSTRUCTOR, WORKLOAD, World, make_world, running_world
from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import HEADERS, _pods_running

ATTEMPTS = [
    ("scale", "deployment/legacy-dashboard", "--replicas=0"),
    ("patch", "hpa", "legacy-dashboard", "--type=merge", "-p", '{"spec": {"maxReplicas": 1}}'),
    ("delete", "hpa", "legacy-dashboard"),
    ("annotate", "pods", "--all", "kwok.x-k8s.io/usage-cpu=1m"),
    ("create", "configmap", "steer", "--from-literal=served=1000000"),
]


@pytest.fixture
def world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    yield from running_world(make_world(tmp_path, local_cluster, seconds_per_day=30))


def test_no_learner_write_lands_during_the_replay(world: World, kube: client.ApiClient, kubectl: Any,
                                                 tmp_path: Path) -> None:
    session = world.start("steerer")
    sid, ns = session["id"], session["namespace"]
    eventually(lambda: _pods_running(kube, ns, "app=legacy-dashboard", 3), timeout=90)
    kubeconfig = tmp_path / "learner.kubeconfig"
    kubeconfig.write_text(world.client.get(f"/v1/sessions/{sid}/kubeconfig", headers=HEADERS).text)
    assert kubectl("apply", "-f", "-", stdin=HPA, kubeconfig=kubeconfig).returncode == 0
    rt = world.rt
    sub = rt.submissions.submit(sid, principal=INSTRUCTOR)
    grading = threading.Thread(target=rt.submissions.grade, args=(sub.id,))
    grading.start()
    eventually(lambda: world.submission(sub.id)["progress"] is not None, timeout=60)
    pod = client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector="app=legacy-dashboard").items[0]
    outcomes = [kubectl(*args, kubeconfig=kubeconfig) for args in
                [*ATTEMPTS, ("delete", "pod", pod.metadata.name, "--wait=false")]]
    assert world.submission(sub.id)["state"] == "grading"  # the attempts were made during the replay
    grading.join(timeout=120)
    for args, out in zip([*ATTEMPTS, ("delete", "pod")], outcomes, strict=True):
        assert out.returncode != 0 and "forbidden" in out.stderr.lower(), (args, out.stdout, out.stderr)
    hpa = client.AutoscalingV2Api(kube).read_namespaced_horizontal_pod_autoscaler("legacy-dashboard", ns)
    assert hpa.spec.max_replicas == 5
    assert client.CoreV1Api(kube).list_namespaced_config_map(ns, field_selector="metadata.name=steer").items == []

    done = world.submission(sub.id)
    assert done["state"] == "graded", done
    with rt.store.session() as db:
        (row,) = ledger.ledger(db, session_id=sid, window=sub.id)
    (mine,) = rt.submissions._row(sub.id).snapshot["service"]
    assert mine["workload"] == WORKLOAD
    assert (Decimal(str(mine["served"])), Decimal(str(mine["cost_usd"]))) == (row.served, row.cost_usd)
    assert row.served > 0
