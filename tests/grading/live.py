"""Snapshots for grader tests, made by the product itself from the labs' manifests applied to the live cluster.
:func:`snapshot` applies rendered Kubernetes objects (a lab's starter, its reference solution, or an edited copy: a
"wrong solution") with server-side apply to a fresh namespace of the tests' own cluster, waits until the real
controllers and scheduler have settled them (pods Running, Job pods done, or Pending as Unschedulable), then takes
the snapshot the way a sweep does: :func:`labctl.providers.kubernetes.inventory.collect`, the producer
:func:`labctl.providers.kubernetes.snapshot.build`, the lab's demand played on the pods by the simulator
(:func:`labctl.simulator.model.step`, put into the snapshot by :func:`labctl.service.simulation.with_usage`: the
measured use graders read), the meter :func:`labctl.cost.meter.price` and the service figures the sweeper derives
from the step and the prices (its ``_service``, given the step's counts and pod costs as the ledger's only rows).
There is no second producer: what the graders are tested on is what they get in production. The snapshot is taken as
if :data:`HOURS` had passed since the objects were made (``now`` is passed in), and the ledger holds what the
resources cost over that time (plus ``extra_accrued``).

The reference solutions' inventories (the apiserver's answers, as ``collect`` returns them) are stored as
``fixtures/<lab>-solution.inventory.json``, and the priced snapshots the product makes of them as
``fixtures/<lab>-solution.json`` (for the model, runner and benchmark, which need no cluster); refresh both with
``python -m tests.grading.live`` (it uses the tests' local cluster) after changing a solution manifest or the producer.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.cost import meter
from labctl.cost.prices import PriceSheet, load_sheet
from labctl.grading.snapshot import BudgetInfo, ServiceFigures, SessionInfo, Snapshot, dump_snapshot, load_snapshot
from labctl.providers.kubernetes import inventory
from labctl.providers.kubernetes import snapshot as producer
from labctl.providers.kubernetes.inventory import Inventory
from labctl.service import simulation, sweeps
from labctl.settings import REPO_ROOT
from labctl.simulator import ledger, model
from labctl.store.service_ledger import ServiceLedger

Json = dict[str, Any]
LABS_DIR = REPO_ROOT / "labs"
MANIFESTS_DIR = REPO_ROOT / "manifests"
GRADERS_DIR = REPO_ROOT / "graders"
FIXTURES = Path(__file__).parent / "fixtures"
HOURS = 0.5
SETTLE_S = 150.0
PLACEHOLDER_NAMESPACE = "lab-under-test"
TEST_LABEL = {"labctl.dev/test": "1"}


def catalog() -> dict[str, Lab]:
    """The shipped Kubernetes labs (cloud labs are graded with their provider's tests, e.g. tests/gcp)."""
    labs = loader.load_catalog(LABS_DIR, MANIFESTS_DIR)
    return {lab_id: lab for lab_id, lab in labs.items() if lab.provider == "kubernetes"}


def sheet() -> PriceSheet:
    return load_sheet(LABS_DIR / "prices.yaml")


def context(lab_id: str) -> dict[str, str]:
    return {"namespace": PLACEHOLDER_NAMESPACE, "session_id": "s-test", "lab_id": lab_id, "learner_id": "ada"}


def starter_docs(lab: Lab) -> list[Json]:
    return loader.render_starter(lab, MANIFESTS_DIR, context(lab.id))


def solution_docs(lab: Lab) -> list[Json]:
    return loader.render_solution(lab, MANIFESTS_DIR, context(lab.id))


# --- editing manifests (wrong solutions) ----------------------------------------------------------------------------


def edit(docs: Iterable[Json], ref: str, change: Callable[[Json], None]) -> list[Json]:
    """A copy of ``docs`` with ``change`` applied to the object ``Kind/name``."""
    kind, name = ref.split("/")
    edited = copy.deepcopy(list(docs))
    targets = [d for d in edited if d["kind"] == kind and d["metadata"]["name"] == name]
    assert targets, f"no {ref} in the documents"
    for doc in targets:
        change(doc)
    return edited


def without(docs: Iterable[Json], *refs: str) -> list[Json]:
    """A copy of ``docs`` without the objects named ``Kind/name``."""
    return [copy.deepcopy(d) for d in docs if f"{d['kind']}/{d['metadata']['name']}" not in refs]


def pod_template(doc: Json) -> Json:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    template: Json = spec["template"]
    return template


# --- the live cluster ---------------------------------------------------------------------------------------------


def apply(api: client.ApiClient, namespace: str, docs: Iterable[Json]) -> None:
    """Server-side apply ``docs`` into ``namespace`` (as labctl's provider applies starters)."""
    dyn = dynamic.DynamicClient(api)
    for doc in docs:
        body = copy.deepcopy(doc)
        body["metadata"]["namespace"] = namespace
        resource = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        dyn.server_side_apply(resource, body=body, name=body["metadata"]["name"], namespace=namespace,
                              field_manager="labctl-tests", force_conflicts=True)


def new_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix[:40]}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name,
                                                                                          labels=TEST_LABEL)))
    return name


