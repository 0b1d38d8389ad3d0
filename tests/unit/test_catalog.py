"""The lab catalog: the shipped labs load and their templates render into Kubernetes objects that pass Pod Security
`restricted`, fit the fleet, fit their quotas and match their graders' parameters; broken lab files give errors that
name the file, the line and the field; `labctl labs` lists, shows and validates."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from labctl.catalog import loader, windows
from labctl.catalog.loader import CatalogError
from labctl.catalog.models import Lab, lab_json_schema, parse_quantity
from labctl.cli import labs as labs_cli
from labctl.localcluster import fleet
from labctl.settings import REPO_ROOT, Settings

LABS_DIR = REPO_ROOT / "labs"
MANIFESTS_DIR = REPO_ROOT / "manifests"
FLEET_FILE = LABS_DIR / "fleet.yaml"
SHIPPED = ["autoscale-to-demand", "cost-per-inference", "gpu-rightsizing", "idle-hunter", "move-batch-to-spot",
           "tag-for-showback"]  # the Kubernetes labs
SHIPPED_CLOUD = ["aws-spot-and-tags", "gcp-spot-and-labels"]  # cloud labs: tested with their provider (tests/gcp)
GRADER_SCRIPTS = {"graders/tag_coverage.py", "graders/spot_placement.py", "graders/gpu_rightsizing.py",
                  "graders/cpu_rightsizing.py", "graders/idle_orphans.py", "graders/budget.py", "graders/schedule.py",
                  "graders/slo.py", "graders/unit_cost.py", "graders/reported_unit_cost.py"}
SPOT_TAINT = {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def catalog() -> dict[str, Lab]:
    """The shipped Kubernetes labs (starters are manifests, rendered and checked here)."""
    labs = loader.load_catalog(LABS_DIR, MANIFESTS_DIR)
    assert sorted(lab_id for lab_id, lab in labs.items() if lab.provider != "kubernetes") == SHIPPED_CLOUD
    return {lab_id: lab for lab_id, lab in labs.items() if lab.provider == "kubernetes"}


def context(lab_id: str) -> dict[str, str]:
    return {"namespace": f"lab-{lab_id}-7f3a", "session_id": "s-7f3a", "lab_id": lab_id, "learner_id": "ada"}


def starter(lab: Lab) -> list[dict[str, Any]]:
    return loader.render_starter(lab, MANIFESTS_DIR, context(lab.id))


def solution(lab: Lab) -> list[dict[str, Any]]:
    return loader.render_solution(lab, MANIFESTS_DIR, context(lab.id))


def find(docs: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    kind, name = ref.split("/")
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{ref} appears {len(matches)} times"
    return matches[0]


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        template: dict[str, Any] = doc["spec"]["jobTemplate"]["spec"]["template"]
        return template
    template = doc["spec"]["template"]
    return template


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], int]]:
    """(kind/name, pod template, pods running at once) of every workload."""
    for doc in docs:
        kind = doc["kind"]
        spec = doc.get("spec", {})
        if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
            count = spec.get("replicas", 1)
        elif kind == "Job":
            count = spec.get("parallelism", 1)
        elif kind == "CronJob":
            count = spec["jobTemplate"]["spec"].get("parallelism", 1)
        else:
            continue
        yield f"{kind}/{doc['metadata']['name']}", pod_template(doc), count


def all_rendered(catalog: dict[str, Lab]) -> Iterator[tuple[Lab, str, list[dict[str, Any]]]]:
    for lab in catalog.values():
        yield lab, "starter", starter(lab)
        yield lab, "solution", solution(lab)


# --- the shipped catalog ------------------------------------------------------------------------------------------


def test_shipped_catalog_loads_the_labs(catalog: dict[str, Lab]) -> None:
    assert list(catalog) == SHIPPED
    for lab in catalog.values():
        assert lab.provider == "kubernetes"
        assert lab.pod_security == "restricted"
        assert lab.required_labels == ["team", "cost-center", "env"]
        assert lab.starter and lab.solution
        assert {g.script for g in lab.graders} <= GRADER_SCRIPTS
        assert lab.max_score == 100
        assert lab.budget.thresholds[-1].action in ("suspend", "terminate")


USAGE_HINTS = re.compile(r"labctl\.dev/expected-|kwok\.x-k8s\.io/usage-")


# Graders that judge the pods' use at the moment of submission (not the outcome over the graded time).
USE_GRADERS = {"graders/cpu_rightsizing.py", "graders/gpu_rightsizing.py", "graders/idle_orphans.py"}


def test_labs_declare_their_demand_and_nothing_the_learner_writes_states_use(catalog: dict[str, Lab]) -> None:
    """Every Deployment a starter runs has a simulated demand: constant where a grader judges the pods' use at
    submission (so it does not depend on when the learner submits); a curve only in a lab graded on outcomes over
    whole simulated days (served share, unit cost). No lab file, manifest (starters, solutions, wrong ones) or
    grader names a usage annotation or parameter."""
    for lab in catalog.values():
        assert not [g.id for g in lab.graders if "usage_annotations" in g.params], lab.id
        assert lab.demand is not None, lab.id
        declared = {w.workload: w for w in lab.demand.workloads}
        for doc in starter(lab):
            if doc["kind"] == "Deployment":
                ref = f"Deployment/{doc['metadata']['name']}"
                assert ref in declared, f"{lab.id}: {ref}"
                if declared[ref].rps is None:
                    assert not {g.script for g in lab.graders} & USE_GRADERS, f"{lab.id}: {ref}"
                    assert lab.demand.grading_window_delta.total_seconds() % 86400 == 0, lab.id
    texts = [*LABS_DIR.glob("*/lab.yaml"), *MANIFESTS_DIR.glob("labs/**/*.j2"), *(REPO_ROOT / "graders").glob("*.py")]
    assert texts
    assert [str(p) for p in texts if USAGE_HINTS.search(p.read_text(encoding="utf-8"))] == []


def test_catalog_skips_fleet_and_json_files_beside_the_labs() -> None:
    assert (LABS_DIR / "fleet.yaml").is_file()
    assert list(LABS_DIR.glob("*.json"))
    assert len(loader.lab_files(LABS_DIR)) == len(SHIPPED) + len(SHIPPED_CLOUD)


def test_the_shipped_cloud_labs_load_with_their_starter_and_guardrails() -> None:
    labs = loader.load_catalog(LABS_DIR, MANIFESTS_DIR)
    for lab_id in SHIPPED_CLOUD:
        lab = labs[lab_id]
        assert lab.provider in ("aws", "gcp") and lab.cloud_starter and lab.guardrails is not None
        assert {g.script for g in lab.graders} <= GRADER_SCRIPTS and lab.max_score == 100
        assert (LABS_DIR / lab_id / "lab.yaml").read_text().splitlines()[0] == \
            "# yaml-language-server: $schema=../lab.schema.json"
        readme = (LABS_DIR / lab_id / "README.md").read_text()
        for grader in lab.graders:
            assert re.search(rf"`{grader.id}`.*\b{grader.weight:g}\b", readme), f"README omits {grader.id}"


@pytest.mark.parametrize("lab_id", SHIPPED)
def test_lab_files_name_the_schema_and_have_a_readme(lab_id: str, catalog: dict[str, Lab]) -> None:
    lab_yaml = LABS_DIR / lab_id / "lab.yaml"
    assert lab_yaml.read_text().splitlines()[0] == "# yaml-language-server: $schema=../lab.schema.json"
    readme = (LABS_DIR / lab_id / "README.md").read_text()
    assert "kubectl get nodes -L karpenter.sh/capacity-type,node.kubernetes.io/instance-type" in readme
    for grader in catalog[lab_id].graders:
        assert re.search(rf"`{grader.id}`.*\b{grader.weight:g}\b", readme), f"README omits {grader.id} or its weight"


def test_shipped_schema_file_is_up_to_date() -> None:
    assert (LABS_DIR / "lab.schema.json").read_text() == loader.schema_text()


def test_schema_describes_a_closed_lab_file_whose_id_comes_from_the_directory() -> None:
    schema = lab_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert "id" in schema["properties"] and "id" not in schema["required"]
    assert set(schema["required"]) == {"title", "summary", "provider", "budget", "time", "graders"}
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name
    assert Lab.json_schema() == schema


def test_time_values_parse_into_timedeltas_and_a_window(catalog: dict[str, Lab]) -> None:
    hunter = catalog["idle-hunter"].time
    assert hunter.limit_delta == timedelta(hours=1)
    assert hunter.max_extension_delta == timedelta(minutes=30)
    assert hunter.idle_timeout_delta == timedelta(minutes=20)
    assert hunter.warn_before_delta == timedelta(minutes=10)
    assert hunter.window is not None and str(hunter.window) == "Mon-Fri 07:00-21:00 Europe/Berlin"
    assert windows.is_inside(hunter.window, datetime(2026, 3, 30, 6, 0, tzinfo=UTC))  # 08:00 CEST, Monday
    assert not windows.is_inside(hunter.window, datetime(2026, 3, 29, 10, 0, tzinfo=UTC))  # Sunday
    assert catalog["tag-for-showback"].time.window is None


# --- rendered templates -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lab_id", SHIPPED)
def test_starters_render_to_valid_yaml_in_the_session_namespace(lab_id: str, catalog: dict[str, Lab]) -> None:
    lab = catalog[lab_id]
    for docs in (starter(lab), solution(lab)):
        assert docs
        for doc in docs:
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
            assert doc["metadata"]["namespace"] == f"lab-{lab_id}-7f3a"
            assert yaml.safe_load(yaml.safe_dump(doc)) == doc


def test_every_pod_template_passes_pod_security_restricted_and_declares_requests(catalog: dict[str, Lab]) -> None:
    checked = 0
    for lab, which, docs in all_rendered(catalog):
        for ref, template, _ in pod_templates(docs):
            where = f"{lab.id} {which} {ref}"
            spec = template["spec"]
            pod_sc = spec["securityContext"]
            assert pod_sc["runAsNonRoot"] is True, where
            assert pod_sc["runAsUser"] == 65532, where
            assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
            assert all("hostPath" not in v for v in spec.get("volumes", [])), where
            for container in spec["containers"] + spec.get("initContainers", []):
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert not sc.get("privileged"), where
                assert container["image"].startswith("registry.k8s.io/"), where
                requests = container["resources"]["requests"]
                assert {"cpu", "memory"} <= set(requests), where
                checked += 1
    assert checked >= 12


def test_containers_without_limits_would_get_limits_above_their_requests(catalog: dict[str, Lab]) -> None:
    for lab, which, docs in all_rendered(catalog):
        defaults = lab.limit_range.default_limit
        for ref, template, _ in pod_templates(docs):
            for container in template["spec"]["containers"]:
                resources = container["resources"]
                for resource in ("cpu", "memory"):
                    limit = resources.get("limits", {}).get(resource, getattr(defaults, resource))
                    assert parse_quantity(str(resources["requests"][resource])) <= parse_quantity(str(limit)), (
                        f"{lab.id} {which} {ref}: {resource} request above its limit")


# --- scheduling on the fleet --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes() -> list[dict[str, Any]]:
    return fleet.node_manifests(fleet.load(FLEET_FILE))


def _tolerated(taint: dict[str, str], tolerations: list[dict[str, str]]) -> bool:
    for tol in tolerations:
        key_ok = tol.get("key") == taint["key"] or (not tol.get("key") and tol.get("operator") == "Exists")
        value_ok = tol.get("operator") == "Exists" or tol.get("value", "") == taint.get("value", "")
        effect_ok = not tol.get("effect") or tol["effect"] == taint["effect"]
        if key_ok and value_ok and effect_ok:
            return True
    return False


def _needs(template: dict[str, Any]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for container in template["spec"]["containers"]:
        resources = container["resources"]
        for name, value in {**resources.get("limits", {}), **resources.get("requests", {})}.items():
            if name in ("cpu", "memory") and name not in resources.get("requests", {}):
                continue  # a limit alone does not ask the scheduler for anything here
            total[name] = total.get(name, Decimal(0)) + parse_quantity(str(value))
    return total


def pools_for(template: dict[str, Any], nodes: list[dict[str, Any]]) -> set[str]:
    """The pools whose nodes the scheduler could put this pod on: node selector, taints, resources."""
    spec = template["spec"]
    selector = spec.get("nodeSelector", {})
    tolerations = spec.get("tolerations", [])
    needs = _needs(template)
    pools: set[str] = set()
    for node in nodes:
        labels = node["metadata"]["labels"]
        allocatable = node["status"]["allocatable"]
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        if any(t["effect"] in ("NoSchedule", "NoExecute") and not _tolerated(t, tolerations)
               for t in node["spec"]["taints"]):
            continue
        if any(parse_quantity(str(allocatable.get(name, "0"))) < amount for name, amount in needs.items()):
            continue
        pools.add(labels["labctl.dev/pool"])
    return pools


def capacity_types(pools: set[str]) -> set[str]:
    by_pool = {p.name: p.capacity_type for p in fleet.load(FLEET_FILE).pools}
    return {by_pool[p] for p in pools}


def test_every_pod_schedules_on_a_pool_the_lab_shows(catalog: dict[str, Lab], nodes: list[dict[str, Any]]) -> None:
    for lab, which, docs in all_rendered(catalog):
        for ref, template, _ in pod_templates(docs):
            pools = pools_for(template, nodes)
            assert pools, f"{lab.id} {which} {ref} fits no node of the fleet"
            assert pools <= set(lab.node_pools), f"{lab.id} {which} {ref} may land on {pools - set(lab.node_pools)}"


@pytest.mark.parametrize("lab_id", ["move-batch-to-spot", "gpu-rightsizing"])
def test_starters_waste_on_demand_and_solutions_run_on_spot(lab_id: str, catalog: dict[str, Lab],
                                                            nodes: list[dict[str, Any]]) -> None:
    lab = catalog[lab_id]
    for _, template, _ in pod_templates(starter(lab)):
        assert capacity_types(pools_for(template, nodes)) == {"on-demand"}
    for _, template, _ in pod_templates(solution(lab)):
        assert capacity_types(pools_for(template, nodes)) == {"spot"}
        assert _tolerated(SPOT_TAINT, template["spec"]["tolerations"])


# --- quotas -------------------------------------------------------------------------------------------------------


def quota_use(docs: list[dict[str, Any]]) -> dict[str, Decimal]:
    """What the objects count against a ResourceQuota, under the quota's own keys."""
    use: dict[str, Decimal] = {}

    def add(key: str, amount: Decimal) -> None:
        use[key] = use.get(key, Decimal(0)) + amount

    for _, template, count in pod_templates(docs):
        add("pods", Decimal(count))
        for name, amount in _needs(template).items():
            add(name if name in ("cpu", "memory") else f"requests.{name}", amount * count)
    for doc in docs:
        counted = {"Secret": "count/secrets", "ConfigMap": "count/configmaps", "Service": "services",
                   "Deployment": "count/deployments.apps", "Job": "count/jobs.batch"}.get(doc["kind"])
        if counted:
            add(counted, Decimal(1))
        if doc["kind"] == "Service" and doc["spec"].get("type") in ("NodePort", "LoadBalancer"):
            add("services.nodeports", Decimal(len(doc["spec"]["ports"])))
        if doc["kind"] == "Service" and doc["spec"].get("type") == "LoadBalancer":
            add("services.loadbalancers", Decimal(1))
        if doc["kind"] == "PersistentVolumeClaim":
            add("persistentvolumeclaims", Decimal(1))
            add("requests.storage", parse_quantity(doc["spec"]["resources"]["requests"]["storage"]))
    return use


