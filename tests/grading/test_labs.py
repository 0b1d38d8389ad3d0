"""Each shipped lab graded end to end through real grader subprocesses, with the lab's own lab.yaml parameters.

Every snapshot here is made by the product: the lab's manifests (the reference solution, the starter, or edited
copies: "wrong solutions") are applied to the live cluster, settled by the real controllers and scheduler, inventoried
by the provider and priced by the meter (tests/grading/live.py). The reference solution scores full marks; the
starter and wrong solutions lose exactly the checks they should, and those checks' feedback names the offending
resources. The cases are prepared up front by a module fixture: one chain per lab, the chains in parallel.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from kubernetes import client

from labctl.catalog.models import Lab
from labctl.grading.checks import Grade
from labctl.grading.runner import grade
from labctl.grading.snapshot import Snapshot, snapshot_dict
from labctl.settings import REPO_ROOT
from tests.grading import live

Json = dict[str, Any]
SPOT_TOLERATION = {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


@cache
def labs() -> dict[str, Lab]:
    return live.catalog()


def graded(lab_id: str, snapshot: Snapshot | Json) -> Grade:
    return grade(labs()[lab_id], snapshot, live.GRADERS_DIR, REPO_ROOT)


def by_key(result: Grade) -> dict[tuple[str, str], Any]:
    return {(c.grader, c.id): c for c in result.checks}


# --- the reference solutions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lab_id", sorted(labs()))
def test_fixture_is_what_the_product_makes_of_the_stored_inventory(lab_id: str) -> None:
    """The stored snapshot is the producer and meter applied to the stored apiserver answers (refresh both with
    `python -m tests.grading.live`)."""
    assert live.load_fixture(lab_id) == snapshot_dict(live.solution_snapshot(labs()[lab_id]))


@pytest.mark.parametrize("lab_id", sorted(labs()))
def test_reference_solution_scores_full_marks_quickly(lab_id: str) -> None:
    started = time.monotonic()
    result = graded(lab_id, live.load_fixture(lab_id))
    elapsed = time.monotonic() - started
    failed = [f"{c.grader}/{c.id}: {c.feedback}" for c in result.checks if not c.passed]
    assert not failed
    assert result.score == result.max_score == labs()[lab_id].max_score
    assert result.passed
    assert {g.grader for g in result.graders} == {g.id for g in labs()[lab_id].graders}
    assert elapsed < 2.0, f"grading {lab_id} took {elapsed:.2f}s"


# --- wrong solutions ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A wrong solution: the manifests the learner left, the checks it fails (with their score when it is exact) and
    the names feedback must hold. ``change`` edits the product's snapshot where the cluster cannot (the ledger);
    ``may_fail`` are checks whose verdict depends on where the real scheduler put pods the manifests do not pin."""

    name: str
    docs: Callable[[Lab], list[Json]]
    fails: dict[tuple[str, str], float | None]
    names: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    change: Callable[[Snapshot], Snapshot] | None = None
    may_fail: tuple[tuple[str, str], ...] = ()


def _set_template_labels(change: Callable[[dict[str, str]], None]) -> Callable[[Json], None]:
    def apply(doc: Json) -> None:
        change(live.pod_template(doc)["metadata"]["labels"])
    return apply


def _spec(doc: Json) -> Json:
    spec: Json = live.pod_template(doc)["spec"]
    return spec


STARTER = live.starter_docs
SOLUTION = live.solution_docs


# tag-for-showback

TAG_WORKLOADS = ("Deployment/web-frontend", "Deployment/recommender-api", "Deployment/model-cache",
                 "CronJob/feature-store-sync")
POD_LABELS = ("pod-label-coverage", "label-coverage")
WORKLOAD_LABELS = ("workload-label-coverage", "label-coverage")
OWNERS = ("owner-values", "label-coverage")


def _drop_cost_labels(labels: dict[str, str]) -> None:
    for key in ("team", "cost-center", "env"):
        labels.pop(key)


def _labels_on_workloads_only(lab: Lab) -> list[Json]:
    docs = live.solution_docs(lab)
    for ref in TAG_WORKLOADS:
        docs = live.edit(docs, ref, _set_template_labels(_drop_cost_labels))
    return docs


def _placeholder_on_recommender_pods(lab: Lab) -> list[Json]:
    docs = live.edit(live.solution_docs(lab), "Deployment/recommender-api",
                      _set_template_labels(lambda labels: labels.update(team="TBD")))
    return docs


