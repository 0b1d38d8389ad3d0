"""Each lab's reference solution and its wrong solutions, applied to a live sandbox, submitted and graded.

For every (lab, variant): a session is started through the API of an in-process app (its own store, a fake clock, no
background loops: the pattern of tests/sweeps), which records the starter's burn rate the budget graders compare with
while provisioning; the starter's pods settle and one sweep meters them; the objects the variant's ``delete.yaml``
lists are deleted (foreground, waited for) and its manifests applied with server-side apply, as labctl's provider
applies starters; the pods settle again (running, or Pending as Unschedulable where the variant makes them so); the
clock moves 15 minutes (under every lab's idle timeout, so the sweep does not suspend the session; an hour from the
real time for the labs graded on unit cost, :data:`UNIT_PRICED`) and one sweep accrues the ledger; then ``POST
/v1/sessions/{id}/submissions`` and ``GET /v1/submissions/{id}``. The reference solution must score full marks; each
wrong solution must fail exactly its listed checks, with the listed scores and feedback naming the offenders.

Variants are manifests next to the reference solution: ``manifests/labs/<lab>/solution/`` (the templates lab.yaml
lists) and ``manifests/labs/<lab>/wrong/<variant>/*.yaml.j2``, each directory with an optional ``delete.yaml``
(``delete: [Kind/name, ...]``). Every case is prepared up front by a module fixture: one chain per lab, the
chains in parallel, a lab's cases one after another, each session stopped before the next starts (the GPU lab's whole
A100s are few).

Facts of the local control plane the expectations rest on: kwok's stock stages complete Job pods at once (the
starter's ``pod-complete`` delay annotation is not honoured), so the starter's backfill Job of move-batch-to-spot
would live a few seconds and the starter's baseline would hold 0 to 4 of its pods depending on the moment (one in a
full-suite run made ``spot-selector-without-toleration`` pass ``burn-rate``). The labs here are a copy in which that
starter is its thumbnailer alone (:data:`STARTER_CUT`), so the starter's burn rate is the thumbnailer's by
construction; the variants apply their Job as a learner would, without deleting a starter Job that is not there.
Pods of a Deployment whose new pods cannot be
scheduled keep running (maxUnavailable of 2 replicas rounds down to 0), so a stalled rollout still bills the old pods.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from api.app import create_app
from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT, Settings
from tests.support.clock import FakeClock
from tests.support.lab_copies import without_starters
from tests.support.server import ADMIN_TOKEN

pytestmark = pytest.mark.cluster

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MANIFESTS = REPO_ROOT / "manifests"
LABS = REPO_ROOT / "labs"
# Starter objects the live labs go without (the module docstring says why): lab -> the cut object's template and ref.
STARTER_CUT = {"move-batch-to-spot": ("labs/move-batch-to-spot/embeddings-backfill.yaml.j2", "Job/embeddings-backfill")}
# A Wednesday inside idle-hunter's working window (11:00 in Berlin): no off-hours suspension.
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
METERED_MINUTES = 15  # the labs' idle timeouts are 20 and 30 minutes
# Labs graded on cost per 1,000 requests: a pod's cost so far is its price x the hours since its real start, while
# the requests it served are counted over the fake clock's span, so for these labs the fake clock starts at the
# real time and meters an hour (under their 90-minute idle timeouts): the pods' hours then match the counted span
# to within the half a minute a rollout takes (under 1 %).
UNIT_PRICED = {"autoscale-to-demand": 60, "cost-per-inference": 60}
SETTLE_S = 150.0
SESSION_LABEL = "labctl.dev/session"
_STARTUP = threading.Lock()
API_VERSIONS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1",
                "PersistentVolumeClaim": "v1", "Service": "v1", "PodDisruptionBudget": "policy/v1",
                "ConfigMap": "v1", "HorizontalPodAutoscaler": "autoscaling/v2"}

Key = tuple[str, str]  # (lab grader id, check id)
Json = dict[str, Any]



@dataclass(frozen=True)
class Variant:
    """A solution to apply: the checks it must fail (exact score, or None for "below full"), and what their
    feedback must name; ``pending`` pods are left Pending as Unschedulable on purpose."""

    lab: str
    name: str  # "solution", or a directory under wrong/
    loses: Mapping[Key, float | None] = field(default_factory=dict)
    names: Mapping[Key, tuple[str, ...]] = field(default_factory=dict)
    pending: int = 0

    @property
    def id(self) -> str:
        return f"{self.lab}:{self.name}"

    @property
    def metered_minutes(self) -> int:
        return UNIT_PRICED.get(self.lab, METERED_MINUTES)

    def clock(self) -> FakeClock:
        return FakeClock(datetime.now(UTC).replace(microsecond=0) if self.lab in UNIT_PRICED else WEDNESDAY)

    @property
    def directory(self) -> Path:
        base = MANIFESTS / "labs" / self.lab
        return base / "solution" if self.name == "solution" else base / "wrong" / self.name

    def templates(self, lab: Lab) -> list[str]:
        if self.name == "solution":
            return list(lab.solution)
        return sorted(p.relative_to(MANIFESTS).as_posix() for p in self.directory.glob("*.yaml.j2"))

    def deletions(self) -> list[str]:
        path = self.directory / "delete.yaml"
        if not path.is_file():
            return []
        refs = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("delete") or []
        assert all(isinstance(r, str) and r.count("/") == 1 for r in refs), f"{path}: delete: [Kind/name, ...]"
        return list(refs)


# --- the expectations -------------------------------------------------------------------------------------------------

POD_LABELS = ("pod-label-coverage", "label-coverage")
WORKLOAD_LABELS = ("workload-label-coverage", "label-coverage")
OWNERS = ("owner-values", "label-coverage")
TAG_WORKLOADS = ("Deployment/web-frontend", "Deployment/recommender-api", "Deployment/model-cache",
                 "CronJob/feature-store-sync")
RECOMMENDER = "Deployment/recommender-api"

SPOT_SHARE = ("on-spot", "spot-share")
SPOT_READY = ("on-spot", "spot-ready")
THUMBNAILER = ("interruption-tolerant", "Deployment/thumbnailer")
CHEAPER = ("cheaper-per-hour", "burn-rate")
BATCH = ("Job/embeddings-backfill", "Deployment/thumbnailer")

GPU_SIZE = ("gpu-right-size", "gpu-size:Deployment/llm-inference")
GPU_SHARE = ("gpu-on-spot", "spot-share")
GPU_READY = ("gpu-on-spot", "spot-ready")
GPU_REPLICAS = ("gpu-on-spot", "replicas")
GPU_BURN = ("within-budget", "burn-rate")
LLM = "Deployment/llm-inference"

STOREFRONT = "Deployment/storefront"
STOREFRONT_SLO = ("slo", f"slo:{STOREFRONT}")
STOREFRONT_UNIT = ("unit-cost", f"unit-cost:{STOREFRONT}")
STOREFRONT_SHARE = ("on-spot", "spot-share")
STOREFRONT_READY = ("on-spot", "spot-ready")
STOREFRONT_PDB = ("disruption-budget", STOREFRONT)

CHAT = "Deployment/chat-inference"
CHAT_SLO = ("slo", f"slo:{CHAT}")
CHAT_UNIT = ("unit-cost", f"unit-cost:{CHAT}")
CHAT_SIZE = ("gpu-right-size", f"gpu-size:{CHAT}")
CHAT_REPORT = ("reported-unit-cost", f"reported-unit-cost:{CHAT}")

ORPHANS = ("idle-and-orphans", "orphans")
KEPT = ("idle-and-orphans", "kept-workloads")
SCHEDULE = ("off-hours-schedule", "schedule:Deployment/orders-worker")
IDLE_SHARE = ("idle-waste-gone", "idle-share")
WORKER = "Deployment/orders-worker"
ORPHAN_REFS = ("PersistentVolumeClaim/scratch-data", "Service/old-demo")

VARIANTS = [
    Variant("tag-for-showback", "solution"),
    Variant("tag-for-showback", "labels-on-workloads-only", {POD_LABELS: 0.0, OWNERS: 0.0},
            {POD_LABELS: TAG_WORKLOADS, OWNERS: TAG_WORKLOADS}),
    Variant("tag-for-showback", "placeholder-team", {POD_LABELS: 0.75, WORKLOAD_LABELS: 0.75, OWNERS: 0.75},
            {POD_LABELS: (RECOMMENDER, "placeholder team='tbd'"), WORKLOAD_LABELS: (RECOMMENDER, "team='tbd'"),
             OWNERS: (RECOMMENDER, "expected ml-platform")}),

    Variant("move-batch-to-spot", "solution"),
    # The Job's 4 pods and the thumbnailer's surge pod stay Pending; the 2 old thumbnailer pods keep running on
    # on-demand, so the burn rate is the starter's (the live labs' starter is the thumbnailer alone).
    Variant("move-batch-to-spot", "spot-selector-without-toleration", {SPOT_SHARE: 0.0, SPOT_READY: 0.5, CHEAPER: 0.0},
            {SPOT_SHARE: BATCH, SPOT_READY: (*BATCH, "does not tolerate the spot taint"),
             CHEAPER: ("more than 60% of the starter's",)}, pending=5),
    Variant("move-batch-to-spot", "single-replica-no-pdb", {THUMBNAILER: 0.0},
            {THUMBNAILER: ("Deployment/thumbnailer", "1 replicas", "no PodDisruptionBudget")}),

    Variant("gpu-rightsizing", "solution"),
    Variant("gpu-rightsizing", "mig-2g-20gb", {GPU_SIZE: 0.5}, {GPU_SIZE: (LLM, "2g.20gb", "1g.10gb")}),
    Variant("gpu-rightsizing", "single-replica", {GPU_REPLICAS: 0.0}, {GPU_REPLICAS: (LLM,)}),
    # The surge pod stays Pending; both old pods keep a whole on-demand A100 each.
    Variant("gpu-rightsizing", "no-spot-toleration",
            {GPU_SIZE: 1 / 3, GPU_SHARE: 0.0, GPU_READY: 0.5, GPU_BURN: 0.0},
            {GPU_SIZE: (LLM, "2 of 3 pods still hold the old request"), GPU_SHARE: (LLM,),
             GPU_READY: (LLM, "cloud.google.com/gke-spot"), GPU_BURN: ("more than 20% of the starter's",)},
            pending=1),

    Variant("autoscale-to-demand", "solution"),
    # 1 replica serves 16 requests/s of a curve from 8 to 72: 362.67 of the day's 928 rps-hours, 39.08 %, which
    # scores 0.3908 / 0.99; its budget (maxUnavailable 1) lets the only pod go.
    Variant("autoscale-to-demand", "one-replica", {STOREFRONT_SLO: 0.394752, STOREFRONT_PDB: 0.0},
            {STOREFRONT_SLO: (STOREFRONT, "below the 99.0% target"), STOREFRONT_PDB: (STOREFRONT, "1 replicas")}),
    Variant("autoscale-to-demand", "hpa-max-too-low", {STOREFRONT_SLO: None},
            {STOREFRONT_SLO: (STOREFRONT, "below the 99.0% target")}),
    Variant("autoscale-to-demand", "spot-without-pdb", {STOREFRONT_PDB: 0.5},
            {STOREFRONT_PDB: (STOREFRONT, "no PodDisruptionBudget")}),
    Variant("autoscale-to-demand", "unchanged-starter",
            {STOREFRONT_UNIT: 0.0, STOREFRONT_SHARE: 0.0, STOREFRONT_READY: 0.0, STOREFRONT_PDB: 0.5},
            {STOREFRONT_UNIT: (STOREFRONT, "above the $0.0004 target"), STOREFRONT_SHARE: (STOREFRONT,),
             STOREFRONT_READY: (STOREFRONT,), STOREFRONT_PDB: (STOREFRONT, "no PodDisruptionBudget")}),

    Variant("cost-per-inference", "solution"),
    # Every 1g.10gb pod fails (GPU OOM: 14000 MiB in 10 GiB) and serves nothing.
    Variant("cost-per-inference", "mig-too-small",
            {CHAT_SLO: 0.0, CHAT_UNIT: 0.0, CHAT_SIZE: None, CHAT_REPORT: 0.0},
            {CHAT_SLO: (CHAT,), CHAT_UNIT: (CHAT, "served no request"), CHAT_SIZE: (CHAT,),
             CHAT_REPORT: (CHAT, "served no request")}),
    Variant("cost-per-inference", "mig-too-large", {CHAT_UNIT: None, CHAT_SIZE: 0.5},
            {CHAT_UNIT: (CHAT, "above the $0.0130 target"), CHAT_SIZE: (CHAT, "3g.40gb", "2g.20gb")}),
    Variant("cost-per-inference", "scaled-to-zero", {CHAT_SLO: 0.0, CHAT_UNIT: 0.0, CHAT_SIZE: 0.0, CHAT_REPORT: 0.0},
            {CHAT_SLO: (CHAT,), CHAT_UNIT: (CHAT, "served no request"), CHAT_SIZE: (CHAT,),
             CHAT_REPORT: (CHAT, "served no request")}),
    Variant("cost-per-inference", "unit-cost-misreported", {CHAT_REPORT: 0.0},
            {CHAT_REPORT: ("ConfigMap/unit-cost", "$0.00934", "not within 10%")}),

    Variant("idle-hunter", "solution"),
    Variant("idle-hunter", "orphans-kept", {ORPHANS: 0.0, IDLE_SHARE: None},
            {ORPHANS: ORPHAN_REFS, IDLE_SHARE: ORPHAN_REFS}),
    Variant("idle-hunter", "everything-deleted", {KEPT: 0.0, SCHEDULE: 0.0},
            {KEPT: (WORKER, "was deleted"), SCHEDULE: (WORKER, "is gone")}),
    Variant("idle-hunter", "window-too-long", {SCHEDULE: 0.5}, {SCHEDULE: (WORKER, "98 hours a week", "more than 70")}),
]


@cache
def catalog() -> dict[str, Lab]:
    """The shipped Kubernetes labs (cloud labs are graded with their provider's tests, e.g. tests/gcp)."""
    labs = loader.load_catalog(LABS, MANIFESTS)
    return {lab_id: lab for lab_id, lab in labs.items() if lab.provider == "kubernetes"}


def test_every_shipped_variant_is_in_the_table() -> None:
    """Each lab ships at least two wrong solutions, and each one on disk is tested here."""
    on_disk = {f"{lab}:{p.name}" for lab in catalog() for p in (MANIFESTS / "labs" / lab / "wrong").iterdir()
               if p.is_dir()}
    tabled = {v.id for v in VARIANTS if v.name != "solution"}
    assert on_disk == tabled
    for lab in catalog():
        assert sum(v.lab == lab and v.name != "solution" for v in VARIANTS) >= 2, lab
        assert any(v.lab == lab and v.name == "solution" for v in VARIANTS), lab


def _pod_spec(doc: Json) -> Json | None:
    spec = doc.get("spec") or {}
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template")
    return template["spec"] if template else None


def test_variants_render_into_the_session_namespace_and_are_restricted() -> None:
    """Every template renders with the starter's context into objects of the session namespace (or the variant
    only deletes), and every pod template meets Pod Security ``restricted`` as the starters do."""
    for variant in VARIANTS:
        lab = catalog()[variant.lab]
        context = loader.sample_context(lab)
        docs = loader.render_templates(variant.templates(lab), MANIFESTS, context)
        assert docs or variant.deletions(), f"{variant.id} applies nothing and deletes nothing"
        for doc in docs:
            where = f"{variant.id}: {doc['kind']}/{doc['metadata']['name']}"
            assert doc["metadata"]["namespace"] == context["namespace"], where
            pod = _pod_spec(doc)
            if pod is None:
                continue
            security = pod.get("securityContext") or {}
            assert security.get("runAsNonRoot") is True, where
            assert (security.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where
            for container in pod["containers"]:
                context_c = container.get("securityContext") or {}
                assert context_c.get("allowPrivilegeEscalation") is False, where
                assert (context_c.get("capabilities") or {}).get("drop") == ["ALL"], where
        assert all(ref.split("/")[0] in API_VERSIONS for ref in variant.deletions()), variant.id


# --- preparing the cases on the live cluster --------------------------------------------------------------------------


@dataclass
class Outcome:
    variant: Variant
    submission: Json | None = None
    error: str | None = None
    seconds: float = 0.0


def _unschedulable(pod: Any) -> bool:
    return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
               for c in pod.status.conditions or [])


def _job_finished(job: Any) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])