@pytest.mark.parametrize("lab_id", SHIPPED)
def test_quota_holds_the_starter_and_the_solution_at_once(lab_id: str, catalog: dict[str, Lab]) -> None:
    lab = catalog[lab_id]
    before, after = quota_use(starter(lab)), quota_use(solution(lab))
    for key in before.keys() | after.keys():
        both = before.get(key, Decimal(0)) + after.get(key, Decimal(0))
        if key == "count/configmaps":
            both += 1  # kube-root-ca.crt, which the controller-manager puts in every namespace
        if key in lab.quota:
            assert both <= parse_quantity(lab.quota[key]), f"{lab_id}: quota {key} {lab.quota[key]} < {both}"
        else:
            assert key in ("cpu", "memory", "pods") or not key.startswith("requests.nvidia.com/"), (
                f"{lab_id}: {key} is used but not bounded by the quota")


# --- each lab's starter is the problem its graders look for, and its solution the answer ------------------------


def _has_real_values(labels: dict[str, str], required: list[str], placeholders: list[str]) -> bool:
    lowered = {p.lower() for p in placeholders}
    return all(labels.get(k) and str(labels[k]).lower() not in lowered for k in required)


def test_tag_for_showback(catalog: dict[str, Lab]) -> None:
    lab = catalog["tag-for-showback"]
    graders = {g.id: g.params for g in lab.graders}
    pods, owners = graders["pod-label-coverage"], graders["owner-values"]["expected"]
    required, placeholders = pods["required_labels"], pods["placeholders"]
    docs, done = starter(lab), solution(lab)
    assert len([d for d in docs if d["kind"] == "Deployment"]) == 3
    assert [d["kind"] for d in docs].count("CronJob") == 1
    for ref in pods["must_exist"]:
        find(docs, ref)
        find(done, ref)
    # The starter's pods: none fully labelled; one Deployment labelled only on itself; one with placeholders.
    assert not any(_has_real_values(t["metadata"].get("labels", {}), required, placeholders)
                   for _, t, _ in pod_templates(docs))
    front = find(docs, "Deployment/web-frontend")
    assert _has_real_values(front["metadata"]["labels"], required, placeholders)
    assert find(docs, "Deployment/recommender-api")["metadata"]["labels"]["team"] == "tbd"
    assert "team" not in find(docs, "CronJob/feature-store-sync")["metadata"]["labels"]
    # The solution: every workload and pod template carries the owners' values.
    for ref, values in owners.items():
        doc = find(done, ref)
        for labels in (doc["metadata"]["labels"], pod_template(doc)["metadata"]["labels"]):
            assert {k: labels.get(k) for k in values} == values, ref
    # Relabelling keeps each Deployment's selector matching its pods.
    for doc in done:
        if doc["kind"] == "Deployment":
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()