def _cronjob_deleted(lab: Lab) -> list[Json]:
    return live.without(live.solution_docs(lab), "CronJob/feature-store-sync")


def _wrong_owner(lab: Lab) -> list[Json]:
    def swap(doc: Json) -> None:
        doc["metadata"]["labels"]["team"] = "storefront"
        live.pod_template(doc)["metadata"]["labels"]["team"] = "storefront"
    return live.edit(live.solution_docs(lab), "Deployment/model-cache", swap)


def _over_budget(snapshot: Snapshot) -> Snapshot:
    return snapshot.model_copy(update={"cost": snapshot.cost.model_copy(update={"accrued_usd": 2.5})})


TAG_CASES = [
    Case("starter", STARTER, {POD_LABELS: 0.0, WORKLOAD_LABELS: 0.25, OWNERS: 0.0},
         {POD_LABELS: TAG_WORKLOADS, WORKLOAD_LABELS: TAG_WORKLOADS[1:], OWNERS: TAG_WORKLOADS}),
    Case("labels on the workloads, not their pods", _labels_on_workloads_only, {POD_LABELS: 0.0, OWNERS: 0.0},
         {POD_LABELS: TAG_WORKLOADS, OWNERS: TAG_WORKLOADS}),
    Case("placeholder on one pod template", _placeholder_on_recommender_pods, {POD_LABELS: 0.75, OWNERS: 0.75},
         {POD_LABELS: ("Deployment/recommender-api", "placeholder team='TBD'"),
          OWNERS: ("Deployment/recommender-api",)}),
    Case("a workload deleted instead of labelled", _cronjob_deleted,
         {POD_LABELS: 0.75, WORKLOAD_LABELS: 0.75, OWNERS: 0.75},
         {POD_LABELS: ("CronJob/feature-store-sync", "deleted"), WORKLOAD_LABELS: ("CronJob/feature-store-sync",),
          OWNERS: ("CronJob/feature-store-sync",)}),
    Case("wrong owner", _wrong_owner, {OWNERS: 0.75}, {OWNERS: ("Deployment/model-cache", "expected ml-platform")}),
    Case("over budget", SOLUTION, {("within-budget", "spend"): 0.75}, {("within-budget", "spend"): ("$2.50",)},
         change=_over_budget),
]

# move-batch-to-spot

SPOT_SHARE = ("on-spot", "spot-share")
SPOT_READY = ("on-spot", "spot-ready")
THUMBNAILER = ("interruption-tolerant", "Deployment/thumbnailer")
BACKFILL = ("interruption-tolerant", "Job/embeddings-backfill")
CHEAPER = ("cheaper-per-hour", "burn-rate")
BATCH = ("Job/embeddings-backfill", "Deployment/thumbnailer")


def _moved_only(lab: Lab) -> list[Json]:
    def to_spot(doc: Json) -> None:
        _spec(doc)["nodeSelector"] = {"karpenter.sh/capacity-type": "spot"}
        _spec(doc)["tolerations"] = [dict(SPOT_TOLERATION)]
    docs = live.edit(live.edit(live.starter_docs(lab), BATCH[0], to_spot), BATCH[1], to_spot)
    return docs


def _toleration_without_selector(lab: Lab) -> list[Json]:
    docs = live.solution_docs(lab)
    for ref in BATCH:
        docs = live.edit(docs, ref, lambda doc: _spec(doc).pop("nodeSelector"))
    return docs


def _one_thumbnailer(lab: Lab) -> list[Json]:
    docs = live.edit(live.solution_docs(lab), "Deployment/thumbnailer", lambda d: d["spec"].update(replicas=1))
    return docs


def _pdb_blocks_drains(lab: Lab) -> list[Json]:
    docs = live.edit(live.solution_docs(lab), "PodDisruptionBudget/thumbnailer",
                      lambda d: d["spec"].update(minAvailable=2))
    return docs


SPOT_CASES = [
    Case("starter", STARTER, {SPOT_SHARE: 0.0, SPOT_READY: 0.0, THUMBNAILER: 0.5, BACKFILL: 0.0,
                                         CHEAPER: 0.0},
         {SPOT_SHARE: BATCH, SPOT_READY: BATCH, THUMBNAILER: ("PodDisruptionBudget",), BACKFILL: ("backoffLimit 0",)}),
    Case("on spot, not ready for interruptions", _moved_only, {THUMBNAILER: 0.5, BACKFILL: 0.0},
         {THUMBNAILER: ("Deployment/thumbnailer",), BACKFILL: ("Job/embeddings-backfill",)}),
    # Nothing pins these pods: the real scheduler spreads them over spot and on-demand nodes as it sees fit.
    Case("toleration but no spot selector", _toleration_without_selector, {SPOT_READY: 0.5},
         {SPOT_READY: (*BATCH, "no node selector")}, may_fail=(SPOT_SHARE, CHEAPER)),
    Case("one thumbnailer replica", _one_thumbnailer, {THUMBNAILER: 0.0},
         {THUMBNAILER: ("Deployment/thumbnailer", "1 replicas")}),
    Case("a PDB that blocks every drain", _pdb_blocks_drains, {THUMBNAILER: 0.5},
         {THUMBNAILER: ("PodDisruptionBudget/thumbnailer keeps 2 of 2",)}),
]