def delete_namespace(api: client.ApiClient, namespace: str, *, wait_s: float = 90.0) -> None:
    """Delete ``namespace`` and wait until its pods are gone (they hold the fleet's few GPUs)."""
    core = client.CoreV1Api(api)
    try:
        core.delete_namespace(namespace, propagation_policy="Foreground")
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and core.list_namespaced_pod(namespace).items:
        time.sleep(0.5)


def _unschedulable(pod: Any) -> bool:
    return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
               for c in pod.status.conditions or [])


def unsettled(api: client.ApiClient, namespace: str) -> list[str]:
    """Why ``namespace`` is not settled yet (empty once it is): workloads without their pods, pods starting."""
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    reasons: list[str] = []
    for pod in core.list_namespaced_pod(namespace).items:
        if pod.metadata.deletion_timestamp is not None:
            reasons.append(f"Pod/{pod.metadata.name} stopping")
        elif pod.status.phase == "Pending" and not _unschedulable(pod):
            reasons.append(f"Pod/{pod.metadata.name} starting")
    for d in [*apps.list_namespaced_deployment(namespace).items, *apps.list_namespaced_stateful_set(namespace).items]:
        if (d.status.observed_generation or 0) < (d.metadata.generation or 0) or \
                (d.status.replicas or 0) < (d.spec.replicas if d.spec.replicas is not None else 1):
            reasons.append(f"{d.kind or 'workload'}/{d.metadata.name} has not made its pods")
    for job in batch.list_namespaced_job(namespace).items:
        s = job.status
        made = (s.active or 0) + (s.succeeded or 0) + (s.failed or 0)
        wanted = min(job.spec.parallelism or 1, job.spec.completions or job.spec.parallelism or 1)
        if not job.spec.suspend and made < wanted:
            reasons.append(f"Job/{job.metadata.name} has not made its pods")
    return reasons


