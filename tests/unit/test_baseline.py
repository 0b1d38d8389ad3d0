"""When is a starter settled enough to take its baseline (labctl.service.baseline.unsettled)?"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labctl.grading.snapshot import BudgetInfo, CostInfo, ObjectRef, Resource, SessionInfo, Snapshot
from labctl.service.baseline import unsettled

T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)


def _snap(*resources: Resource) -> Snapshot:
    return Snapshot(session=SessionInfo(id="s", lab_id="l", learner_id="ada", provider="kubernetes", started_at=T0,
                                        taken_at=T0),
                    budget=BudgetInfo(budget_usd=5),
                    cost=CostInfo(accrued_usd=0, burn_rate_usd_per_hour=0, usage_source="requests"),
                    resources=list(resources))


def _pods(controller: str, count: int, *, node: str | None = "n-0") -> list[Resource]:
    kind, name = controller.split("/")
    return [Resource(kind="Pod", name=f"{name}-{i}", node=node, controller=ObjectRef(kind=kind, name=name))
            for i in range(count)]


DEPLOYMENT = Resource(kind="Deployment", name="web", replicas=3)
REPLICA_SET = Resource(kind="ReplicaSet", name="web-1", replicas=3, controller=ObjectRef(kind="Deployment", name="web"))


@pytest.mark.parametrize(("resources", "missing"), [
    ([], []),
    ([DEPLOYMENT], ["Deployment/web: no ReplicaSet yet"]),
    ([DEPLOYMENT, REPLICA_SET], ["ReplicaSet/web-1: 0 of 3 pods on a node"]),
    ([DEPLOYMENT, REPLICA_SET, *_pods("ReplicaSet/web-1", 2)], ["ReplicaSet/web-1: 2 of 3 pods on a node"]),
    ([DEPLOYMENT, REPLICA_SET, *_pods("ReplicaSet/web-1", 3, node=None)], ["ReplicaSet/web-1: 0 of 3 pods on a node"]),
    ([DEPLOYMENT, REPLICA_SET, *_pods("ReplicaSet/web-1", 3)], []),
    ([Resource(kind="Deployment", name="off", replicas=0)], []),
    ([Resource(kind="StatefulSet", name="db", replicas=2), *_pods("StatefulSet/db", 1)],
     ["StatefulSet/db: 1 of 2 pods on a node"]),
    ([Resource(kind="Job", name="batch", parallelism=4, completions=10), *_pods("Job/batch", 3)],
     ["Job/batch: 3 of 4 pods on a node"]),
    ([Resource(kind="Job", name="batch", parallelism=4, completions=2), *_pods("Job/batch", 2)], []),
    ([Resource(kind="Job", name="one")], ["Job/one: 0 of 1 pods on a node"]),
    ([Resource(kind="Job", name="held", parallelism=4, suspend=True)], []),
])
def test_a_starter_is_settled_when_every_workload_has_its_pods_on_nodes(resources: list[Resource],
                                                                        missing: list[str]) -> None:
    assert unsettled(_snap(*resources)) == missing


def test_pods_of_another_controller_do_not_count() -> None:
    snap = _snap(DEPLOYMENT, REPLICA_SET, *_pods("ReplicaSet/other", 3))
    assert unsettled(snap) == ["ReplicaSet/web-1: 0 of 3 pods on a node"]