def _unsettled(kube: client.ApiClient, ns: str, pending: int) -> list[str]:
    """What keeps the namespace from being settled (empty when it is): pods still starting, stopping or
    unexpectedly unschedulable, Deployments mid-rollout, Jobs still running."""
    core, apps, batch = client.CoreV1Api(kube), client.AppsV1Api(kube), client.BatchV1Api(kube)
    reasons: list[str] = []
    stuck = 0
    for pod in core.list_namespaced_pod(ns).items:
        name, phase = pod.metadata.name, pod.status.phase
        if pod.metadata.deletion_timestamp is not None:
            reasons.append(f"Pod/{name} terminating")
        elif phase == "Pending" and _unschedulable(pod):
            stuck += 1
        elif phase not in ("Running", "Succeeded", "Failed"):
            reasons.append(f"Pod/{name} {phase}")
    if stuck != pending:
        reasons.append(f"{stuck} pods Unschedulable, expected {pending}"
                       + (" (is the shared cluster full?)" if stuck > pending else ""))
    for d in apps.list_namespaced_deployment(ns).items:
        s = d.status
        if (s.observed_generation or 0) < (d.metadata.generation or 0):
            reasons.append(f"Deployment/{d.metadata.name} not observed yet")
        elif not pending and not (d.spec.replicas == (s.updated_replicas or 0) == (s.ready_replicas or 0)
                                  == (s.replicas or 0)):
            reasons.append(f"Deployment/{d.metadata.name} rolling out")
    if not pending:
        reasons += [f"Job/{j.metadata.name} running" for j in batch.list_namespaced_job(ns).items
                    if not _job_finished(j)]
    return reasons


