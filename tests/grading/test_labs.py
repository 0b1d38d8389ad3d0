"""Each shipped lab graded end to end through real grader subprocesses, with the lab's own lab.yaml parameters.

The reference solution (stored fixture, kept equal to the solution manifests) scores full marks; the starter and
wrong solutions (edited copies of the lab's manifests, placed the way the scheduler would place them) lose exactly
the checks they should, and those checks' feedback names the offending resources.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from labctl.catalog.models import Lab
from labctl.grading.checks import Grade
from labctl.grading.runner import grade
from labctl.settings import REPO_ROOT
from tests.grading import world

Json = dict[str, Any]
SPOT_TOLERATION = {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


@cache
def labs() -> dict[str, Lab]:
    return world.catalog()


def graded(lab_id: str, snapshot: Json) -> Grade:
    return grade(labs()[lab_id], snapshot, world.GRADERS_DIR, REPO_ROOT)


def by_key(result: Grade) -> dict[tuple[str, str], Any]:
    return {(c.grader, c.id): c for c in result.checks}


# --- the reference solutions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lab_id", sorted(labs()))
def test_fixture_is_the_solution_manifests(lab_id: str) -> None:
    """The stored fixture is what the solution manifests build (run `python -m tests.grading.world` to refresh)."""
    assert world.load_fixture(lab_id) == world.solution_snapshot(labs()[lab_id])


@pytest.mark.parametrize("lab_id", sorted(labs()))
def test_reference_solution_scores_full_marks_quickly(lab_id: str) -> None:
    started = time.monotonic()
    result = graded(lab_id, world.load_fixture(lab_id))
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
    """A wrong solution: the checks it fails (with their score when it is exact) and the names feedback must hold."""

    name: str
    snapshot: Callable[[Lab], Json]
    fails: dict[tuple[str, str], float | None]
    names: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


def _set_template_labels(change: Callable[[dict[str, str]], None]) -> Callable[[Json], None]:
    def apply(doc: Json) -> None:
        change(world.pod_template(doc)["metadata"]["labels"])
    return apply


def _spec(doc: Json) -> Json:
    spec: Json = world.pod_template(doc)["spec"]
    return spec


def _starter_with_burn(lab: Lab) -> Json:
    snapshot = world.starter_snapshot(lab)
    snapshot["budget"]["starter_burn_rate_usd_per_hour"] = snapshot["cost"]["burn_rate_usd_per_hour"]
    return snapshot


def _solution(lab: Lab, docs: list[Json], placement: world.Placement | None = None) -> Json:
    chosen = world.SOLUTION_PLACEMENT[lab.id] if placement is None else placement
    return world.build(lab, docs, chosen, starter_burn=world.starter_burn(lab))


# tag-for-showback

TAG_WORKLOADS = ("Deployment/web-frontend", "Deployment/recommender-api", "Deployment/model-cache",
                 "CronJob/feature-store-sync")
POD_LABELS = ("pod-label-coverage", "label-coverage")
WORKLOAD_LABELS = ("workload-label-coverage", "label-coverage")
OWNERS = ("owner-values", "label-coverage")


def _drop_cost_labels(labels: dict[str, str]) -> None:
    for key in ("team", "cost-center", "env"):
        labels.pop(key)


def _labels_on_workloads_only(lab: Lab) -> Json:
    docs = world.solution_docs(lab)
    for ref in TAG_WORKLOADS:
        docs = world.edit(docs, ref, _set_template_labels(_drop_cost_labels))
    return _solution(lab, docs)


def _placeholder_on_recommender_pods(lab: Lab) -> Json:
    docs = world.edit(world.solution_docs(lab), "Deployment/recommender-api",
                      _set_template_labels(lambda labels: labels.update(team="TBD")))
    return _solution(lab, docs)


def _cronjob_deleted(lab: Lab) -> Json:
    placement = {k: v for k, v in world.SOLUTION_PLACEMENT[lab.id].items() if not k.startswith("CronJob/")}
    return _solution(lab, world.without(world.solution_docs(lab), "CronJob/feature-store-sync"), placement)


def _wrong_owner(lab: Lab) -> Json:
    def swap(doc: Json) -> None:
        doc["metadata"]["labels"]["team"] = "storefront"
        world.pod_template(doc)["metadata"]["labels"]["team"] = "storefront"
    return _solution(lab, world.edit(world.solution_docs(lab), "Deployment/model-cache", swap))


def _over_budget(lab: Lab) -> Json:
    snapshot = world.load_fixture(lab.id)
    snapshot["cost"]["accrued_usd"] = 2.5
    return snapshot


TAG_CASES = [
    Case("starter", _starter_with_burn, {POD_LABELS: 0.0, WORKLOAD_LABELS: 0.25, OWNERS: 0.0},
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
    Case("over budget", _over_budget, {("within-budget", "spend"): 0.75}, {("within-budget", "spend"): ("$2.50",)}),
]

# move-batch-to-spot

SPOT_SHARE = ("on-spot", "spot-share")
SPOT_READY = ("on-spot", "spot-ready")
THUMBNAILER = ("interruption-tolerant", "Deployment/thumbnailer")
BACKFILL = ("interruption-tolerant", "Job/embeddings-backfill")
CHEAPER = ("cheaper-per-hour", "burn-rate")
BATCH = ("Job/embeddings-backfill", "Deployment/thumbnailer")


def _moved_only(lab: Lab) -> Json:
    def to_spot(doc: Json) -> None:
        _spec(doc)["nodeSelector"] = {"karpenter.sh/capacity-type": "spot"}
        _spec(doc)["tolerations"] = [dict(SPOT_TOLERATION)]
    docs = world.edit(world.edit(world.starter_docs(lab), BATCH[0], to_spot), BATCH[1], to_spot)
    return _solution(lab, docs)


def _toleration_without_selector(lab: Lab) -> Json:
    docs = world.solution_docs(lab)
    for ref in BATCH:
        docs = world.edit(docs, ref, lambda doc: _spec(doc).pop("nodeSelector"))
    return _solution(lab, docs)


def _one_thumbnailer(lab: Lab) -> Json:
    docs = world.edit(world.solution_docs(lab), "Deployment/thumbnailer", lambda d: d["spec"].update(replicas=1))
    placement: world.Placement = {**world.SOLUTION_PLACEMENT[lab.id], "Deployment/thumbnailer": ["cpu-spot-0"]}
    return _solution(lab, docs, placement)


def _pdb_blocks_drains(lab: Lab) -> Json:
    docs = world.edit(world.solution_docs(lab), "PodDisruptionBudget/thumbnailer",
                      lambda d: d["spec"].update(minAvailable=2))
    return _solution(lab, docs)


SPOT_CASES = [
    Case("starter", _starter_with_burn, {SPOT_SHARE: 0.0, SPOT_READY: 0.0, THUMBNAILER: 0.5, BACKFILL: 0.0,
                                         CHEAPER: 0.0},
         {SPOT_SHARE: BATCH, SPOT_READY: BATCH, THUMBNAILER: ("PodDisruptionBudget",), BACKFILL: ("backoffLimit 0",)}),
    Case("on spot, not ready for interruptions", _moved_only, {THUMBNAILER: 0.5, BACKFILL: 0.0},
         {THUMBNAILER: ("Deployment/thumbnailer",), BACKFILL: ("Job/embeddings-backfill",)}),
    Case("toleration but no spot selector", _toleration_without_selector, {SPOT_READY: 0.5},
         {SPOT_READY: (*BATCH, "no node selector")}),
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


def _gpu_variant(change: Callable[[Json], None], replicas: int = 2) -> Callable[[Lab], Json]:
    def build(lab: Lab) -> Json:
        docs = world.edit(world.solution_docs(lab), LLM, change)
        return _solution(lab, docs, {LLM: ["gpu-a100-mig-spot-0"] * replicas})
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


def _without_spot_toleration(lab: Lab) -> Json:
    """Spot selector, no spot toleration: no pod reaches a spot node, so the snapshot holds none (the taint to
    tolerate comes from lab.yaml's ``spot_taint``, not from the snapshot's spot nodes)."""
    def drop(doc: Json) -> None:
        _spec(doc)["tolerations"] = [t for t in _spec(doc)["tolerations"] if t["key"] != SPOT_TOLERATION["key"]]
    docs = world.edit(world.solution_docs(lab), LLM, drop)
    return _solution(lab, docs, {LLM: ["gpu-a100-ondemand-0"] * 2})


GPU_CASES = [
    Case("starter", _starter_with_burn, {GPU_SIZE: 0.0, GPU_SHARE: 0.0, GPU_READY: 0.0, CPU_SIZE: 0.0, GPU_BURN: 0.0},
         {GPU_SIZE: (LLM, "1g.10gb"), GPU_SHARE: (LLM,), GPU_READY: (LLM,), CPU_SIZE: (LLM, "8000m", "65536Mi")}),
    Case("a 2g.20gb slice", _gpu_variant(_two_g_slice), {GPU_SIZE: 0.5}, {GPU_SIZE: (LLM, "2g.20gb")}),
    Case("one replica", _gpu_variant(_one_replica, replicas=1), {GPU_REPLICAS: 0.0}, {GPU_REPLICAS: (LLM,)}),
    Case("requests still sized to the node", _gpu_variant(_node_sized_requests), {CPU_SIZE: 0.0, GPU_BURN: None},
         {CPU_SIZE: (LLM, "cpu request 8000m", "memory request 65536Mi")}),
    Case("no spot toleration", _without_spot_toleration, {GPU_SHARE: 0.0, GPU_READY: 0.5},
         {GPU_SHARE: (LLM,), GPU_READY: (LLM, "cloud.google.com/gke-spot=true:NoSchedule")}),
]

# idle-hunter

IDLE = ("idle-and-orphans", "idle-workloads")
ORPHANS = ("idle-and-orphans", "orphans")
KEPT = ("idle-and-orphans", "kept-workloads")
SCHEDULE = ("off-hours-schedule", "schedule:Deployment/orders-worker")
IDLE_SHARE = ("idle-waste-gone", "idle-share")
WORKER = "Deployment/orders-worker"


def _everything_deleted(lab: Lab) -> Json:
    return _solution(lab, [], {})


def _orphans_left(lab: Lab) -> Json:
    orphans = [d for d in world.starter_docs(lab) if d["kind"] in ("PersistentVolumeClaim", "Service")]
    return _solution(lab, world.solution_docs(lab) + orphans)


def _annotated(value: str) -> Callable[[Lab], Json]:
    def build(lab: Lab) -> Json:
        docs = world.edit(world.solution_docs(lab), WORKER,
                          lambda d: d["metadata"]["annotations"].update({"labctl.dev/off-hours": value}))
        return _solution(lab, docs)
    return build


def _scaler(name: str, schedule: str, replicas: int) -> Json:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"schedule": schedule, "timeZone": "Europe/Berlin", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"restartPolicy": "Never", "serviceAccountName": "scaler", "containers": [{
                    "name": "kubectl", "image": "registry.k8s.io/kubectl:v1.36.3",
                    "command": ["kubectl", "scale", "deployment/orders-worker", f"--replicas={replicas}"],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}}}}}}


def _scaler_cronjobs(down: str, up: str) -> Callable[[Lab], Json]:
    def build(lab: Lab) -> Json:
        docs = world.edit(world.solution_docs(lab), WORKER, lambda d: d["metadata"].pop("annotations"))
        return _solution(lab, [*docs, _scaler("worker-evening", down, 0), _scaler("worker-morning", up, 2)])
    return build


def _worker_scaled_down(lab: Lab) -> Json:
    docs = world.edit(world.solution_docs(lab), WORKER, lambda d: d["spec"].update(replicas=1))
    return _solution(lab, docs, {WORKER: ["cpu-ondemand-0"]})


IDLE_CASES = [
    Case("starter", _starter_with_burn, {IDLE: 0.0, ORPHANS: 0.0, SCHEDULE: 0.0, IDLE_SHARE: None},
         {IDLE: ("Deployment/legacy-dashboard",), ORPHANS: ("PersistentVolumeClaim/scratch-data", "Service/old-demo"),
          SCHEDULE: (WORKER,), IDLE_SHARE: ("PersistentVolumeClaim/scratch-data", "Service/old-demo")}),
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


@pytest.mark.parametrize(("lab_id", "case"), CASES, ids=[f"{lab}: {case.name}" for lab, case in CASES])
def test_wrong_solution_loses_exactly_its_checks(lab_id: str, case: Case) -> None:
    result = graded(lab_id, case.snapshot(labs()[lab_id]))
    checks = by_key(result)
    assert set(case.fails) <= set(checks), f"expected checks missing: {set(case.fails) - set(checks)}"
    failed = {key for key, c in checks.items() if not c.passed}
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


def test_scaler_cronjobs_are_a_working_schedule() -> None:
    """The README's other way: CronJobs that scale the worker to 0 in the evening and back in the morning."""
    lab = labs()["idle-hunter"]
    result = graded(lab.id, _scaler_cronjobs("0 18 * * 1-5", "0 8 * * 1-5")(lab))
    schedule = by_key(result)[SCHEDULE]
    assert schedule.passed, schedule.feedback
    assert "50 hours a week" in schedule.feedback
    assert result.score == result.max_score