# gpu-rightsizing

GPU_SIZE = ("gpu-right-size", "gpu-size:Deployment/llm-inference")
GPU_SHARE = ("gpu-on-spot", "spot-share")
GPU_READY = ("gpu-on-spot", "spot-ready")
GPU_REPLICAS = ("gpu-on-spot", "replicas")
CPU_SIZE = ("cpu-memory-right-size", "right-size:Deployment/llm-inference")
GPU_BURN = ("within-budget", "burn-rate")
LLM = "Deployment/llm-inference"


def _gpu_variant(change: Callable[[Json], None]) -> Callable[[Lab], list[Json]]:
    def build(lab: Lab) -> list[Json]:
        docs = live.edit(live.solution_docs(lab), LLM, change)
        return docs
    return build


def _two_g_slice(doc: Json) -> None:
    limits = _spec(doc)["containers"][0]["resources"]["limits"]
    del limits["nvidia.com/mig-1g.10gb"]
    limits["nvidia.com/mig-2g.20gb"] = 1


def _one_replica(doc: Json) -> None:
    doc["spec"]["replicas"] = 1


def _node_sized_requests(doc: Json) -> None:
    resources = _spec(doc)["containers"][0]["resources"]
    resources["requests"] = {"cpu": "8", "memory": "64Gi"}
    resources["limits"].update(cpu="8", memory="64Gi")


def _without_spot_toleration(lab: Lab) -> list[Json]:
    """Spot selector, no spot toleration: no pod reaches a spot node, so the snapshot holds none (the taint to
    tolerate comes from lab.yaml's ``spot_taint``, not from the snapshot's spot nodes)."""
    def drop(doc: Json) -> None:
        _spec(doc)["tolerations"] = [t for t in _spec(doc)["tolerations"] if t["key"] != SPOT_TOLERATION["key"]]
    docs = live.edit(live.solution_docs(lab), LLM, drop)
    return docs


GPU_CASES = [
    Case("starter", STARTER, {GPU_SIZE: 0.0, GPU_SHARE: 0.0, GPU_READY: 0.0, CPU_SIZE: 0.0, GPU_BURN: 0.0},
         {GPU_SIZE: (LLM, "1g.10gb"), GPU_SHARE: (LLM,), GPU_READY: (LLM,), CPU_SIZE: (LLM, "8000m", "65536Mi")}),
    Case("a 2g.20gb slice", _gpu_variant(_two_g_slice), {GPU_SIZE: 0.5}, {GPU_SIZE: (LLM, "2g.20gb")}),
    Case("one replica", _gpu_variant(_one_replica), {GPU_REPLICAS: 0.0}, {GPU_REPLICAS: (LLM,)}),
    # The meter splits the node price OpenCost's way: 8 cores and 64 GiB beside a 1g.10gb slice stay under the
    # burn-rate target, so only the rightsizing check fails.
    Case("requests still sized to the node", _gpu_variant(_node_sized_requests), {CPU_SIZE: 0.0},
         {CPU_SIZE: (LLM, "cpu request 8000m", "memory request 65536Mi")}),
    # Nothing runs (every pod waits for a node it may not use), so nothing is measured: not rightsized either.
    Case("no spot toleration", _without_spot_toleration, {GPU_SHARE: 0.0, GPU_READY: 0.5, GPU_SIZE: 0.0,
                                                          CPU_SIZE: 0.0},
         {GPU_SHARE: (LLM,), GPU_READY: (LLM, "cloud.google.com/gke-spot=true:NoSchedule"),
          GPU_SIZE: (LLM, "is running (2 Pending)"), CPU_SIZE: (LLM, "no use is measured")}),
]

# idle-hunter