class StarterStuck(AssertionError):
    """The lab's starter did not settle: the cluster is likely short of room, so the lab's other cases would too."""


def _wait_settled(kube: client.ApiClient, ns: str, pending: int, what: str,
                  error: type[AssertionError] = AssertionError) -> None:
    deadline = time.monotonic() + SETTLE_S
    while reasons := _unsettled(kube, ns, pending):
        if time.monotonic() > deadline:
            raise error(f"{what} in {ns} did not settle within {SETTLE_S:.0f}s: {'; '.join(reasons[:8])}")
        time.sleep(1)


def _delete(kube: client.ApiClient, ns: str, refs: list[str]) -> None:
    """Delete ``Kind/name`` objects in the foreground (a Job goes only after its pods) and wait until they are gone."""
    dyn = dynamic.DynamicClient(kube)
    targets = []
    for ref in refs:
        kind, name = ref.split("/")
        resource = dyn.resources.get(api_version=API_VERSIONS[kind], kind=kind)
        dyn.delete(resource, name=name, namespace=ns, body={"propagationPolicy": "Foreground"})
        targets.append((resource, name))
    deadline = time.monotonic() + SETTLE_S
    for resource, name in targets:
        while True:
            try:
                dyn.get(resource, name=name, namespace=ns)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                raise AssertionError(f"{resource.kind}/{name} in {ns} still exists {SETTLE_S:.0f}s after deletion")
            time.sleep(0.5)


