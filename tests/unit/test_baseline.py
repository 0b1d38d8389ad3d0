"""When is a starter settled enough to take its baseline (labctl.service.baseline.unsettled)? The snapshots are the
product's own (:func:`labctl.providers.kubernetes.snapshot.build` over API objects as the apiserver writes them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from labctl.grading.snapshot import BudgetInfo, SessionInfo
from labctl.providers.kubernetes import snapshot
from labctl.providers.kubernetes.inventory import Inventory
from labctl.service.baseline import unsettled

T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)


def _owned(kind: str, name: str, owner: tuple[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{kind}-{name}"}
    if owner is not None:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "uid": f"uid-{owner[0]}-{owner[1]}",
                                    "controller": True, "apiVersion": "apps/v1"}]
    return {"kind": kind, "apiVersion": "v1", "metadata": meta, "spec": spec, "status": {}}


def _pods(owner: tuple[str, str], count: int, *, node: str | None = "n-0") -> list[dict[str, Any]]:
    pods = []
    for i in range(count):
        pod = _owned("Pod", f"{owner[1]}-{i}", owner, containers=[{"name": "c"}])
        if node:
            pod["spec"]["nodeName"] = node
        pods.append(pod)
    return pods


def _missing(workloads: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[str]:
    snap = snapshot.build(Inventory(workloads=workloads, pods=pods),
                          session=SessionInfo(id="s", lab_id="l", learner_id="ada", provider="kubernetes",
                                              started_at=T0, taken_at=T0),
                          budget=BudgetInfo(budget_usd=5), now=T0)
    return unsettled(snap)


WEB = _owned("Deployment", "web", replicas=3)
WEB_RS = _owned("ReplicaSet", "web-1", ("Deployment", "web"), replicas=3)
RS = ("ReplicaSet", "web-1")


@pytest.mark.parametrize(("workloads", "pods", "missing"), [
    ([], [], []),
    ([WEB], [], ["Deployment/web: no ReplicaSet yet"]),
    ([WEB, WEB_RS], [], ["ReplicaSet/web-1: 0 of 3 pods on a node"]),
    ([WEB, WEB_RS], _pods(RS, 2), ["ReplicaSet/web-1: 2 of 3 pods on a node"]),
    ([WEB, WEB_RS], _pods(RS, 3, node=None), ["ReplicaSet/web-1: 0 of 3 pods on a node"]),
    ([WEB, WEB_RS], _pods(RS, 3), []),
    ([WEB, WEB_RS], _pods(("ReplicaSet", "other"), 3), ["ReplicaSet/web-1: 0 of 3 pods on a node"]),
    ([_owned("Deployment", "off", replicas=0)], [], []),
    ([_owned("Deployment", "default")], [], ["Deployment/default: no ReplicaSet yet"]),  # replicas unset: 1
    ([_owned("StatefulSet", "db", replicas=2)], _pods(("StatefulSet", "db"), 1),
     ["StatefulSet/db: 1 of 2 pods on a node"]),
    ([_owned("Job", "batch", parallelism=4, completions=10)], _pods(("Job", "batch"), 3),
     ["Job/batch: 3 of 4 pods on a node"]),
    ([_owned("Job", "batch", parallelism=4, completions=2)], _pods(("Job", "batch"), 2), []),
    ([_owned("Job", "one")], [], ["Job/one: 0 of 1 pods on a node"]),
    ([_owned("Job", "held", parallelism=4, suspend=True)], [], []),
])
def test_a_starter_is_settled_when_every_workload_has_its_pods_on_nodes(
        workloads: list[dict[str, Any]], pods: list[dict[str, Any]], missing: list[str]) -> None:
    assert _missing(workloads, pods) == missing