def settle(api: client.ApiClient, namespace: str, *, timeout_s: float = SETTLE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        reasons = unsettled(api, namespace)
        if not reasons:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{namespace} did not settle in {timeout_s:.0f}s: {'; '.join(reasons)}")
        time.sleep(0.5)


def collect(api: client.ApiClient, lab: Lab, docs: Iterable[Json], *, prefix: str) -> Inventory:
    """Apply ``docs`` to a fresh namespace, let them settle, and return the provider's inventory of it."""
    namespace = new_namespace(api, prefix)
    try:
        apply(api, namespace, docs)
        settle(api, namespace)
        return inventory.collect(api, namespace)
    finally:
        delete_namespace(api, namespace)


# --- inventory -> snapshot, the product's way -----------------------------------------------------------------------


def _made_at(inv: Inventory) -> datetime:
    stamps = [datetime.fromisoformat(str(o["metadata"]["creationTimestamp"]).replace("Z", "+00:00"))
              for o in [*inv.workloads, *inv.pods, *inv.pvcs, *inv.services] if o["metadata"].get("creationTimestamp")]
    return max(stamps, default=datetime(2026, 7, 20, 10, tzinfo=UTC))


def priced(lab: Lab, inv: Inventory, *, hours: float = HOURS, starter_burn: float | None = None,
           extra_accrued: float = 0.0) -> Snapshot:
    """The priced snapshot of ``inv`` taken ``hours`` after its objects were made, as the sweeper makes it: with the
    service figures of the demand played over those hours, the only step in the ledger."""
    taken = _made_at(inv) + timedelta(hours=hours)
    session = SessionInfo(id="s-test", lab_id=lab.id, learner_id="ada", provider="kubernetes",
                          namespace=PLACEHOLDER_NAMESPACE, started_at=taken - timedelta(hours=2 * hours),
                          taken_at=taken)
    budget = BudgetInfo(budget_usd=float(lab.budget.usd), reference_cost_usd=lab.budget.reference_usd,
                        starter_burn_rate_usd_per_hour=starter_burn)
    built = producer.build(inv, session=session, budget=budget, now=taken)
    step = played(lab, built, seconds=hours * 3600)
    result = meter.price(built if step is None else simulation.with_usage(built, step), sheet()).snapshot
    accrued = sum(r.cost_usd or 0.0 for r in result.resources) + extra_accrued
    result = result.model_copy(update={"cost": result.cost.model_copy(update={"accrued_usd": accrued})})
    return result if step is None else result.model_copy(update={"service": service_figures(result, step)})


def played(lab: Lab, snap: Snapshot, *, seconds: float) -> model.Step | None:
    """The step the lab's demand plays on ``snap``'s pods over the ``seconds`` before it was taken, as
    ``Sweeper.meter`` plays it (None for a lab without demand)."""
    if lab.demand is None:
        return None
    return model.step(lab.demand, simulation.pod_states(snap), node_cpu_cores=simulation.node_cpu_cores(snap),
                      started_at=snap.session.started_at, now=snap.session.taken_at, seconds=seconds)


def measured(lab: Lab, snap: Snapshot, *, seconds: float) -> Snapshot:
    """``snap`` with the use the lab's demand puts on its pods over the ``seconds`` before it was taken (a lab
    without demand: unchanged)."""
    step = played(lab, snap, seconds=seconds)
    return snap if step is None else simulation.with_usage(snap, step)


def service_figures(priced_snap: Snapshot, step: model.Step) -> list[ServiceFigures]:
    """The service section ``Sweeper.meter`` adds when ``step`` is the ledger's only one: its counts and each
    workload's pod cost over the step (each pod's hourly rate in the priced snapshot x the step's length), rounded as
    the ledger keeps them."""
    costs = ledger.workload_costs(step, sweeps.pod_rates(priced_snap))
    rows = [ServiceLedger(session_id=priced_snap.session.id, workload=w.key, offered=ledger.to_ledger(w.offered),
                          served=ledger.to_ledger(w.served),
                          dropped=ledger.to_ledger(w.offered) - ledger.to_ledger(w.served), cost_usd=costs[w.key])
            for w in step.workloads]
    return sweeps._service(step, rows)


def snapshot(api: client.ApiClient, lab: Lab, docs: Iterable[Json], *, starter_burn: float | None = None,
             extra_accrued: float = 0.0) -> Snapshot:
    """The priced snapshot of a sandbox holding ``docs`` on the live cluster."""
    inv = collect(api, lab, docs, prefix=f"g-{lab.id}")
    return priced(lab, inv, starter_burn=starter_burn, extra_accrued=extra_accrued)


# --- the stored reference solutions -------------------------------------------------------------------------------


def inventory_path(lab_id: str) -> Path:
    return FIXTURES / f"{lab_id}-solution.inventory.json"


def fixture_path(lab_id: str) -> Path:
    return FIXTURES / f"{lab_id}-solution.json"


def load_inventories(lab_id: str) -> dict[str, Inventory]:
    """The stored ``starter`` and ``solution`` inventories of a lab (real apiserver answers)."""
    data: Json = json.loads(inventory_path(lab_id).read_text(encoding="utf-8"))
    return {key: Inventory(**value) for key, value in data.items()}


def solution_snapshot(lab: Lab) -> Snapshot:
    """What the product makes of the stored reference-solution inventory (compare with the stored snapshot)."""
    stored = load_inventories(lab.id)
    return solution_from_inventory(lab, stored["solution"], stored["starter"])


def solution_from_inventory(lab: Lab, inv: Inventory, starter_inv: Inventory) -> Snapshot:
    """The reference solution's snapshot: its starter's burn rate and half an hour of the starter in the ledger."""
    burn = priced(lab, starter_inv).cost.burn_rate_usd_per_hour
    return priced(lab, inv, starter_burn=burn, extra_accrued=burn * HOURS)


def load_fixture(lab_id: str) -> Json:
    data: Json = json.loads(fixture_path(lab_id).read_text(encoding="utf-8"))
    return data


def load_fixture_snapshot(lab_id: str) -> Snapshot:
    return load_snapshot(fixture_path(lab_id))


def _trimmed(inv: Inventory) -> Json:
    """The inventory as stored: the apiserver's answers without ``managedFields`` (bookkeeping, not inventory)."""
    data = dataclasses.asdict(inv)
    for value in data.values():
        for obj in value if isinstance(value, list) else []:
            obj.get("metadata", {}).pop("managedFields", None)
    return data


def record(api: client.ApiClient) -> None:
    """Collect each lab's starter and reference solution from the live cluster and store them (and the snapshot)."""
    for lab in catalog().values():
        starter = collect(api, lab, starter_docs(lab), prefix=f"rec-{lab.id}")
        solution = collect(api, lab, solution_docs(lab), prefix=f"rec-{lab.id}")
        stored = {"solution": _trimmed(solution), "starter": _trimmed(starter)}
        text = json.dumps(stored, indent=1, sort_keys=True)
        inventory_path(lab.id).write_text(text + "\n", encoding="utf-8")
        snap = solution_from_inventory(lab, solution, starter)
        fixture_path(lab.id).write_text(dump_snapshot(snap, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    import os

    from labctl.localcluster.cluster import LocalCluster
    from labctl.providers.kubernetes.client import api_client
    from labctl.settings import Settings

    settings = Settings()
    cluster = LocalCluster(workdir=settings.local_cluster_workdir, fleet_file=settings.fleet_file,
                           name=os.environ.get("LABCTL_TEST_CLUSTER", "labctl-test"))
    cluster.up()
    with api_client(cluster.kubeconfig) as kube:
        record(kube)