IDLE = ("idle-and-orphans", "idle-workloads")
ORPHANS = ("idle-and-orphans", "orphans")
KEPT = ("idle-and-orphans", "kept-workloads")
SCHEDULE = ("off-hours-schedule", "schedule:Deployment/orders-worker")
IDLE_SHARE = ("idle-waste-gone", "idle-share")
WORKER = "Deployment/orders-worker"


def _everything_deleted(lab: Lab) -> list[Json]:
    return []


def _orphans_left(lab: Lab) -> list[Json]:
    orphans = [d for d in live.starter_docs(lab) if d["kind"] in ("PersistentVolumeClaim", "Service")]
    return live.solution_docs(lab) + orphans


def _annotated(value: str) -> Callable[[Lab], list[Json]]:
    def build(lab: Lab) -> list[Json]:
        docs = live.edit(live.solution_docs(lab), WORKER,
                          lambda d: d["metadata"]["annotations"].update({"labctl.dev/off-hours": value}))
        return docs
    return build


def _scaler(name: str, schedule: str, replicas: int) -> Json:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"schedule": schedule, "timeZone": "Europe/Berlin", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"restartPolicy": "Never", "serviceAccountName": "scaler", "containers": [{
                    "name": "kubectl", "image": "registry.k8s.io/kubectl:v1.36.3",
                    "command": ["kubectl", "scale", "deployment/orders-worker", f"--replicas={replicas}"],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}}}}}}


def _scaler_cronjobs(down: str, up: str) -> Callable[[Lab], list[Json]]:
    def build(lab: Lab) -> list[Json]:
        docs = live.edit(live.solution_docs(lab), WORKER, lambda d: d["metadata"].pop("annotations"))
        return [*docs, _scaler("worker-evening", down, 0), _scaler("worker-morning", up, 2)]
    return build


def _worker_scaled_down(lab: Lab) -> list[Json]:
    docs = live.edit(live.solution_docs(lab), WORKER, lambda d: d["spec"].update(replicas=1))
    return docs


IDLE_CASES = [
    Case("starter", STARTER, {IDLE: 0.0, ORPHANS: 0.0, SCHEDULE: 0.0, IDLE_SHARE: None},
         {IDLE: ("Deployment/legacy-dashboard",), ORPHANS: ("PersistentVolumeClaim/scratch-data", "Service/old-demo"),
          SCHEDULE: (WORKER,), IDLE_SHARE: ("Pod/legacy-dashboard-", "PersistentVolumeClaim/scratch-data")}),
    Case("everything deleted, the busy worker too", _everything_deleted, {KEPT: 0.0, SCHEDULE: 0.0},
         {KEPT: (WORKER, "deleted"), SCHEDULE: (WORKER,)}),
    Case("orphans left behind", _orphans_left, {ORPHANS: 0.0, IDLE_SHARE: None},
         {ORPHANS: ("PersistentVolumeClaim/scratch-data", "Service/old-demo"), IDLE_SHARE: ("Service/old-demo",)}),
    Case("busy worker scaled down", _worker_scaled_down, {KEPT: 0.0}, {KEPT: (WORKER, "1 replicas")}),
    Case("a window too long", _annotated("Daily 06:00-22:00 Europe/Berlin"), {SCHEDULE: 0.5},
         {SCHEDULE: (WORKER, "112 hours", "more than 70")}),
    Case("an annotation that is not a window", _annotated("weekdays 09:00-17:00 Europe/Berlin"), {SCHEDULE: 0.0},
         {SCHEDULE: (WORKER, "unknown day 'weekdays'")}),
    Case("scaler CronJobs running around the clock on weekdays", _scaler_cronjobs("59 23 * * 1-5", "0 0 * * 1-5"),
         {SCHEDULE: 0.5}, {SCHEDULE: (WORKER, "CronJob/worker-evening", "more than 70")}),
]

CASES = [("tag-for-showback", c) for c in TAG_CASES] + [("move-batch-to-spot", c) for c in SPOT_CASES] + \
    [("gpu-rightsizing", c) for c in GPU_CASES] + [("idle-hunter", c) for c in IDLE_CASES]


SCALERS = Case("scaler CronJobs", _scaler_cronjobs("0 18 * * 1-5", "0 8 * * 1-5"), {})
RUNS: dict[str, list[tuple[str, Callable[[Lab], list[Json]]]]] = {
    lab: [("solution", SOLUTION), *((c.name, c.docs) for lab_of, c in CASES if lab_of == lab)]
    for lab in sorted(labs())}  # the labs without cases here have their wrong solutions in tests/labs
RUNS["idle-hunter"].append((SCALERS.name, SCALERS.docs))