def test_move_batch_to_spot(catalog: dict[str, Lab]) -> None:
    lab = catalog["move-batch-to-spot"]
    tolerance = next(g.params for g in lab.graders if g.id == "interruption-tolerant")
    docs, done = starter(lab), solution(lab)
    job, service = find(docs, "Job/embeddings-backfill"), find(docs, "Deployment/thumbnailer")
    assert job["spec"]["parallelism"] == 4 and service["spec"]["replicas"] == 2
    for doc in (job, service):
        assert pod_template(doc)["spec"]["nodeSelector"] == {"karpenter.sh/capacity-type": "on-demand"}
    assert job["spec"]["backoffLimit"] < tolerance["jobs"]["embeddings-backfill"]["min_backoff_limit"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    fixed_job = find(done, "Job/embeddings-backfill")
    assert fixed_job["spec"]["backoffLimit"] >= tolerance["jobs"]["embeddings-backfill"]["min_backoff_limit"]
    fixed = find(done, "Deployment/thumbnailer")
    assert fixed["spec"]["replicas"] >= tolerance["deployments"]["thumbnailer"]["min_replicas"]
    pdb = find(done, "PodDisruptionBudget/thumbnailer")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_template(fixed)["metadata"]["labels"].items()
    assert pdb["spec"]["minAvailable"] < fixed["spec"]["replicas"]


def _mig_profiles() -> dict[str, int]:
    mig_pool = next(p for p in fleet.load(FLEET_FILE).pools if p.gpu and p.gpu.mig)
    assert mig_pool.gpu is not None
    return mig_pool.gpu.mig


def per_pod_use(lab: Lab, ref: str, replicas: int) -> dict[str, Decimal]:
    """What one of ``replicas`` Ready pods of ``ref`` uses under the lab's constant demand, computed here from the
    declaration (the simulator's rule: the demand split evenly, each request's CPU and GPU time, base memory plus
    memory per request/s): cpu cores, memory bytes, gpu (share of a whole GPU's engines), gpu_memory_mib."""
    assert lab.demand is not None, f"{lab.id} declares no demand"
    declared = next(w for w in lab.demand.workloads if w.workload == ref)
    assert declared.rps is not None, f"{ref}: the graded use must not depend on the time of day"
    rate = declared.rps / replicas
    return {"rate": rate, "cpu": rate * declared.per_request.cpu_core_seconds,
            "memory": declared.base_memory_bytes + declared.memory_per_rps_bytes * rate,
            "gpu": rate * declared.per_request.gpu_seconds,
            "gpu_memory_mib": Decimal(declared.per_replica.gpu_memory_mib)}


def test_gpu_rightsizing(catalog: dict[str, Lab]) -> None:
    lab = catalog["gpu-rightsizing"]
    params = {g.id: g.params for g in lab.graders}
    gpu, cpu = params["gpu-right-size"], params["cpu-memory-right-size"]
    docs, done = starter(lab), solution(lab)
    before, after = pod_template(find(docs, gpu["workload"])), pod_template(find(done, gpu["workload"]))
    assert find(docs, gpu["workload"])["spec"]["replicas"] == 2
    assert before["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _tolerated({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                      before["spec"]["tolerations"])
    assert "annotations" not in before["metadata"] and "annotations" not in after["metadata"]
    replicas = find(docs, gpu["workload"])["spec"]["replicas"]
    use = per_pod_use(lab, gpu["workload"], replicas)
    engine, memory_mib = float(use["gpu"]), float(use["gpu_memory_mib"])
    # The README's figures: 0.12 of a whole A100's engines, 7000 MiB, 900m CPU, 6000Mi per replica.
    assert (engine, memory_mib, use["cpu"], use["memory"]) == (0.12, 7000.0, Decimal("0.9"), 6000 * 2**20)
    assert engine < gpu["overprovisioned_engine_active"]
    assert memory_mib < gpu["overprovisioned_memory_share"] * gpu["device_memory_mib"]
    # docs/FINOPS.md section 3: the smallest offered MIG profile with memory >= peak x headroom and compute >= demand.
    fits = sorted((int(p.split("g.")[0]), int(p.split("g.")[1][:-2]), p) for p in _mig_profiles()
                  if int(p.split("g.")[1][:-2]) * 1024 >= memory_mib * gpu["memory_headroom"]
                  and int(p.split("g.")[0]) / 7 >= engine)
    assert [fits[0][2]] == gpu["best_profiles"]
    limits = after["spec"]["containers"][0]["resources"]["limits"]
    assert limits[f"nvidia.com/mig-{gpu['best_profiles'][0]}"] == 1 and "nvidia.com/gpu" not in limits
    assert f"requests.nvidia.com/mig-{gpu['best_profiles'][0]}" in lab.quota
    # The slice serves a replica's share within the latency SLO (g/7 of a GPU / GPU-seconds per request).
    declared = next(w for w in lab.demand.workloads if w.workload == gpu["workload"]) if lab.demand else None
    assert declared is not None
    slice_g = Decimal(gpu["best_profiles"][0].split("g.")[0])
    assert slice_g / 7 / declared.per_request.gpu_seconds * declared.max_utilisation >= use["rate"]
    # CPU and memory: usage / request outside the band in the starter, inside it in the solution.
    band = cpu["band"]
    for template, inside in ((before, False), (after, True)):
        requests = template["spec"]["containers"][0]["resources"]["requests"]
        for resource in cpu["resources"]:
            ratio = use[resource] / parse_quantity(str(requests[resource]))
            assert (band["min"] <= ratio <= band["max"]) is inside, (resource, ratio)


def test_idle_hunter(catalog: dict[str, Lab]) -> None:
    lab = catalog["idle-hunter"]
    params = {g.id: g.params for g in lab.graders}
    idle, schedule = params["idle-and-orphans"], params["off-hours-schedule"]
    docs, done = starter(lab), solution(lab)
    templates = [t for _, t, _ in pod_templates(docs)]
    for ref in idle["idle_workloads"]:
        doc = find(docs, ref)
        assert doc["spec"]["replicas"] == 3
        assert per_pod_use(lab, ref, 3)["cpu"] * 1000 < idle["idle_cpu_millicores"]
        assert find(done, ref)["spec"]["replicas"] == 0
    for ref in idle["orphans"]:
        doc = find(docs, ref)
        if doc["kind"] == "PersistentVolumeClaim":
            assert doc["spec"]["resources"]["requests"]["storage"] == "5Gi"
            mounted = [v for t in templates for v in t["spec"].get("volumes", [])
                       if v.get("persistentVolumeClaim", {}).get("claimName") == doc["metadata"]["name"]]
            assert not mounted
        else:
            assert doc["spec"]["type"] == "LoadBalancer"
            selector = doc["spec"]["selector"].items()
            assert not any(selector <= t["metadata"]["labels"].items() for t in templates)
        assert not [d for d in done if f"{d['kind']}/{d['metadata']['name']}" == ref]
    for ref, keep in idle["must_keep"].items():
        busy = find(docs, ref)
        use = per_pod_use(lab, ref, busy["spec"]["replicas"])
        assert use["cpu"] * 1000 > idle["idle_cpu_millicores"]
        limits = pod_template(busy)["spec"]["containers"][0]["resources"]["limits"]
        assert use["cpu"] < parse_quantity(str(limits["cpu"])) and use["memory"] < parse_quantity(limits["memory"])
        assert find(done, ref)["spec"]["replicas"] >= keep["min_replicas"]
    # The solution's schedule annotation is a window the graders can read, within the weekly hours allowed.
    for ref in schedule["workloads"]:
        window = windows.parse_window(find(done, ref)["metadata"]["annotations"][schedule["annotation"]])
        monday = datetime(2026, 3, 30, tzinfo=UTC)
        hours_on = sum(windows.is_inside(window, monday + timedelta(hours=h)) for h in range(7 * 24))
        assert 0 < hours_on <= schedule["max_running_hours_per_week"]
    assert lab.time.window is not None


# --- rendering errors ---------------------------------------------------------------------------------------------


def test_render_starter_names_the_template_of_a_missing_variable(catalog: dict[str, Lab]) -> None:
    lab = catalog["idle-hunter"]
    incomplete = {k: v for k, v in context(lab.id).items() if k != "namespace"}
    with pytest.raises(CatalogError) as caught:
        loader.render_starter(lab, MANIFESTS_DIR, incomplete)
    message = str(caught.value)
    assert "manifests/labs/idle-hunter/idle-and-orphans.yaml.j2:" in message
    assert "'namespace' is undefined" in message


# --- broken lab files: errors name file, line and field -----------------------------------------------------------

GOOD = """\
# yaml-language-server: $schema=../lab.schema.json
title: Demo
summary: A lab for tests.
provider: kubernetes
budget:
  usd: 1.5
  thresholds:
    - {percent: 50, action: notify}
    - {percent: 100, action: suspend}
time:
  limit: 1h
  max_extension: 0
  off_hours: Mon-Fri 08:00-18:00 Europe/Berlin
quota:
  cpu: "2"
  memory: 2Gi
  pods: 10
  requests.nvidia.com/mig-1g.10gb: "1"
cost_labels:
  course: demo
  labctl.dev/lab: demo
required_labels: [team, env]
node_pools: [cpu-ondemand]
starter:
  - labs/demo/app.yaml.j2
graders:
  - id: tags
    script: graders/tag_coverage.py
    weight: 1
    params: {required_labels: [team, env]}
"""

TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
  namespace: {{ namespace }}
data:
  learner: {{ learner_id }}
"""


def make_catalog(root: Path, labs: dict[str, str], template: str = TEMPLATE) -> tuple[Path, Path]:
    labs_dir, manifests_dir = root / "labs", root / "manifests"
    for lab_id, text in labs.items():
        (labs_dir / lab_id).mkdir(parents=True)
        (labs_dir / lab_id / "lab.yaml").write_text(text)
        (manifests_dir / "labs" / lab_id).mkdir(parents=True)
        (manifests_dir / "labs" / lab_id / "app.yaml.j2").write_text(template)
    shutil.copy(FLEET_FILE, labs_dir / "fleet.yaml")
    (labs_dir / "lab.schema.json").write_text("{}")
    return labs_dir, manifests_dir


def test_a_good_lab_loads_with_defaults(tmp_path: Path) -> None:
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": GOOD})
    lab = loader.load_catalog(labs_dir, manifests_dir)["demo"]
    assert lab.id == "demo"
    assert lab.budget.usd == Decimal("1.5")
    assert lab.time.max_extension == "0" and lab.time.max_extension_delta == timedelta(0)
    assert lab.time.warn_before == "10m" and lab.time.idle_timeout is None
    assert lab.quota["pods"] == "10"
    assert lab.pod_security == "restricted" and lab.attempts == 1
    assert lab.limit_range.default_request.cpu == "100m"
    assert lab.model_dump(mode="json")["budget"]["usd"] == 1.5
    docs = loader.render_starter(lab, manifests_dir, context("demo"))
    assert docs == [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "namespace": "lab-demo-7f3a"},
                     "data": {"learner": "ada"}}]


def test_default_thresholds_notify_at_50_and_80_and_suspend_at_100(tmp_path: Path) -> None:
    text = re.sub(r"  thresholds:\n(    - .*\n)+", "", GOOD)
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": text})
    lab = loader.load_catalog(labs_dir, manifests_dir)["demo"]
    assert [(t.percent, t.action) for t in lab.budget.thresholds] == [(50, "notify"), (80, "notify"),
                                                                      (100, "suspend")]


# (text to replace, replacement, text on the expected line or None for no line, field, message)
TYPOS = [
    ("  thresholds:", "  tresholds:", "tresholds:", "budget.tresholds",
     "unknown field 'tresholds' (did you mean 'thresholds'?)"),
    ("action: suspend}", "action: suspnd}", "suspnd", "budget.thresholds.1.action",
     "Input should be 'notify', 'suspend' or 'terminate'"),
    ("{percent: 50, action: notify}", "{percent: 50, action: notify, channel: email}", "channel",
     "budget.thresholds.0.channel", "unknown field 'channel'; the fields here are percent, action"),
    ("{percent: 50,", "{percent: 1001,", "1001", "budget.thresholds.0.percent", "less than or equal to 1000"),
    ("{percent: 100,", "{percent: 50,", "  thresholds:", "budget.thresholds", "repeats percent 50"),
    ("{percent: 100,", "{percent: 40,", "  thresholds:", "budget.thresholds", "comes after 50 %"),
    ("action: suspend}", "action: notify}", "  thresholds:", "budget.thresholds", "nothing would stop the spending"),
    ("  usd: 1.5", "  usd: 0", "usd: 0", "budget.usd", "greater than 0"),
    ("  usd: 1.5\n", "", "budget:", "budget.usd", "required field is missing"),
    ("summary: A lab for tests.\n", "", None, "summary", "required field is missing"),
    ("  limit: 1h", "  limit: 90", "limit: 90", "time.limit", "90 has no unit"),
    ("  limit: 1h", "  limit: 1h30", "limit: 1h30", "time.limit", "'1h30' is not a duration"),
    ("  limit: 1h", "  limit: 5m", "time:", "time", "warn_before (10m) must be shorter than the limit (5m)"),
    ("  limit: 1h", "  limit: 1h\n  idle_timeout: 5x", "idle_timeout", "time.idle_timeout", "'5x' is not a duration"),
    ("  max_extension: 0", "  max_extension: -1h", "max_extension", "time.max_extension", "is not a duration"),
    ("Mon-Fri 08:00", "Mon-Fry 08:00", "off_hours", "time.off_hours", "unknown day 'Fry'"),
    ("Europe/Berlin", "Europe/Berln", "off_hours", "time.off_hours", "unknown time zone 'Europe/Berln'"),
    ("08:00-18:00", "18:00-08:00", "off_hours", "time.off_hours", "the window ends at 08:00"),
    ("provider: kubernetes", "provider: azure", "provider:", "provider",
     "Input should be 'kubernetes', 'aws' or 'gcp'"),
    ("provider: kubernetes", "provider: kubernetes\npod_security: privileged", "pod_security", "pod_security",
     "Input should be 'restricted' or 'baseline'"),
    ('  cpu: "2"', '  limits.cpu: "2"\n  cpu: "2"', "limits.cpu", 'quota["limits.cpu"]',
     "'limits.cpu' is not a quota labs may set"),
    ("mig-1g.10gb:", "mig-1g10gb:", "mig-1g10gb", 'quota["requests.nvidia.com/mig-1g10gb"]', "is not a quota"),
    ("  memory: 2Gi", "  memory: 2GB", "2GB", "quota.memory", "'2GB' is not a Kubernetes quantity"),
    ('mig-1g.10gb: "1"', 'mig-1g.10gb: "0.5"', "quota:", "quota", "counts objects or devices"),
    ("  pods: 10\n", "", "quota:", "quota", "a kubernetes lab needs quota for pods"),
    ("  course: demo", "  Course_: demo", "Course_", "cost_labels.Course_", "label key 'Course_'"),
    ("  course: demo", "  course: demo course", "demo course", "cost_labels.course",
     "label value 'demo course' must be at most 63 characters"),
    ("labctl.dev/lab: demo", "Labctl.Dev/lab: demo", "Labctl.Dev", 'cost_labels["Labctl.Dev/lab"]',
     "must be a DNS subdomain"),
    ("[team, env]", "[team, env, team]", "required_labels", "required_labels", "'team' is listed twice"),
    ("[team, env]", "[team, cost center]", "required_labels", "required_labels.1", "label key 'cost center'"),
    ("required_labels:", "required_label:", "required_label:", "required_label",
     "unknown field 'required_label' (did you mean 'required_labels'?)"),
    ("[cpu-ondemand]", "[gpu-h100]", "node_pools", "node_pools.0", "no node pool 'gpu-h100' in"),
    ("labs/demo/app.yaml.j2", "labs/demo/ap.yaml.j2", "ap.yaml.j2", "starter.0", "does not exist"),
    ("labs/demo/app.yaml.j2", "labs/demo/app.yaml", "app.yaml", "starter.0", "must be a Jinja2 template"),
    ("labs/demo/app.yaml.j2", "../secret.yaml.j2", "secret", "starter.0", "without '..'"),
    ("script: graders/tag_coverage.py", "script: tag_coverage.py", "script:", "graders.0.script",
     "must be a file path under graders/"),
    ("weight: 1", "weight: 0", "weight:", "graders.0.weight", "greater than 0"),
    ("    params:", "    parms:", "parms", "graders.0.parms", "unknown field 'parms' (did you mean 'params'?)"),
    ("    params: {required_labels: [team, env]}\n",
     "    params: {required_labels: [team, env]}\n  - {id: tags, script: graders/budget.py, weight: 1}\n",
     "graders:", "graders", "grader id 'tags' is used twice"),
    ("title: Demo", "title: Demo\nattempts: 0", "attempts", "attempts", "greater than or equal to 1"),
    ("title: Demo", "title: Demo\nlimit_range:\n  default_request: {cpu: '2', memory: 128Mi}", "limit_range",
     "limit_range", "default_request.cpu (2) is above default_limit.cpu (500m)"),
    ("title: Demo", "title: Demo\ntitle: Other", "title: Other", "title", "appears twice (first on line 2)"),
    ("title: Demo", "id: other\ntitle: Demo", "id: other", "id", "'other' differs from the directory name 'demo'"),
]


@pytest.mark.parametrize(("old", "new", "needle", "field", "message"), TYPOS,
                         ids=[f"{t[3]}:{t[4][:30]}" for t in TYPOS])
def test_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, needle: str | None, field: str,
                                         message: str) -> None:
    assert old in GOOD
    assert_problem(tmp_path, GOOD.replace(old, new, 1), needle, field, message)


def assert_problem(tmp_path: Path, text: str, needle: str | None, field: str, message: str) -> None:
    """Loading the lab ``text`` fails with ``message`` for ``field`` on the line holding ``needle``."""
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": text})
    with pytest.raises(CatalogError) as caught:
        loader.load_catalog(labs_dir, manifests_dir)
    source = loader.display_path(labs_dir / "demo" / "lab.yaml")
    if needle is None:
        where = source
    else:
        line = next(n for n, content in enumerate(text.splitlines(), start=1) if needle in content)
        where = f"{source}:{line}"
    expected = f"{where}: {field}: "
    lines = str(caught.value).splitlines()
    assert any(ln.startswith(expected) and message in ln for ln in lines), f"want {expected}...{message}, got {lines}"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    text = GOOD.replace("title: Demo", "title: [Demo")
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": text})
    with pytest.raises(CatalogError, match=r"lab\.yaml:\d+: not valid YAML"):
        loader.load_catalog(labs_dir, manifests_dir)


@pytest.mark.parametrize(("text", "message"), [("", "the file is empty"), ("- a\n- b\n", "a YAML mapping")])
def test_a_lab_file_is_a_mapping(tmp_path: Path, text: str, message: str) -> None:
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": text})
    with pytest.raises(CatalogError, match=message):
        loader.load_catalog(labs_dir, manifests_dir)


def test_every_problem_of_every_lab_is_reported_at_once(tmp_path: Path) -> None:
    broken = GOOD.replace("  thresholds:", "  tresholds:").replace("weight: 1", "weight: -2")
    other = GOOD.replace("provider: kubernetes", "provider: azure")
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": broken, "other": other, "fine": GOOD})
    (labs_dir / "empty-dir").mkdir()
    with pytest.raises(CatalogError) as caught:
        loader.load_catalog(labs_dir, manifests_dir)
    fields = [(Path(p.file).parent.name, p.field) for p in caught.value.problems]
    assert ("demo", "budget.tresholds") in fields
    assert ("demo", "graders.0.weight") in fields
    assert ("other", "provider") in fields
    assert any(p.file.endswith("empty-dir") and "needs a lab.yaml" in p.message for p in caught.value.problems)
    assert not any(name == "fine" for name, _ in fields)


def test_a_template_with_an_undefined_variable_fails_validation_naming_it(tmp_path: Path) -> None:
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": GOOD},
                                           template=TEMPLATE.replace("{{ learner_id }}", "{{ lerner_id }}"))
    with pytest.raises(CatalogError) as caught:
        loader.load_catalog(labs_dir, manifests_dir)
    template = loader.display_path(manifests_dir / "labs" / "demo" / "app.yaml.j2")
    assert str(caught.value).startswith(f"{template}:7: undefined variable: 'lerner_id' is undefined")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (TEMPLATE.replace("  namespace: {{ namespace }}\n", ""), "ConfigMap/app: metadata.namespace must be"),
        (TEMPLATE.replace("{{ namespace }}", "{{ namespace }"), "template syntax"),
        (TEMPLATE.replace("kind: ConfigMap", "kind: [ConfigMap"), "renders invalid YAML"),
        ("# nothing here\n", "renders no objects"),
        ("- just\n- a list\n", "must be a Kubernetes object"),
    ],
)
def test_broken_templates_are_caught_when_the_catalog_loads(tmp_path: Path, template: str, message: str) -> None:
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": GOOD}, template=template)
    with pytest.raises(CatalogError, match=re.escape(message)):
        loader.load_catalog(labs_dir, manifests_dir)


# --- demand declarations (the simulated world) --------------------------------------------------------------------

DEMAND_EXAMPLE = REPO_ROOT / "tests" / "fixtures" / "labs" / "llm-serving" / "lab.yaml"

DEMAND = """\
demand:
  time_scale: 288
  workloads:
    - workload: Deployment/web
      daily: {"00:00": 4, "12:00": 20}
      per_request: {cpu_core_seconds: 0.05, memory_per_rps: 2Mi}
      per_replica: {memory: 256Mi}
    - selector: {app: batch}
      rps: 3
"""


def test_the_example_demand_declaration_loads_with_its_templates_and_pools() -> None:
    lab = loader.load_checked_lab(DEMAND_EXAMPLE, manifests_dir=MANIFESTS_DIR, fleet_file=FLEET_FILE)
    assert lab.demand is not None
    assert (lab.demand.time_scale, lab.demand.start_seconds, lab.demand.grading_window_delta) == (
        288, 0, timedelta(days=1))
    (llm,) = lab.demand.workloads
    assert llm.key == "Deployment/llm-inference"
    assert llm.curve.period_seconds == 86400
    assert llm.curve.points == ((0, 4), (4 * 3600, 2), (9 * 3600, 10), (14 * 3600, 12), (20 * 3600, 8))
    assert (llm.per_request.cpu_core_seconds, llm.per_request.gpu_seconds) == (Decimal("0.15"), Decimal("0.02"))
    assert (llm.memory_per_rps_bytes, llm.base_memory_bytes) == (16 * 2**20, 5904 * 2**20)
    assert (llm.per_replica.gpu_memory_mib, llm.max_utilisation) == (7000, Decimal("0.9"))
    as_json = lab.model_dump(mode="json")
    assert as_json["demand"]["time_scale"] == 288 and as_json["demand"]["workloads"][0]["max_utilisation"] == 0.9
    assert Lab.model_validate(json.loads(json.dumps(as_json))) == lab


def test_demand_defaults_and_selector_targets(tmp_path: Path) -> None:
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": GOOD + DEMAND})
    demand = loader.load_catalog(labs_dir, manifests_dir)["demo"].demand
    assert demand is not None
    assert (demand.start, demand.grading_window) == ("Mon 00:00", "1d")
    web, batch = demand.workloads
    assert (web.max_utilisation, web.per_request.gpu_seconds, web.per_replica.gpu_memory_mib) == (1, 0, 0)
    assert batch.key == "selector app=batch"
    assert batch.curve.points == ((0, 3),)
    assert loader.load_catalog(*make_catalog(tmp_path / "none", {"demo": GOOD}))["demo"].demand is None
    assert "demand" in lab_json_schema()["properties"]


# (text to replace in DEMAND, replacement, text on the expected line, field, message)
DEMAND_TYPOS = [
    ('"12:00": 20}', '12:00: 20}', "daily", "demand.workloads.0.daily.720",
     "YAML read the time 12:00 as the number 720: quote times, '12:00'"),
    ('"12:00": 20}', '"24:00": 20}', "daily", "demand.workloads.0.daily.24:00", "'24:00': hours run 00-23"),
    ('"12:00": 20}', '"12:0": 20}', "daily", "demand.workloads.0.daily.12:0", "not a time of day: write '09:00'"),
    ('"12:00": 20}', '"12:00": -1}', "daily", "demand.workloads.0.daily.12:00", "greater than or equal to 0"),
    ('daily: {"00:00": 4, "12:00": 20}', "daily: {}", "daily", "demand.workloads.0.daily", "at least one point"),
    ("      rps: 3", "      rps: 3\n      shape: diurnal", "selector: {app: batch}", "demand.workloads.1",
     "exactly one of rps, daily, weekly or shape (found rps, shape)"),
    ("      rps: 3\n", "", "selector: {app: batch}", "demand.workloads.1",
     "give the demand as exactly one of rps, daily, weekly or shape"),
    ("      rps: 3", "      shape: diurnal", "selector: {app: batch}", "demand.workloads.1",
     "peak_rps goes with shape"),
    ("      rps: 3", "      shape: weekly-peak\n      peak_rps: 3", "shape", "demand.workloads.1.shape",
     "Input should be 'diurnal' or 'business-hours'"),
    ("      rps: 3", '      weekly: {"Mon 09:00": 3, "mon 09:00": 4}', "weekly", "demand.workloads.1.weekly",
     "'mon 09:00' and 'Mon 09:00' are the same time"),
    ("      rps: 3", '      weekly: {"Mun 09:00": 3}', "weekly", "demand.workloads.1.weekly.Mun 09:00",
     "unknown day 'Mun'; days are Mon, Tue"),
    ("      rps: 3", '      weekly: {"09:00": 3}', "weekly", "demand.workloads.1.weekly.09:00",
     "not a time of the week: write 'Mon 09:00'"),
    ("    - selector: {app: batch}", "    - selector: {}", "selector", "demand.workloads.1.selector",
     "an empty selector would match every pod"),
    ("    - selector: {app: batch}", "    - workload: Deployment/web", "workloads:", "demand.workloads",
     "Deployment/web has two demand declarations"),
    ("    - selector: {app: batch}", "    - workload: deployment/batch", "deployment/batch",
     "demand.workloads.1.workload", "must name a workload as Kind/name, e.g. 'Deployment/llm-inference'"),
    ("    - selector: {app: batch}", "    - selector: {app: batch}\n      workload: Deployment/batch",
     "selector: {app: batch}", "demand.workloads.1", "name the workload (workload: Deployment/name) or a label"),
    ("  time_scale: 288", "  time_scale: 0", "time_scale", "demand.time_scale", "greater than 0"),
    ("  time_scale: 288", "  time_scale: 288\n  grading_window: 24", "grading_window", "demand.grading_window",
     "24 has no unit"),
    ("  time_scale: 288", '  time_scale: 288\n  start: "09:00"', 'start: "09:00"', "demand.start",
     "not a time of the week: write 'Mon 09:00'"),
    ("{cpu_core_seconds: 0.05,", "{cpu_core_second: 0.05,", "cpu_core_second",
     "demand.workloads.0.per_request.cpu_core_second",
     "unknown field 'cpu_core_second' (did you mean 'cpu_core_seconds'?)"),
    ("memory_per_rps: 2Mi", "memory_per_rps: 2MB", "2MB", "demand.workloads.0.per_request.memory_per_rps",
     "'2MB' is not a Kubernetes quantity"),
    ("{memory: 256Mi}", "{memory: 256Mi, gpu_memory_mib: -1}", "gpu_memory_mib",
     "demand.workloads.0.per_replica.gpu_memory_mib", "greater than or equal to 0"),
    ("      rps: 3", "      rps: 3\n      max_utilisation: 1.5", "max_utilisation",
     "demand.workloads.1.max_utilisation", "less than or equal to 1"),
    ("    - selector: {app: batch}", "    - selector: {" + ", ".join(f"example.com/label-{i}: value-{i}"
                                                               for i in range(12)) + "}",
     "label-11", "demand.workloads.1", "the selector is too long to name the workload"),
    ("  workloads:\n", "  workload:\n", "workload:", "demand.workload",
     "unknown field 'workload' (did you mean 'workloads'?)"),
]


@pytest.mark.parametrize(("old", "new", "needle", "field", "message"), DEMAND_TYPOS,
                         ids=[f"{t[3]}:{t[4][:30]}" for t in DEMAND_TYPOS])
def test_demand_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, needle: str, field: str,
                                                message: str) -> None:
    assert old in DEMAND
    assert_problem(tmp_path, GOOD + DEMAND.replace(old, new, 1), needle, field, message)


# --- `labctl labs` ------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_the_shipped_catalog() -> None:
    result = runner.invoke(labs_cli.app, ["validate"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{len(SHIPPED) + len(SHIPPED_CLOUD)} labs valid"


def test_cli_validate_named_labs() -> None:
    paths = [str(LABS_DIR / "idle-hunter"), str(LABS_DIR / "gpu-rightsizing" / "lab.yaml")]
    result = runner.invoke(labs_cli.app, ["validate", *paths])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "2 labs valid"


def test_cli_validate_prints_each_error_with_file_line_and_field(tmp_path: Path) -> None:
    broken = GOOD.replace("action: suspend}", "action: suspnd}").replace("[cpu-ondemand]", "[gpu-h100]")
    labs_dir, manifests_dir = make_catalog(tmp_path, {"demo": broken})
    env = {"LABCTL_LABS_DIR": str(labs_dir), "LABCTL_MANIFESTS_DIR": str(manifests_dir),
           "LABCTL_FLEET_FILE": str(labs_dir / "fleet.yaml")}
    source = loader.display_path(labs_dir / "demo" / "lab.yaml")
    for args in (["validate"], ["validate", str(labs_dir / "demo")]):
        result = runner.invoke(labs_cli.app, args, env=env)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert f"{source}:9: budget.thresholds.1.action: Input should be 'notify', 'suspend' or 'terminate'" \
            in result.stderr
        assert f"{source}:23: node_pools.0: no node pool 'gpu-h100'" in result.stderr
        assert "2 problems in 1 file" in result.stderr
    listing = runner.invoke(labs_cli.app, ["list"], env=env)
    assert listing.exit_code == 1 and "the lab catalog is invalid" in listing.stderr


def test_cli_list_and_show() -> None:
    listing = runner.invoke(labs_cli.app, ["list", "-o", "json"])
    assert listing.exit_code == 0
    assert [row["id"] for row in json.loads(listing.stdout)] == sorted(SHIPPED + SHIPPED_CLOUD)
    shown = runner.invoke(labs_cli.app, ["show", "idle-hunter", "-o", "json"])
    assert shown.exit_code == 0
    lab = json.loads(shown.stdout)
    assert lab["time"]["off_hours"] == "Mon-Fri 07:00-21:00 Europe/Berlin"
    assert Lab.model_validate(lab) == loader.load_lab(LABS_DIR / "idle-hunter" / "lab.yaml")
    table = runner.invoke(labs_cli.app, ["show", "gpu-rightsizing"])
    assert table.exit_code == 0 and "gpu-right-size" in table.stdout
    missing = runner.invoke(labs_cli.app, ["show", "nope"])
    assert missing.exit_code == 1 and "no lab 'nope'" in missing.stderr


def test_cli_schema_prints_and_writes_the_schema(tmp_path: Path) -> None:
    printed = runner.invoke(labs_cli.app, ["schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == lab_json_schema()
    written = runner.invoke(labs_cli.app, ["schema", "--write"], env={"LABCTL_LABS_DIR": str(tmp_path)})
    assert written.exit_code == 0
    assert (tmp_path / "lab.schema.json").read_text() == loader.schema_text()


def test_settings_know_the_manifests_dir() -> None:
    assert Settings().manifests_dir == MANIFESTS_DIR


LABCTL = Path(sys.executable).parent / "labctl"


def test_labctl_labs_validate_as_a_process(tmp_path: Path) -> None:
    """The installed entry point, as a lab author runs it (needs `labs` mounted in labctl.cli.main)."""
    shipped = subprocess.run([str(LABCTL), "labs", "validate"], capture_output=True, text=True, timeout=60)
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout.strip() == f"{len(SHIPPED) + len(SHIPPED_CLOUD)} labs valid"
    _, manifests_dir = make_catalog(tmp_path, {"demo": GOOD.replace("    params:", "    parms:")})
    env = {**os.environ, "LABCTL_MANIFESTS_DIR": str(manifests_dir)}
    broken = subprocess.run([str(LABCTL), "labs", "validate", "labs/demo/lab.yaml"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env=env)
    assert broken.returncode == 1
    assert broken.stderr.splitlines() == [
        "labs/demo/lab.yaml:30: graders.0.parms: unknown field 'parms' (did you mean 'params'?)",
        "error: 1 problem in 1 file",
    ]
