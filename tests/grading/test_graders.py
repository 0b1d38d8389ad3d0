"""Table tests of each built-in grader's rules on small synthetic snapshots, run as real subprocesses.

The tables are grader inputs written by hand to reach rules the labs' live snapshots do not (tests/grading/live.py
makes those with the product itself); each one is validated by the snapshot model and handed over in the graders'
JSON form, exactly as the runner does.

The lab tests (test_labs.py) cover each lab's parameters on its own manifests; these cover the rules and parameters
the labs do not exercise: other scopes and platforms, affinity instead of selectors, percentages in
PodDisruptionBudgets, computed MIG sizes, default bands, cron arithmetic, invalid parameters.
"""

from __future__ import annotations

from typing import Any

import pytest

from labctl.grading.checks import Check
from labctl.grading.runner import run_grader
from labctl.grading.snapshot import Snapshot, snapshot_dict
from tests.grading import live

Json = dict[str, Any]
GIB = 2**30
MIB = 2**20
SPOT_TAINT = {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}
NODES = [
    {"name": "od-0", "instance_type": "m5.xlarge", "capacity_type": "on-demand", "zone": "z", "region": "r",
     "labels": {"karpenter.sh/capacity-type": "on-demand"}, "hourly_usd": 0.192, "on_demand_hourly_usd": 0.192,
     "price_source": "sheet"},
    {"name": "spot-0", "instance_type": "m5.xlarge", "capacity_type": "spot", "zone": "z", "region": "r",
     "labels": {"karpenter.sh/capacity-type": "spot", "cloud.google.com/gke-spot": "true"}, "taints": [SPOT_TAINT],
     "hourly_usd": 0.0672, "on_demand_hourly_usd": 0.192, "price_source": "sheet"},
    {"name": "a100-40", "instance_type": "p4d.24xlarge", "capacity_type": "on-demand", "zone": "z", "region": "r",
     "labels": {"nvidia.com/gpu.memory": "40960"}, "hourly_usd": 21.957642, "on_demand_hourly_usd": 21.957642,
     "price_source": "sheet"},
]


def snap(*resources: Json, provider: str = "kubernetes", budget: Json | None = None, cost: Json | None = None) -> Json:
    return {"schema": "labctl.snapshot/v1",
            "session": {"id": "s", "lab_id": "x", "learner_id": "ada", "provider": provider,
                        "started_at": "2026-07-20T08:00:00Z", "taken_at": "2026-07-20T10:00:00Z"},
            "budget": budget or {"budget_usd": 10},
            "cost": cost or {"accrued_usd": 1, "burn_rate_usd_per_hour": 1, "usage_source": "metrics"},
            "nodes": NODES, "resources": list(resources)}


def deployment(name: str, *, labels: dict[str, str] | None = None, template: dict[str, str] | None = None,
               replicas: int = 2, **fields: Any) -> Json:
    return {"kind": "Deployment", "name": name, "labels": labels or {}, "replicas": replicas,
            "pod_template_labels": {"app": name, **(template or {})}, "selector": {"matchLabels": {"app": name}},
            **fields}


def pod(name: str, controller: str | None = None, *, node: str = "od-0", phase: str = "Running",
        cpu_use: float | None = None, hours: float = 1.0, **fields: Any) -> Json:
    kind, _, owner = (controller or "").partition("/")
    usage = {"usage": {"cpu": cpu_use}} if cpu_use is not None else {}
    base: Json = {"kind": "Pod", "name": name, "labels": {"app": owner or name}, "node": node, "phase": phase,
                  "running_hours": hours, "hourly_usd": 0.01, "cost_usd": 0.01 * hours,
                  "containers": [{"name": "c", "requests": {"cpu": 0.1}, **usage}]}
    if controller:
        base["controller"] = {"kind": kind, "name": owner}
    return {**base, **fields}


def run(script: str, snapshot: Json, params: Json) -> list[Check]:
    data = snapshot_dict(Snapshot.model_validate(snapshot))  # what the runner hands a grader
    return run_grader(live.GRADERS_DIR / script, data, params, grader_id=script.removesuffix(".py"))


def only(checks: list[Check]) -> Check:
    assert len(checks) == 1, [c.id for c in checks]
    return checks[0]


OWNED = {"team": "ml", "cost-center": "cc-1", "env": "prod"}
REQUIRED = {"required_labels": ["team", "cost-center", "env"]}