@dataclass
class Taken:
    """What the live cluster gave for each (lab, run): the provider's inventory and the product's priced snapshot."""

    inventories: dict[tuple[str, str], live.Inventory]
    snapshots: dict[tuple[str, str], Snapshot]


@pytest.fixture(scope="module")
def taken(kube: client.ApiClient) -> Iterator[Taken]:
    """Every run applied to the live cluster: one chain per lab (the GPU lab's A100s are few), chains in parallel."""
    def chain(lab_id: str) -> Taken:
        lab = labs()[lab_id]
        starter = live.collect(kube, lab, live.starter_docs(lab), prefix=f"g-{lab_id}")
        burn = live.priced(lab, starter).cost.burn_rate_usd_per_hour
        result = Taken({}, {})
        for name, docs in RUNS[lab_id]:
            inv = starter if docs is STARTER else live.collect(kube, lab, docs(lab), prefix=f"g-{lab_id}")
            result.inventories[(lab_id, name)] = inv
            result.snapshots[(lab_id, name)] = live.priced(lab, inv, starter_burn=burn)
        return result
    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        chains = [pool.submit(chain, lab_id) for lab_id in RUNS]
        done = [c.result() for c in chains]
    yield Taken({k: v for t in done for k, v in t.inventories.items()},
                {k: v for t in done for k, v in t.snapshots.items()})


def _templates(inv: live.Inventory) -> dict[str, Any]:
    """What the manifests decide in an inventory: each workload's pod template, and the other objects' names."""
    out: dict[str, Any] = {}
    for obj in inv.workloads:
        if obj["metadata"].get("ownerReferences"):
            continue  # ReplicaSets and Jobs the controllers made
        template = copy.deepcopy(live.pod_template(obj))
        labels = (template.get("metadata") or {}).get("labels") or {}
        for key in [k for k in labels if k.endswith("controller-uid")]:  # a Job's uid, new on every apply
            del labels[key]
        out[f"{obj['kind']}/{obj['metadata']['name']}"] = template
    for obj in [*inv.pvcs, *inv.services, *inv.pdbs]:
        out[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["kind"]
    return out


@pytest.mark.cluster
@pytest.mark.parametrize("lab_id", sorted(labs()))
def test_live_reference_solution_scores_full_marks_and_matches_the_stored_inventory(lab_id: str,
                                                                                     taken: Taken) -> None:
    result = graded(lab_id, taken.snapshots[(lab_id, "solution")])
    assert [f"{c.grader}/{c.id}: {c.feedback}" for c in result.checks if not c.passed] == []
    stored = live.load_inventories(lab_id)["solution"]
    assert _templates(taken.inventories[(lab_id, "solution")]) == _templates(stored), \
        "the solution manifests changed: refresh the fixtures with `python -m tests.grading.live`"


@pytest.mark.cluster
@pytest.mark.parametrize(("lab_id", "case"), CASES, ids=[f"{lab}: {case.name}" for lab, case in CASES])
def test_wrong_solution_loses_exactly_its_checks(lab_id: str, case: Case, taken: Taken) -> None:
    snapshot = taken.snapshots[(lab_id, case.name)]
    result = graded(lab_id, case.change(snapshot) if case.change else snapshot)
    checks = by_key(result)
    assert set(case.fails) <= set(checks), f"expected checks missing: {set(case.fails) - set(checks)}"
    failed = {key for key, c in checks.items() if not c.passed} - set(case.may_fail)
    assert failed == set(case.fails), "\n".join(f"{k}: {checks[k].feedback}" for k in failed ^ set(case.fails))
    assert all(c.status != "error" for c in result.checks)
    for key, score in case.fails.items():
        if score is not None:
            assert checks[key].score == pytest.approx(score), checks[key].feedback
        else:
            assert checks[key].score < 1
        assert checks[key].evidence, f"{key} failed without evidence"
    for key, needles in case.names.items():
        for needle in needles:
            assert needle in checks[key].feedback, f"{key}: {needle!r} not in {checks[key].feedback!r}"
    assert result.score < result.max_score


@pytest.mark.cluster
def test_scaler_cronjobs_are_a_working_schedule(taken: Taken) -> None:
    """The README's other way: CronJobs that scale the worker to 0 in the evening and back in the morning."""
    result = graded("idle-hunter", taken.snapshots[("idle-hunter", SCALERS.name)])
    schedule = by_key(result)[SCHEDULE]
    assert schedule.passed, schedule.feedback
    assert "50 hours a week" in schedule.feedback
    assert result.score == result.max_score
