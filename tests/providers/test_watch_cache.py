"""The cluster-wide watch cache against the real control plane: it holds what direct reads see, sandboxes only.

One cache per module (its initial lists and 15 watches), on the tests' own cluster. Each test makes its namespaces
straight through the API with labctl's session label (as a provisioned sandbox has), changes them, and compares the
cache's inventory with :func:`inventory.collect`'s direct reads of the same namespace, both built into snapshots.
Requests are counted with a counting wrapper around the ApiClient's ``call_api`` (``tests/support/kube_requests.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from labctl.catalog.models import Lab
from labctl.grading.snapshot import BudgetInfo, SessionInfo
from labctl.localcluster.cluster import LocalCluster
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes import cache, inventory, render, snapshot
from labctl.providers.kubernetes.client import api_client
from labctl.providers.kubernetes.inventory import Inventory
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from tests.support.kube_requests import Counted, count_requests
from tests.support.sandbox import MANIFESTS, deployment, learner_sandbox, pod, service, shipped_lab

TIMEOUT = (3.0, 20.0)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    return count_requests(monkeypatch)


@pytest.fixture(scope="module")
def watched(local_cluster: LocalCluster) -> Iterator[cache.ClusterCache]:
    with api_client(local_cluster.kubeconfig, pool_size=32, timeout=TIMEOUT) as api:
        cached = cache.ClusterCache(api, timeout=TIMEOUT)
        cached.start()
        assert cached.wait_ready(30), "the cache did not sync within 30 s"
        yield cached
        cached.stop()


@pytest.fixture
def namespaces(kube: client.ApiClient) -> Iterator[Callable[..., str]]:
    """Make namespaces (a sandbox's session label unless ``sandbox=False``), deleted after the test."""
    made: list[str] = []
    core = client.CoreV1Api(kube)

    def make(*, sandbox: bool = True) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        labels = {"labctl.dev/test": "1", **({render.SESSION_LABEL: name} if sandbox else {})}
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            core.delete_namespace(name, _request_timeout=30)
        except client.ApiException as exc:
            if exc.status != 404:  # a test that deleted its namespace already
                raise


def built(inv: Inventory, namespace: str) -> dict[str, Any]:
    """The snapshot an inventory makes (usage left out: the cache shares one usage list for a few seconds)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    inv.usage, inv.usage_source = {}, "requests"
    session = SessionInfo(id=namespace, lab_id="lab", learner_id="ada", provider="kubernetes", namespace=namespace,
                          started_at=now, taken_at=now)
    return snapshot.build(inv, session=session, budget=BudgetInfo(budget_usd=1.0), now=now).model_dump(mode="json")


def converged(watched: cache.ClusterCache, api: client.ApiClient, namespace: str,
              until: Callable[[dict[str, Any]], bool] = lambda _: True, wait_s: float = 20) -> dict[str, Any]:
    """The cache's snapshot of ``namespace`` once it equals the direct reads' (and ``until`` holds); fails the
    test with both when they never agree."""
    deadline = time.monotonic() + wait_s
    while True:
        held = watched.inventory(namespace)
        direct = built(inventory.collect(api, namespace), namespace)
        ours = built(held, namespace) if held is not None else None
        if ours == direct and until(direct):
            return direct
        if time.monotonic() > deadline:
            assert ours == direct, f"the cache never agreed with the direct reads of {namespace}"
            raise AssertionError(f"{namespace} never reached the expected state: {direct}")
        time.sleep(0.2)


def spec_for(lab: Lab, namespace: str) -> SandboxSpec:
    now = datetime.now(UTC)
    return SandboxSpec(session_id=namespace, lab=lab, learner_id="ada", namespace=namespace,
                       expires_at=now + timedelta(hours=1), budget_usd=1.0, started_at=now)


def names(snap: dict[str, Any], kind: str) -> set[str]:
    return {r["name"] for r in snap["resources"] if r["kind"] == kind}


def test_cache_equals_direct_reads_after_creates_updates_and_deletes(
        watched: cache.ClusterCache, kube: client.ApiClient, namespaces: Callable[..., str],
        local_cluster: LocalCluster) -> None:
    ns, elsewhere = namespaces(), namespaces(sandbox=False)
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    for target in (ns, elsewhere):
        core.create_namespaced_pod(target, pod("bare"))
        web = deployment("web")
        web["spec"]["replicas"] = 2
        apps.create_namespaced_deployment(target, web)
        core.create_namespaced_service(target, service("web"))
        core.create_namespaced_config_map(target, {"metadata": {"name": "figures"},
                                                   "data": {f"k{i}": "x" * 2000 for i in range(40)}})
        client.PolicyV1Api(kube).create_namespaced_pod_disruption_budget(target, {
            "metadata": {"name": "web"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
        client.AutoscalingV2Api(kube).create_namespaced_horizontal_pod_autoscaler(target, {
            "metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                     "name": "web"},
                                                  "minReplicas": 1, "maxReplicas": 3}})
    snap = converged(watched, kube, ns, lambda s: len(names(s, "Pod")) == 3 and bool(s["nodes"]))
    assert {"Deployment", "ReplicaSet", "Service", "PodDisruptionBudget"} <= {r["kind"] for r in snap["resources"]}
    assert snap["config_maps"][0]["truncated"] and snap["autoscalers"][0]["name"] == "web"

    # Updates: a label on the bare pod, the Deployment scaled up.
    core.patch_namespaced_pod("bare", ns, {"metadata": {"labels": {"team": "ml"}}})
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}})
    snap = converged(watched, kube, ns, lambda s: len(names(s, "Pod")) == 4)
    assert next(r for r in snap["resources"] if r["name"] == "bare")["labels"]["team"] == "ml"

    # Deletes: the bare pod is gone from the cache (never billed again), and so is the Service.
    core.delete_namespaced_pod("bare", ns, grace_period_seconds=0)
    core.delete_namespaced_service("web", ns)
    snap = converged(watched, kube, ns, lambda s: "bare" not in names(s, "Pod") and not names(s, "Service"))
    held = watched.inventory(ns)
    assert held is not None and "bare" not in {p["metadata"]["name"] for p in held.pods}

    # Objects of a namespace without the session label never enter the cache.
    assert watched.inventory(elsewhere) is None
    assert all(elsewhere not in shelf for shelf in watched._objects.values())
    assert all(elsewhere not in shelf for shelf in watched._held.values())
    # The cached objects are kept small: no managedFields, a ConfigMap's data cut to what the snapshot reads.
    assert held is not None and all("managedFields" not in o["metadata"] for o in held.pods + held.workloads)
    assert len(held.config_maps[0]["data"]) == cache.CONFIG_KEEP_KEYS


def test_a_namespace_that_goes_takes_its_objects(watched: cache.ClusterCache, kube: client.ApiClient,
                                                 namespaces: Callable[..., str]) -> None:
    ns = namespaces()
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(ns, pod("p"))
    converged(watched, kube, ns, lambda s: names(s, "Pod") == {"p"})
    core.delete_namespace(ns)
    deadline = time.monotonic() + 60
    while ns in watched.namespaces() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ns not in watched.namespaces() and watched.inventory(ns) is None
    assert all(ns not in shelf for shelf in watched._objects.values())


def _served_from_the_start(core: client.CoreV1Api) -> bool:
    """Whether the apiserver still answers a pod watch from resourceVersion 1 with events instead of 410 Gone."""
    response = core.list_pod_for_all_namespaces(watch=True, resource_version="1", timeout_seconds=1, limit=1,
                                                _preload_content=False, _request_timeout=10)
    try:
        first = response.readline()
    finally:
        response.release_conn()
    return b'"code":410' not in first


def age_out_the_first_pod_events(core: client.CoreV1Api, ns: str, name: str) -> None:
    """A young cluster's apiserver still holds its first pod events in its watch cache (rv 1 is served, not 410):
    label one pod again and again (each a pod event) until the oldest events are out of the cache's window, as they
    are on any cluster that has run a while."""
    deadline = time.monotonic() + 180
    count = 0
    while _served_from_the_start(core):
        assert time.monotonic() < deadline, f"resourceVersion 1 still served after {count} pod events"
        for _ in range(50):
            count += 1
            core.patch_namespaced_pod(name, ns, {"metadata": {"labels": {"churn": str(count)}}})
        time.sleep(1)


def test_expired_watch_relists_and_converges(watched: cache.ClusterCache, kube: client.ApiClient,
                                             namespaces: Callable[..., str]) -> None:
    """A watch resumed from a resourceVersion the apiserver no longer serves gets 410 Gone: the kind is listed
    again, and what changed meanwhile is in the cache."""
    ns = namespaces()
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(ns, pod("before"))
    converged(watched, kube, ns, lambda s: names(s, "Pod") == {"before"})
    age_out_the_first_pod_events(core, ns, "before")
    listed = watched.relists["Pod"]
    for _ in range(5):  # another event may move the position on before the watch ends: force it again
        watched._versions["Pod"] = "1"  # far older than the apiserver's window
        with watched._lock:
            current = watched._watches.get("Pod")
        if current is not None:
            current.stop()
        deadline = time.monotonic() + 10
        while watched.relists["Pod"] == listed and time.monotonic() < deadline:
            time.sleep(0.05)
        if watched.relists["Pod"] > listed:
            break
    assert watched.relists["Pod"] > listed, "the pod watch was never listed again after a 410"
    core.delete_namespaced_pod("before", ns, grace_period_seconds=0)
    core.create_namespaced_pod(ns, pod("after"))
    converged(watched, kube, ns, lambda s: names(s, "Pod") == {"after"})
    assert watched.ready


def test_unsynced_cache_is_never_read(local_cluster: LocalCluster, kube: client.ApiClient,
                                      namespaces: Callable[..., str]) -> None:
    """A cache whose kinds are not all synced answers None, so the caller reads directly (never meters zero)."""
    ns = namespaces()
    client.CoreV1Api(kube).create_namespaced_pod(ns, pod("p"))
    with api_client(local_cluster.kubeconfig, timeout=TIMEOUT) as api:
        cold = cache.ClusterCache(api, timeout=TIMEOUT)
        assert cold.inventory(ns) is None  # never listed
        cold.start()
        assert cold.wait_ready(30)
        deadline = time.monotonic() + 20
        while (held := cold.inventory(ns)) is None or not held.pods:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cold._set_synced(cache.KINDS[2], False)  # the pod watch broke
        assert cold.inventory(ns) is None
        cold.stop()


def test_sweep_reads_cost_no_request_per_namespace(local_cluster: LocalCluster, kube: client.ApiClient,
                                                   namespaces: Callable[..., str], counted: Counted) -> None:
    """Snapshots of many sandboxes (what each sweep's meter takes) send no request per namespace: the cache's one
    list+watch per kind and one usage list serve them all. Direct reads cost a dozen requests a namespace."""
    made = [namespaces() for _ in range(4)]
    core = client.CoreV1Api(kube)
    for ns in made:
        for i in range(3):
            core.create_namespaced_pod(ns, pod(f"p{i}"))
    provider = KubernetesSandboxes(local_cluster.kubeconfig, MANIFESTS, timeout=TIMEOUT)
    try:
        lab = shipped_lab("tag-for-showback")
        specs = [spec_for(lab, ns) for ns in made]
        provider.watch_cache()  # started and synced
        deadline = time.monotonic() + 20
        while any(len(provider.snapshot(s, now=datetime.now(UTC)).of_kind("Pod")) < 3 for s in specs):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        counted.calls.clear()
        for _ in range(3):  # three sweeps
            for spec in specs:
                assert len(provider.snapshot(spec, now=datetime.now(UTC)).of_kind("Pod")) == 3
        assert all(not counted.namespaced(ns) for ns in made), counted.calls
        assert len(counted.calls) <= 3, counted.calls  # at most one cluster-wide usage list a sweep
        assert all(path.startswith("/apis/metrics.k8s.io/") for _, path in counted.calls), counted.calls
        # The cache's own requests: one list and watches per kind, each across the cluster.
        watches = provider.watch_cache().relists
        assert all(count == 1 for count in watches.values()), watches

        counted.calls.clear()
        inventory.collect(provider._client(), made[0])
        assert len(counted.namespaced(made[0])) >= 13  # the old way: every kind listed again per namespace
    finally:
        provider.close()


def test_a_frozen_sandbox_is_graded_from_the_apiserver(local_cluster: LocalCluster, tmp_path: Path,
                                                       counted: Counted) -> None:
    """At submission the sandbox is frozen, then snapshotted: that snapshot is read from the apiserver (never
    from the cache, which may lag), so the grade holds what was there at the freeze, however quick the learner."""
    with learner_sandbox(local_cluster, shipped_lab("tag-for-showback"), tmp_path) as box:
        provider = box.provider
        provider.watch_cache()
        box.create(pod("last-second"))
        provider.freeze(box.spec, frozen=True)
        counted.calls.clear()
        graded = provider.snapshot(box.spec, now=datetime.now(UTC))
        assert "last-second" in {r.name for r in graded.of_kind("Pod")}
        assert len(counted.namespaced(box.namespace)) >= 13  # read directly, every kind
        provider.freeze(box.spec, frozen=False)
        deadline = time.monotonic() + 20
        while True:  # writable again: read from the cache (no request in the namespace)
            counted.calls.clear()
            again = provider.snapshot(box.spec, now=datetime.now(UTC))
            if not counted.namespaced(box.namespace):
                break
            assert time.monotonic() < deadline, "the cache never served the sandbox after it was unfrozen"
            time.sleep(0.2)
        assert "last-second" in {r.name for r in again.of_kind("Pod")}