# --- tag coverage ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("resources", "params", "score", "in_feedback"), [
    # cost_bearing: pods judged by their Deployment's template, a claim and a LoadBalancer by their own labels,
    # ClusterIP Services cost nothing and do not count; 2 labelled pods + 1 claim of 2 + 1 + 1 + 1 units.
    ([deployment("web", template=OWNED), pod("web-1", "Deployment/web"), pod("web-2", "Deployment/web"),
      {"kind": "PersistentVolumeClaim", "name": "data", "labels": OWNED, "storage": GIB},
      {"kind": "Service", "name": "lb", "service_type": "LoadBalancer", "labels": {"team": "ml"}},
      {"kind": "Service", "name": "internal", "service_type": "ClusterIP"},
      pod("bare", labels={"team": "x", "cost-center": "cc-1", "env": "prod"})],
     REQUIRED | {"placeholders": ["x"]}, 3 / 5, ["Service/lb (own labels lack cost-center, env)", "Pod/bare"]),
    # by cost: the labelled pods carry 0.02 of 0.03
    ([deployment("web", template=OWNED), pod("web-1", "Deployment/web"), pod("web-2", "Deployment/web"),
      pod("bare")], REQUIRED | {"weight_by": "cost"}, 2 / 3, ["Coverage 67 % of cost"]),
    # syntax: a Kubernetes label value cannot hold a space; case matters when asked to
    ([deployment("a", template={**OWNED, "team": "ml team"}), deployment("b", template={**OWNED, "team": "TBD"})],
     REQUIRED | {"scope": "pod_templates", "placeholders": ["tbd"], "case_insensitive": False}, 0.5,
     ["Deployment/a (pod template has invalid team='ml team')"]),
    # a Job created by a CronJob is judged through the CronJob
    ([{"kind": "CronJob", "name": "sync", "labels": OWNED, "pod_template_labels": OWNED, "schedule": "@daily"},
      {"kind": "Job", "name": "sync-1", "controller": {"kind": "CronJob", "name": "sync"}, "pod_template_labels": {}}],
     REQUIRED | {"scope": "workloads_and_pod_templates"}, 1.0, ["All 1 workloads"]),
    # nothing to judge is not coverage
    ([], REQUIRED | {"scope": "pod_templates"}, 0.0, ["Found no pod templates to judge"]),
    ([], REQUIRED | {"scope": "pod_templates", "min_resources": 0}, 1.0, ["There are no pod templates to label"]),
])
def test_tag_coverage(resources: list[Json], params: Json, score: float, in_feedback: list[str]) -> None:
    check = only(run("tag_coverage.py", snap(*resources), params))
    assert check.status != "error", check.feedback
    assert check.score == pytest.approx(score)
    for needle in in_feedback:
        assert needle in check.feedback


def test_tag_coverage_reads_cloud_tags_by_the_platform_rules() -> None:
    tags = {"team": "ML Platform", "cost-center": "cc:1001", "env": "prod"}
    instance = {"kind": "Instance", "name": "i-0abc", "labels": tags, "instance_type": "g5.xlarge",
                "capacity_type": "spot", "hourly_usd": 0.4}
    assert only(run("tag_coverage.py", snap(instance, provider="aws"), REQUIRED)).passed
    gcp = only(run("tag_coverage.py", snap(instance, provider="gcp"), REQUIRED))
    assert not gcp.passed and "invalid team='ML Platform', invalid cost-center='cc:1001'" in gcp.feedback
    assert "'cc:1001' is not a valid gcp label value" in gcp.evidence[1]["problem"]


def test_invalid_parameters_are_reported_as_an_error_check() -> None:
    check = only(run("tag_coverage.py", snap(), {"required_labels": ["team"], "scope": "namespaces"}))
    assert (check.id, check.status, check.score) == ("params", "error", 0)
    assert "'scope' must be one of cost_bearing" in check.feedback


# --- spot placement -------------------------------------------------------------------------------------------------

PREFERS_SPOT = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "preference": {
    "matchExpressions": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]}}]}}
TOLERATES_ANY = [{"operator": "Exists"}]