def _objects(variant: Variant, lab: Lab, session: Json) -> list[Json]:
    context = {"namespace": session["namespace"], "session_id": session["id"], "lab_id": lab.id,
               "learner_id": session["learner_id"]}
    docs = loader.render_templates(variant.templates(lab), MANIFESTS, context)
    for doc in docs:  # keep the session label the starter's objects carry
        meta = doc["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), SESSION_LABEL: session["id"]}
    return docs


def _grade_live(variant: Variant, data_dir: Path, cluster: LocalCluster, kube: client.ApiClient) -> Json:
    labs = without_starters(data_dir, {lab_id: template for lab_id, (template, _) in STARTER_CUT.items()})
    settings = Settings(data_dir=data_dir, kubeconfig=cluster.kubeconfig, admin_token=ADMIN_TOKEN, labs_dir=labs,
                        fleet_file=LABS / "fleet.yaml", database_url=f"sqlite:///{data_dir / 'labctl.db'}")
    app = create_app(settings, background=False)
    clock = variant.clock()
    rt = app.state.parts.runtime
    rt.sessions.clock = clock
    lab = rt.catalog[variant.lab]
    with ExitStack() as stack:
        with _STARTUP:  # the app's start-up runs Alembic's migrations, which are not thread-safe
            http = stack.enter_context(TestClient(app))
        started = http.post("/v1/sessions", json={"lab_id": lab.id, "learner_id": f"live-{variant.name}"},
                            headers=HEADERS)
        assert started.status_code == 201, started.text
        session = started.json()
        ns = session["namespace"]
        try:
            _wait_settled(kube, ns, 0, "the starter", StarterStuck)
            rt.sweeper.run_once()  # the first reading: the starter's burn rate
            cut = STARTER_CUT.get(variant.lab, ("", ""))[1]
            _delete(kube, ns, [ref for ref in variant.deletions() if ref != cut])
            rt.provider.apply(_objects(variant, lab, session))
            _wait_settled(kube, ns, variant.pending, variant.id)
            clock.advance(minutes=variant.metered_minutes)
            report = rt.sweeper.run_once()
            assert not report.errors, report.errors
            now = http.get(f"/v1/sessions/{session['id']}", headers=HEADERS).json()
            assert now["state"] == "ready", now
            assert now["cost"]["accrued_usd"] > 0, now["cost"]
            posted = http.post(f"/v1/sessions/{session['id']}/submissions", headers=HEADERS)
            assert posted.status_code == 202, posted.text
            # The test client runs the grading (a background task) before it returns; poll anyway.
            deadline = time.monotonic() + 60
            while True:
                submission: Json = http.get(f"/v1/submissions/{posted.json()['id']}", headers=HEADERS).json()
                if submission["state"] != "grading" or time.monotonic() > deadline:
                    return submission
                time.sleep(0.5)
        finally:
            # Stopping runs in the background task: it returns once the namespace is gone.
            http.delete(f"/v1/sessions/{session['id']}", headers=HEADERS)


def _chain(variants: list[Variant], dirs: Mapping[str, Path], cluster: LocalCluster,
           kube: client.ApiClient) -> list[Outcome]:
    outcomes: list[Outcome] = []
    stuck: str | None = None
    for variant in variants:
        outcome = Outcome(variant)
        started = time.monotonic()
        if stuck is not None:  # do not wait for the same full cluster once per case
            outcome.error = f"not run: an earlier case's starter did not settle: {stuck}"
        else:
            try:
                outcome.submission = _grade_live(variant, dirs[variant.id], cluster, kube)
            except StarterStuck as exc:
                stuck = str(exc)
                outcome.error = traceback.format_exc()
            except Exception:  # reported by the variant's own test
                outcome.error = traceback.format_exc()
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
    return outcomes


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, local_cluster: LocalCluster, kube: client.ApiClient,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    # Only the cases this run selected (``-k gpu`` prepares the GPU lab's alone).
    selected = {item.callspec.params["variant"].id for item in request.session.items
                if hasattr(item, "callspec") and isinstance(item.callspec.params.get("variant"), Variant)}
    wanted = [v for v in VARIANTS if v.id in selected]
    dirs = {v.id: tmp_path_factory.mktemp(v.id.replace(":", "-")) for v in wanted}
    chains = [[v for v in wanted if v.lab == lab] for lab in dict.fromkeys(v.lab for v in wanted)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(chains), thread_name_prefix="lab") as pool:
        done = list(pool.map(lambda chain: _chain(chain, dirs, local_cluster, kube), chains))
    results = {o.variant.id: o for chain in done for o in chain}
    print(f"\nprepared {len(results)} live cases in {time.monotonic() - started:.0f}s: "
          + ", ".join(f"{key} {o.seconds:.0f}s" for key, o in results.items()))
    yield results


# --- the grades -----------------------------------------------------------------------------------------------------


def _shown(checks: Mapping[Key, Json], keys: set[Key]) -> str:
    return "\n".join(f"{k}: passed={checks[k]['passed']} score={checks[k]['score']}: {checks[k]['feedback']}"
                     for k in sorted(keys))


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_live_grade(variant: Variant, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[variant.id]
    assert outcome.error is None, outcome.error
    submission = outcome.submission
    assert submission is not None
    assert submission["state"] == "graded", submission.get("error")
    lab = catalog()[variant.lab]
    checks = {(c["grader"], c["id"]): c for c in submission["checks"]}
    assert {g for g, _ in checks} == {g.id for g in lab.graders}
    errors = {k for k, c in checks.items() if c["status"] == "error"}
    assert not errors, _shown(checks, errors)
    failed = {k for k, c in checks.items() if not c["passed"]}
    assert failed == set(variant.loses), _shown(checks, (failed ^ set(variant.loses)) & set(checks))
    for key, expected in variant.loses.items():
        check = checks[key]
        if expected is None:
            assert check["score"] < check["max_score"], check["feedback"]
        else:
            # abs 1e-3: the store keeps the starter's burn rate to 6 decimals while the snapshot's is exact, so a
            # burn rate equal to the starter's scores a few 1e-5 rather than 0.
            assert check["score"] == pytest.approx(expected, abs=1e-3), check["feedback"]
        assert check["evidence"], f"{key} failed without evidence"
    for key, needles in variant.names.items():
        for needle in needles:
            assert needle in checks[key]["feedback"], f"{key}: {needle!r} not in {checks[key]['feedback']!r}"
    if variant.loses:
        assert submission["score"] < submission["max_score"]
    else:
        assert submission["score"] == submission["max_score"] == lab.max_score
    assert submission["receipt"] and submission["receipt"]["text"]