@pytest.mark.parametrize(("resources", "params", "scores"), [
    # preferred affinity targets spot, an empty Exists toleration tolerates every taint (taint read from the node)
    ([deployment("web", affinity=PREFERS_SPOT, tolerations=TOLERATES_ANY), pod("web-1", "Deployment/web",
                                                                               node="spot-0")],
     {"workloads": ["Deployment/web"]}, {"spot-share": 1.0, "spot-ready": 1.0}),
    # node-hours, not pods: 3 h on spot of 4 h; a Pending pod has no node and does not count
    ([deployment("web", node_selector={"karpenter.sh/capacity-type": "spot"}, tolerations=[
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
      pod("web-1", "Deployment/web", node="spot-0", hours=3), pod("web-2", "Deployment/web", hours=1),
      pod("web-3", "Deployment/web", phase="Pending", node="")],
     {"workloads": ["Deployment/web"], "min_spot_share": 0.7}, {"spot-share": 0.75, "spot-ready": 1.0}),
    # a missing workload lowers the share by its part and fails its readiness
    ([deployment("web", affinity=PREFERS_SPOT, tolerations=TOLERATES_ANY),
      pod("web-1", "Deployment/web", node="spot-0")],
     {"workloads": ["Deployment/web", "Deployment/gone"], "min_replicas": 2},
     {"spot-share": 0.5, "spot-ready": 0.5, "replicas": 0.5}),
    # without spot_node_labels the snapshot's capacity_type decides; a wrong toleration value does not tolerate
    ([deployment("web", node_selector={"cloud.google.com/gke-spot": "true"}, tolerations=[
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]),
      pod("web-1", "Deployment/web", node="spot-0")], {}, {"spot-share": 1.0, "spot-ready": 0.5}),
])
def test_spot_placement(resources: list[Json], params: Json, scores: dict[str, float]) -> None:
    checks = {c.id: c for c in run("spot_placement.py", snap(*resources), params)}
    assert {k: pytest.approx(v) for k, v in scores.items()} == {k: checks[k].score for k in scores}
    assert set(checks) == set(scores)


def pdb(**fields: Any) -> Json:
    return {"kind": "PodDisruptionBudget", "name": "web", "selector": {"matchLabels": {"app": "web"}}, **fields}


@pytest.mark.parametrize(("replicas", "budget", "options", "score"), [
    (3, pdb(min_available="50%"), {}, 1.0),             # 50 % of 3 rounds up to 2: one may go
    (2, pdb(min_available="50%"), {}, 1.0),
    (2, pdb(max_unavailable=1), {}, 1.0),
    (2, pdb(max_unavailable="100%"), {}, 0.5),          # keeps nothing up
    (4, pdb(min_available=3), {"pdb_min_available_at_most": 2}, 0.5),
    (2, {**pdb(min_available=1), "selector": {"matchLabels": {"app": "other"}}}, {}, 0.5),
    (1, pdb(min_available=1), {"min_replicas": 1}, 0.5),  # one replica: the PDB blocks every drain
])
def test_interruption_tolerance_of_services(replicas: int, budget: Json, options: Json, score: float) -> None:
    params = {"check": "interruption_tolerance", "deployments": {"web": options}}
    check = only(run("spot_placement.py", snap(deployment("web", replicas=replicas), budget), params))
    assert check.score == pytest.approx(score), check.feedback


@pytest.mark.parametrize(("job", "options", "passed"), [
    ({"backoff_limit": 3}, {}, True),
    ({}, {}, True),                                     # unset: Kubernetes' default 6
    ({"backoff_limit": 0, "pod_failure_policy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}, {}, True),
    ({"backoff_limit": 0, "pod_failure_policy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}},
     {"accept_pod_failure_policy_ignore_disruption": False}, False),
    ({"backoff_limit": 2}, {"min_backoff_limit": 3}, False),
])
def test_interruption_tolerance_of_jobs(job: Json, options: Json, passed: bool) -> None:
    params = {"check": "interruption_tolerance", "jobs": {"backfill": options}}
    check = only(run("spot_placement.py", snap({"kind": "Job", "name": "backfill", **job}), params))
    assert check.passed is passed, check.feedback


# --- GPU rightsizing ------------------------------------------------------------------------------------------------


def gpu_workload(limits: dict[str, float], engine: float, memory_mib: float, *, pods: int = 1,
                 pod_limits: dict[str, float] | None = None, node: str = "a100-40") -> list[Json]:
    usage = {"gpu_engine_active": engine, "gpu_memory_mib": memory_mib, "cpu": 0.5}
    workload = deployment("llm", containers=[{"name": "s", "limits": limits}])
    return [workload, *(pod(f"llm-{i}", "Deployment/llm", node=node, containers=[
        {"name": "s", "limits": pod_limits or limits, "usage": usage}]) for i in range(pods))]


# Engine-active is DCGM's, per GPU or MIG slice: 0.7 of a 1g slice is 0.1 of the whole GPU, 0.35 of a 2g one too.
@pytest.mark.parametrize(("resources", "params", "score", "in_feedback"), [
    # 40 GB device from the node label: 3000 MiB x 1.2 fits 1g.5gb, which is the right size
    (gpu_workload({"nvidia.com/mig-1g.5gb": 1}, 0.7, 3000), {}, 1.0, ["the right size is one 1g.5gb MIG slice"]),
    # a larger adequate slice earns the cost-share ratio: 1g.5gb max(1/7, 5/40) over 2g.10gb max(2/7, 10/40) = 0.5
    (gpu_workload({"nvidia.com/mig-2g.10gb": 1}, 0.35, 3000), {}, 0.5, ["larger than needed"]),
    # too small: 5 GB < 6000 x 1.2 MiB
    (gpu_workload({"nvidia.com/mig-1g.5gb": 1}, 0.7, 6000), {}, 0.0, ["does not fit its use", "1g.10gb"]),
    # the same use on a whole GPU: 0.1 of its engines, so a 1g.5gb slice fits and the whole GPU is waste
    (gpu_workload({"nvidia.com/gpu": 1}, 0.1, 3000), {}, 0.0, ["while a MIG slice fits", "one 1g.5gb MIG slice"]),
    # memory-bound: a whole GPU is right
    (gpu_workload({"nvidia.com/gpu": 1}, 0.2, 39000), {}, 1.0, ["the right size is whole GPU"]),
    # idle whole GPU
    (gpu_workload({"nvidia.com/gpu": 1}, 0.01, 1000), {}, 0.0, ["holds 1 x nvidia.com/gpu while a MIG slice fits"]),
    # two slices where one fits
    (gpu_workload({"nvidia.com/mig-1g.5gb": 2}, 0.35, 3000), {}, 0.5, []),
    # the template is right, but one of two pods still holds a whole GPU (rollout not finished)
    ([*gpu_workload({"nvidia.com/mig-1g.5gb": 1}, 0.7, 3000),
      pod("llm-old", "Deployment/llm", node="a100-40", containers=[{"name": "s", "limits": {"nvidia.com/gpu": 1}}])],
     {}, 0.5, ["1 of 2 pods still hold the old request"]),
])
def test_gpu_rightsizing(resources: list[Json], params: Json, score: float, in_feedback: list[str]) -> None:
    check = only(run("gpu_rightsizing.py", snap(*resources), {"workload": "Deployment/llm", **params}))
    assert check.score == pytest.approx(score), check.feedback
    for needle in in_feedback:
        assert needle in check.feedback


def test_gpu_rightsizing_without_measured_use_is_an_error() -> None:
    limits = {"nvidia.com/gpu": 1}
    resources = [deployment("llm", containers=[{"name": "s", "limits": limits}]),
                 pod("llm-0", "Deployment/llm", node="a100-40", containers=[{"name": "s", "limits": limits}])]
    check = only(run("gpu_rightsizing.py", snap(*resources), {"workload": "Deployment/llm"}))
    assert (check.status, check.score) == ("error", 0)


@pytest.mark.parametrize("script", ["gpu_rightsizing.py", "cpu_rightsizing.py"])
def test_rightsizing_a_workload_with_no_running_pod_fails_it(script: str) -> None:
    """Nothing running serves nothing and is measured by nothing: the learner's failure, not the grader's."""
    limits = {"nvidia.com/gpu": 1, "cpu": 1.0}
    resources = [deployment("llm", containers=[{"name": "s", "limits": limits, "requests": {"cpu": 1.0}}]),
                 pod("llm-0", "Deployment/llm", node="a100-40", phase="Pending",
                     containers=[{"name": "s", "limits": limits}])]
    check = only(run(script, snap(*resources), {"workload": "Deployment/llm", "workloads": ["Deployment/llm"]}))
    assert (check.passed, check.status, check.score) == (False, "failed", 0)
    assert "No pod of Deployment/llm is running (1 Pending)" in check.feedback


FORGED_NOTES = {"labctl.dev/expected-gpu-engine-active": "0.95", "labctl.dev/expected-gpu-memory-mib": "70000",
                "labctl.dev/expected-cpu-millicores": "8000", "labctl.dev/expected-memory-mib": "65536",
                "kwok.x-k8s.io/usage-cpu": "8", "kwok.x-k8s.io/usage-memory": "64Gi"}


def test_rightsizing_reads_measured_use_only() -> None:
    """Annotations claiming busy pods change no rightsizing verdict; the old ``usage_annotations`` parameter is
    refused with a reason rather than silently honoured."""
    idle_gpu = gpu_workload({"nvidia.com/gpu": 1}, 0.01, 1000)
    idle_gpu[0]["pod_template_annotations"] = FORGED_NOTES
    idle_gpu[1]["annotations"] = FORGED_NOTES
    gpu = only(run("gpu_rightsizing.py", snap(*idle_gpu), {"workload": "Deployment/llm"}))
    assert gpu.score == 0 and "while a MIG slice fits" in gpu.feedback
    oversized = sized(8, 64 * GIB, 0.9, 6000 * MIB)
    oversized[0]["pod_template_annotations"] = FORGED_NOTES
    cpu = only(run("cpu_rightsizing.py", snap(*oversized), {"workloads": ["Deployment/api"]}))
    assert cpu.score == 0 and "far above its use" in cpu.feedback
    for script, params in (("gpu_rightsizing.py", {"workload": "Deployment/llm"}),
                           ("cpu_rightsizing.py", {"workloads": ["Deployment/api"]})):
        refused = only(run(script, snap(*idle_gpu), {**params, "usage_annotations": {"cpu_millicores": "x"}}))
        assert refused.status == "error" and "usage_annotations" in refused.feedback


# --- CPU and memory rightsizing -------------------------------------------------------------------------------------


def sized(cpu_request: float, memory_request: float, cpu_use: float, memory_use: float) -> list[Json]:
    containers = [{"name": "c", "requests": {"cpu": cpu_request, "memory": memory_request}}]
    return [deployment("api", containers=containers),
            pod("api-1", "Deployment/api", containers=[{**containers[0], "usage": {"cpu": cpu_use,
                                                                                    "memory": memory_use}}])]


@pytest.mark.parametrize(("resources", "params", "score", "in_feedback"), [
    # default band 0.7-0.87: 0.5 / 0.65 = 0.77 and 300 / 400 MiB = 0.75
    (sized(0.65, 400 * MIB, 0.5, 300 * MIB), {}, 1.0, ["within 70%-87%"]),
    # under-provisioned CPU (use/request 1.0 > 0.87), memory fine
    (sized(0.5, 400 * MIB, 0.5, 300 * MIB), {}, 0.5, ["cpu request 500m is below its use 500m plus margin"]),
    # tiny use: a request at the floor (25m, 250Mi) is never too big
    (sized(0.025, 250 * MIB, 0.001, 10 * MIB), {}, 1.0, []),
    (sized(0.1, 250 * MIB, 0.001, 10 * MIB), {}, 0.5, ["request at most 25m"]),
    (sized(0.1, 250 * MIB, 0.001, 10 * MIB), {"resources": ["memory"]}, 1.0, []),
])
def test_cpu_rightsizing(resources: list[Json], params: Json, score: float, in_feedback: list[str]) -> None:
    check = only(run("cpu_rightsizing.py", snap(*resources), {"workloads": ["Deployment/api"], **params}))
    assert check.score == pytest.approx(score), check.feedback
    for needle in in_feedback:
        assert needle in check.feedback


def test_cpu_rightsizing_takes_pod_requests_when_the_template_has_none() -> None:
    """LimitRange defaults land on pods, not on the template."""
    workload = deployment("api", containers=[{"name": "c"}])
    running = pod("api-1", "Deployment/api", containers=[
        {"name": "c", "requests": {"cpu": 0.1, "memory": 128 * MIB}, "usage": {"cpu": 0.08, "memory": 100 * MIB}}])
    check = only(run("cpu_rightsizing.py", snap(workload, running), {"workloads": ["Deployment/api"]}))
    assert check.passed, check.feedback


def test_cpu_rightsizing_band_must_be_a_band() -> None:
    check = only(run("cpu_rightsizing.py", snap(), {"band": {"min": 0.9, "max": 0.5}}))
    assert check.status == "error" and "must be below its max" in check.feedback


# --- idle and orphans -----------------------------------------------------------------------------------------------


def test_idle_orphans_finds_unlisted_idle_things() -> None:
    resources = [deployment("busy"), pod("busy-1", "Deployment/busy", cpu_use=0.3),
                 deployment("sleepy"), pod("sleepy-1", "Deployment/sleepy", cpu_use=0.001),
                 pod("stray", cpu_use=0.0),
                 pod("unmeasured", "Deployment/busy"),
                 {"kind": "CronJob", "name": "report", "suspend": True, "schedule": "@daily"},
                 {"kind": "PersistentVolumeClaim", "name": "used", "mounted_by": ["busy-1"], "storage": GIB},
                 {"kind": "PersistentVolumeClaim", "name": "left", "storage": GIB},
                 {"kind": "Service", "name": "front", "service_type": "LoadBalancer",
                  "selector": {"app": "busy"}},
                 {"kind": "Service", "name": "dead", "service_type": "LoadBalancer", "selector": {"app": "none"}}]
    checks = {c.id: c for c in run("idle_orphans.py", snap(*resources), {"idle_workloads": ["CronJob/report"]})}
    assert checks["idle-workloads"].score == pytest.approx(1 / 3)
    assert "Deployment/sleepy" in checks["idle-workloads"].feedback and "Pod/stray" in checks["idle-workloads"].feedback
    assert checks["orphans"].score == 0
    assert "PersistentVolumeClaim/left" in checks["orphans"].feedback and "Service/dead" in checks["orphans"].feedback
    assert "kept-workloads" not in checks


def test_idle_orphans_accepts_an_orphan_that_is_no_longer_one() -> None:
    claim = {"kind": "PersistentVolumeClaim", "name": "scratch", "mounted_by": ["job-1"], "storage": GIB}
    service = {"kind": "Service", "name": "demo", "service_type": "ClusterIP", "endpoints": 0}
    params = {"orphans": ["PersistentVolumeClaim/scratch", "Service/demo"]}
    assert only([c for c in run("idle_orphans.py", snap(claim, service), params) if c.id == "orphans"]).passed


def test_idle_orphans_finds_cloud_volumes_attached_to_nothing_and_reports_only_the_checks_asked() -> None:
    loose = {"kind": "Volume", "name": "vol-1", "storage": 200 * GIB, "mounted_by": [], "region": "us-east-1"}
    root = {"kind": "Volume", "name": "vol-2", "storage": 8 * GIB, "mounted_by": ["i-1"], "region": "us-east-1"}
    checks = run("idle_orphans.py", snap(loose, root, provider="aws"), {"orphan_kinds": ["Volume"],
                                                                        "checks": ["orphans"]})
    check = only(checks)
    assert check.id == "orphans" and check.score == 0 and not check.passed
    assert "Volume/vol-1 is attached to no instance" in check.feedback and "vol-2" not in check.feedback
    assert only(run("idle_orphans.py", snap(root, provider="aws"), {"orphan_kinds": ["Volume"],
                                                                    "checks": ["orphans"]})).passed
    assert only(run("idle_orphans.py", snap(loose), {"checks": ["nope"]})).status == "error"


def _vm(name: str, capacity: str, hours: float, phase: str = "running") -> Json:
    return {"kind": "Instance", "name": name, "instance_type": "g5.xlarge", "capacity_type": capacity,
            "phase": phase, "running_hours": hours, "region": "us-east-1"}


@pytest.mark.parametrize(("instances", "score", "passed"), [
    ([_vm("i-1", "spot", 2.0)], 1.0, True),
    ([_vm("i-1", "spot", 3.0), _vm("i-2", "on-demand", 1.0)], 0.75, False),
    ([_vm("i-1", "spot", 1.0), _vm("i-2", "on-demand", 5.0, phase="stopped")], 1.0, True),  # stopped: no compute
    ([_vm("i-2", "on-demand", 5.0, phase="stopped")], 0.0, False),  # nothing runs, nothing on spot
    ([], 0.0, False),
])
def test_spot_placement_of_cloud_instances_by_instance_hours(instances: list[Json], score: float,
                                                              passed: bool) -> None:
    check = only(run("spot_placement.py", snap(*instances, provider="aws"), {"check": "instances"}))
    assert (check.id, check.score, check.passed) == ("instance-spot-share", pytest.approx(score), passed)


# --- budget ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("budget", "cost", "params", "scores"), [
    ({"budget_usd": 10, "reference_cost_usd": 2}, {"accrued_usd": 3.0}, {"max_reference_ratio": 1.25},
     {"spend": 1.0, "reference-cost": 0.8}),      # limit 2.5: 3.0 is 0.5 over, 1 - 0.5 / 2.5
    ({"budget_usd": 2}, {"accrued_usd": 3.0}, {"max_spend_percent": 100}, {"spend": 0.5}),
    ({"budget_usd": 10, "starter_burn_rate_usd_per_hour": 2.0}, {"burn_rate_usd_per_hour": 1.0},
     {"max_burn_rate_ratio": 0.25}, {"spend": 1.0, "burn-rate": 2 / 3}),   # cut 1.0 of the 1.5 needed
    ({"budget_usd": 10}, {"burn_rate_usd_per_hour": 1.0},
     {"max_burn_rate_ratio": 0.5, "starter_burn_rate_usd_per_hour": 4.0}, {"spend": 1.0, "burn-rate": 1.0}),
])
def test_budget(budget: Json, cost: Json, params: Json, scores: dict[str, float]) -> None:
    full_cost = {"accrued_usd": 1.0, "burn_rate_usd_per_hour": 1.0, "usage_source": "metrics", **cost}
    checks = {c.id: c for c in run("budget.py", snap(budget=budget, cost=full_cost), params)}
    assert {k: c.score for k, c in checks.items()} == {k: pytest.approx(v) for k, v in scores.items()}


def test_budget_without_a_starter_burn_rate_is_an_error() -> None:
    check = only([c for c in run("budget.py", snap(), {"max_burn_rate_ratio": 0.5}) if c.id == "burn-rate"])
    assert check.status == "error" and "starter's burn rate is not known" in check.feedback


def test_budget_idle_share_is_idle_hourly_over_the_burn_rate() -> None:
    # idle: the 1m pod (0.01/h) and the unmounted claim (0.03/h) = 0.04 of a 0.1/h burn rate = 40 %
    resources = [pod("idle", cpu_use=0.001), pod("busy", cpu_use=0.2),
                 {"kind": "PersistentVolumeClaim", "name": "left", "storage": GIB, "hourly_usd": 0.03}]
    cost = {"accrued_usd": 1.0, "burn_rate_usd_per_hour": 0.1, "usage_source": "metrics"}
    check = only([c for c in run("budget.py", snap(*resources, cost=cost), {"max_idle_share": 0.1})
                  if c.id == "idle-share"])
    assert check.score == pytest.approx(1 - 0.3 / 0.9)
    assert "40%" in check.feedback and "Pod/idle" in check.feedback and "Pod/busy" not in check.feedback


# --- schedule -------------------------------------------------------------------------------------------------------


def worker(**annotations: str) -> Json:
    return deployment("worker", annotations=annotations)


def scaler(name: str, schedule: str, replicas: int, *, suspend: bool = False, style: str = "scale") -> Json:
    command = (["kubectl", "scale", "deploy", "worker", "--replicas", str(replicas)] if style == "scale" else
               ["kubectl", "patch", "deployment/worker", "-p", f'{{"spec": {{"replicas": {replicas}}}}}'])
    return {"kind": "CronJob", "name": name, "schedule": schedule, "suspend": suspend,
            "containers": [{"name": "k", "command": command}]}


@pytest.mark.parametrize(("resources", "params", "score", "in_feedback"), [
    ([worker(**{"labctl.dev/off-hours": "Mon,Wed,Fri 09:00-17:30 UTC"})], {}, 1.0, ["25.5 hours a week"]),
    ([worker(**{"labctl.dev/off-hours": "Fri-Mon 08:00-18:00 Europe/Berlin"})], {"max_running_hours_per_week": 30},
     0.5, ["40 hours a week", "more than 30"]),
    ([worker(**{"labctl.dev/off-hours": "Mon-Fri 18:00-08:00 UTC"})], {}, 0.0, ["not after it starts"]),
    ([worker(**{"labctl.dev/off-hours": "Mon-Fri 08:00-18:00 Mars/Olympus"})], {}, 0.0, ["unknown time zone"]),
    ([worker(), scaler("down", "30 19 * * mon-fri", 0), scaler("up", "30 7 * * MON-FRI", 2, style="patch")],
     {"max_running_hours_per_week": 70}, 1.0, ["60 hours a week", "CronJob/down, CronJob/up"]),
    ([worker(), scaler("down", "0 20 * * *", 0)], {}, 0.5, ["nothing scales it back up"]),
    ([worker(), scaler("down", "0 20 * * *", 0)], {"require_scale_up": False}, 1.0, []),
    ([worker(), scaler("down", "0 20 * * *", 0, suspend=True), scaler("up", "0 8 * * *", 1)], {}, 0.0,
     ["runs around the clock"]),
    ([worker(), scaler("down", "0 20 * * *", 0)], {"accept_scaler_cronjobs": False}, 0.0, ["runs around the clock"]),
    # monthly schedules never fire in the simulated fortnight: no weekly hours to judge
    ([worker(), scaler("down", "0 18 1 * *", 0), scaler("up", "0 8 1 * *", 1)], {}, 0.0, ["never fire"]),
])
def test_schedule(resources: list[Json], params: Json, score: float, in_feedback: list[str]) -> None:
    check = only(run("schedule.py", snap(*resources), {"workloads": ["Deployment/worker"], **params}))
    assert check.score == pytest.approx(score), check.feedback
    for needle in in_feedback:
        assert needle in check.feedback


def test_schedule_reads_the_pod_template_annotation_too() -> None:
    workload = deployment("worker", pod_template_annotations={"labctl.dev/off-hours": "Daily 08:00-16:00 UTC"})
    check = only(run("schedule.py", snap(workload), {"workloads": ["Deployment/worker"]}))
    assert check.passed and "56 hours a week" in check.feedback


# --- outcomes: service level and unit cost ---------------------------------------------------------------------------


def served(offered: float, served_: float, cost: float, workload: str = "Deployment/llm") -> Json:
    share = served_ / offered if offered else None
    unit = cost / served_ * 1000 if served_ else None
    return {"workload": workload, "offered": offered, "served": served_, "dropped": offered - served_,
            "served_share": share, "cost_usd": cost, "cost_per_1000_requests": unit}


def outcome_snap(*figures: Json) -> Json:
    data = snap()
    data["service"] = list(figures)
    return data


@pytest.mark.parametrize(("figures", "score", "passed", "in_feedback"), [
    (served(10_000, 9_950, 1.0), 1.0, True, ["99.50% of 10,000 requests (50 dropped)"]),
    (served(10_000, 4_950, 0.5), 0.5, False, ["49.50%", "below the 99.0% target"]),  # 0.495 / 0.99
    (served(10_000, 0, 0.0), 0.0, False, ["0.00% of 10,000"]),  # scaled to zero: cheap, and fails
])
def test_slo(figures: Json, score: float, passed: bool, in_feedback: list[str]) -> None:
    check = only(run("slo.py", outcome_snap(figures), {"min_served_share": 0.99}))
    assert (check.score, check.passed) == (pytest.approx(score), passed), check.feedback
    for needle in in_feedback:
        assert needle in check.feedback
    assert check.evidence or passed


def test_slo_without_figures_is_an_error_and_names_are_checked() -> None:
    check = only(run("slo.py", outcome_snap(served(0, 0, 0.0)), {"min_served_share": 0.99}))
    assert (check.status, check.score) == ("error", 0)
    missing = only(run("slo.py", outcome_snap(), {"min_served_share": 0.99, "workloads": ["Deployment/x"]}))
    assert missing.status == "error" and "Deployment/x" in missing.feedback
    bad = only(run("slo.py", outcome_snap(served(1, 1, 0.0)), {"min_served_share": 1.5}))
    assert bad.status == "error" and "min_served_share" in bad.feedback


@pytest.mark.parametrize(("figures", "score", "passed", "in_feedback"), [
    (served(10_000, 10_000, 0.40), 1.0, True, ["$0.0400 per 1,000", "(the starter's: $0.4000)"]),
    (served(10_000, 10_000, 0.60), 0.5, False, ["$0.0600", "above the $0.0400 target"]),  # 1 - 0.02 / 0.04
    (served(10_000, 5_000, 0.40), 0.0, False, ["$0.0800"]),  # half the traffic dropped: twice the unit cost
    (served(10_000, 0, 0.40), 0.0, False, ["served no request"]),
])
def test_unit_cost(figures: Json, score: float, passed: bool, in_feedback: list[str]) -> None:
    params = {"max_usd_per_1000": 0.04, "starter_usd_per_1000": 0.4}
    check = only(run("unit_cost.py", outcome_snap(figures), params))
    assert (check.score, check.passed) == (pytest.approx(score), passed), check.feedback
    assert check.status != "error"
    for needle in in_feedback:
        assert needle in check.feedback


def reported(value: str | None, *, key: str = "usd_per_1000_requests", name: str = "unit-cost") -> Json:
    return {"name": name, "data": {} if value is None else {key: value}}


@pytest.mark.parametrize(("figures", "config_maps", "passed", "in_feedback"), [
    (served(10_000, 10_000, 0.40), [reported("0.04")], True, ["$0.04 per 1,000", "0.0% apart", "within 10%"]),
    (served(10_000, 10_000, 0.40), [reported(" 0.0437 ")], True, ["9.3% apart"]),  # spaces are not a mistake
    (served(10_000, 10_000, 0.40), [reported("0.0325")], False, ["18.8% apart", "not within 10%"]),
    (served(10_000, 10_000, 0.40), [reported("$0.04")], False, ["not a plain decimal number"]),
    (served(10_000, 10_000, 0.40), [reported("nan")], False, ["not a plain decimal number"]),
    (served(10_000, 10_000, 0.40), [reported(None)], False, ["has no key usd_per_1000_requests"]),
    (served(10_000, 10_000, 0.40), [reported("0.04", name="other")], False, ["There is no ConfigMap/unit-cost"]),
    (served(10_000, 0, 0.40), [reported("0.04")], False, ["served no request"]),  # scaled to zero: nothing to match
])
def test_reported_unit_cost(figures: Json, config_maps: list[Json], passed: bool, in_feedback: list[str]) -> None:
    data = outcome_snap(figures)
    data["config_maps"] = config_maps
    check = only(run("reported_unit_cost.py", data, {"workload": "Deployment/llm"}))
    assert check.id == "reported-unit-cost:Deployment/llm"
    assert (check.passed, check.score) == (passed, 1.0 if passed else 0.0), check.feedback
    assert check.status != "error"
    for needle in in_feedback:
        assert needle in check.feedback, check.feedback
    assert check.evidence or passed


def test_reported_unit_cost_without_figures_is_an_error_and_params_are_checked() -> None:
    data = outcome_snap()
    data["config_maps"] = [reported("0.04")]
    missing = only(run("reported_unit_cost.py", data, {"workload": "Deployment/x"}))
    assert missing.status == "error" and "Deployment/x" in missing.feedback
    bad = only(run("reported_unit_cost.py", data, {"workload": "Deployment/x", "tolerance": 2}))
    assert bad.status == "error" and "tolerance" in bad.feedback
    unnamed = only(run("reported_unit_cost.py", data, {}))
    assert unnamed.status == "error" and "workload" in unnamed.feedback
