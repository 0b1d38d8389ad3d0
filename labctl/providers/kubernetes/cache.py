"""One cluster-wide list+watch cache of what the meter reads, so a sweep costs one list per kind, not one per sandbox.

Each kind :func:`labctl.providers.kubernetes.inventory.collect` reads (pods, workloads, PVCs, Services,
EndpointSlices, PodDisruptionBudgets, ConfigMaps, HorizontalPodAutoscalers, nodes) and the namespaces themselves get a
thread that lists the kind across the cluster (paged), then watches it from the list's resourceVersion, informer-style:
a watch that ends (``timeout_seconds``) resumes from the last resourceVersion it saw (bookmarks included, so a quiet
kind's position stays fresh); a 410 Gone (the position fell out of the apiserver's window) relists; any other failure
reconnects after a growing, jittered pause and resumes.

What enters: only objects of labctl's sandbox namespaces (those carrying the session label). The apiserver can select
namespaced objects only by their own labels and fields, not by their namespace's labels, so the control plane's own
namespaces are cut server-side (a ``metadata.namespace!=`` field selector) and every other object is admitted by the
namespace watch's verdict: sandbox -> stored, another namespace -> dropped, a namespace the namespace watch has not
reported yet (the streams are independent) -> held aside until it does. A namespace that goes takes its objects with
it; a DELETED event removes the object, so a pod that is gone is never billed.

Memory: the objects of a sandbox are the learner's, so the cache bounds them itself: each sandbox may hold
:data:`MAX_SANDBOX_BYTES` of objects (their JSON size as kept); one that grows beyond is dropped from the cache and
read directly from then on. Its quota bounds what a learner can make anyway (pods, ConfigMaps, Deployments, Jobs,
Services, PVCs), but not every kind nor an object's size (annotations alone may hold 256 KiB). Objects are kept
without their ``managedFields``, and ConfigMaps with no more of their data than the snapshot reads
(:data:`CONFIG_KEEP_KEYS` keys, values cut one character past the snapshot's cap, so its ``truncated`` verdict is
unchanged). So the cache holds at most sandboxes x :data:`MAX_SANDBOX_BYTES` plus the nodes.

Readers never wait on a broken watch: :meth:`ClusterCache.inventory` answers ``None`` (read directly, the caller's
fallback) unless every kind is synced: listed, and its watch connected since its last failure (a watch that failed is
unsynced until its resumed stream delivers an event or a bookmark, or ends cleanly). A watch on an apiserver that
stops answering hangs instead of failing, so the provider distrusts the cache (:meth:`~ClusterCache.distrust`)
whenever one of its requests (the sweep's listing, the shared usage list) goes unanswered. Usage is not watchable
(metrics.k8s.io serves lists only): one cluster-wide list is shared by every sandbox read within
:data:`USAGE_MAX_AGE_S`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from labctl.grading.snapshot import UsageSource
from labctl.providers.kubernetes import inventory, render, snapshot
from labctl.providers.kubernetes.inventory import Inventory

log = logging.getLogger("labctl.providers.kubernetes.cache")

Json = dict[str, Any]
WATCH_S = 60  # each watch request ends after this long and resumes (the apiserver sends a bookmark first)
PAGE = 500  # objects a list page holds
BACKOFF_S = (0.5, 30.0)  # first and longest pause before reconnecting a failed watch
USAGE_MAX_AGE_S = 5.0  # a usage list this young is shared (metrics-server itself resolves 10 s at best)
MAX_SANDBOX_BYTES = 2 * 2**20  # a sandbox's objects (JSON as kept) beyond which it is read directly: a lab's sandbox
# holds a few dozen objects of a few KiB each
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
NAMESPACE_FILTER = ",".join(f"metadata.namespace!={ns}" for ns in SYSTEM_NAMESPACES)
CONFIG_KEEP_KEYS = snapshot.MAX_CONFIG_KEYS + 1
CONFIG_KEEP_CHARS = snapshot.MAX_CONFIG_VALUE + 1


@dataclass(frozen=True)
class Kind:
    """One watched kind: how to list it across the cluster and where its objects go in an :class:`Inventory`."""

    kind: str
    api_version: str
    field: str  # the Inventory field ("pods", "workloads", ...); "" for namespaces and nodes
    lister: Callable[[client.ApiClient], Callable[..., Any]]
    namespaced: bool = True


KINDS: tuple[Kind, ...] = (
    Kind("Namespace", "v1", "", lambda a: client.CoreV1Api(a).list_namespace, namespaced=False),
    Kind("Node", "v1", "", lambda a: client.CoreV1Api(a).list_node, namespaced=False),
    Kind("Pod", "v1", "pods", lambda a: client.CoreV1Api(a).list_pod_for_all_namespaces),
    Kind("Deployment", "apps/v1", "workloads", lambda a: client.AppsV1Api(a).list_deployment_for_all_namespaces),
    Kind("StatefulSet", "apps/v1", "workloads", lambda a: client.AppsV1Api(a).list_stateful_set_for_all_namespaces),
    Kind("ReplicaSet", "apps/v1", "workloads", lambda a: client.AppsV1Api(a).list_replica_set_for_all_namespaces),
    Kind("DaemonSet", "apps/v1", "workloads", lambda a: client.AppsV1Api(a).list_daemon_set_for_all_namespaces),
    Kind("Job", "batch/v1", "workloads", lambda a: client.BatchV1Api(a).list_job_for_all_namespaces),
    Kind("CronJob", "batch/v1", "workloads", lambda a: client.BatchV1Api(a).list_cron_job_for_all_namespaces),
    Kind("PersistentVolumeClaim", "v1", "pvcs",
         lambda a: client.CoreV1Api(a).list_persistent_volume_claim_for_all_namespaces),
    Kind("Service", "v1", "services", lambda a: client.CoreV1Api(a).list_service_for_all_namespaces),
    Kind("EndpointSlice", "discovery.k8s.io/v1", "endpoint_slices",
         lambda a: client.DiscoveryV1Api(a).list_endpoint_slice_for_all_namespaces),
    Kind("PodDisruptionBudget", "policy/v1", "pdbs",
         lambda a: client.PolicyV1Api(a).list_pod_disruption_budget_for_all_namespaces),
    Kind("ConfigMap", "v1", "config_maps", lambda a: client.CoreV1Api(a).list_config_map_for_all_namespaces),
    Kind("HorizontalPodAutoscaler", "autoscaling/v2", "autoscalers",
         lambda a: client.AutoscalingV2Api(a).list_horizontal_pod_autoscaler_for_all_namespaces),
)
NAMESPACED = tuple(k for k in KINDS if k.namespaced)


def kept(obj: Json, kind: Kind) -> Json:
    """The object as the cache keeps it: kind and apiVersion set, no managedFields, a ConfigMap's data cut to what
    the snapshot reads (its verdict on truncation unchanged)."""
    obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
    (obj.get("metadata") or {}).pop("managedFields", None)
    if kind.kind == "ConfigMap":
        data = obj.get("data") or {}
        obj["data"] = {k: str(v)[:CONFIG_KEEP_CHARS] for k, v in sorted(data.items())[:CONFIG_KEEP_KEYS]}
        obj.pop("binaryData", None)
    return obj


Sized = tuple[Json, int]  # an object as kept, and its JSON size


def sized(obj: Json, kind: Kind) -> Sized:
    """:func:`kept`, with the kept object's JSON size (what :data:`MAX_SANDBOX_BYTES` counts)."""
    obj = kept(obj, kind)
    return obj, len(json.dumps(obj, separators=(",", ":")))


def _meta(obj: Json) -> Json:
    meta: Json = obj.get("metadata") or {}
    return meta


class ClusterCache:
    """The cluster's sandbox objects, kept current by one list+watch per kind (see the module docstring)."""

    def __init__(self, api: client.ApiClient, *, timeout: tuple[float, float]) -> None:
        self.api = api
        self.timeout = timeout  # (connect, read) of every list; a watch reads for WATCH_S plus the read timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: dict[str, watch.Watch] = {}
        self._versions: dict[str, str] = {}  # kind -> the resourceVersion its next watch resumes from
        self._synced: dict[str, bool] = {k.kind: False for k in KINDS}
        self._sandboxes: set[str] = set()  # namespaces carrying the session label
        self._others: set[str] = set()  # every other namespace (names only: their objects never enter)
        self._objects: dict[str, dict[str, dict[str, Json]]] = {k.kind: {} for k in NAMESPACED}  # kind -> ns -> name
        self._held: dict[str, dict[str, dict[str, Sized]]] = {k.kind: {} for k in NAMESPACED}  # ns not classified
        self._nodes: dict[str, Json] = {}
        self._direct: set[str] = set()  # sandboxes read directly: beyond MAX_SANDBOX_BYTES, or labelled late
        self._sizes: dict[str, dict[tuple[str, str], int]] = {}  # sandbox -> (kind, name) -> JSON bytes
        self._bytes: dict[str, int] = {}  # sandbox -> its objects' JSON bytes
        self._usage: tuple[float, dict[str, dict[str, dict[str, dict[str, str]]]], UsageSource] | None = None
        self._usage_lock = threading.Lock()
        self._ready_logged: bool | None = None
        self.relists: dict[str, int] = {k.kind: 0 for k in KINDS}  # lists made per kind (the first one included)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """One daemon thread per kind: list, then watch (idempotent)."""
        with self._lock:
            if self._threads:
                return
            for kind in KINDS:
                thread = threading.Thread(target=self._run, args=(kind,), name=f"watch-{kind.kind}", daemon=True)
                self._threads.append(thread)
                thread.start()
        log.info("watch cache started: %d kinds listed and watched across the cluster", len(KINDS))

    def stop(self) -> None:
        """Stop every watch and wait briefly for the threads to end."""
        self._stop.set()
        with self._lock:
            watches, threads = list(self._watches.values()), list(self._threads)
        for w in watches:
            w.stop()
        for thread in threads:
            thread.join(timeout=self.timeout[0] + 1)

    @property
    def ready(self) -> bool:
        """Every kind listed and watched without a failure since (what :meth:`inventory` requires)."""
        with self._lock:
            return all(self._synced.values())

    def distrust(self) -> None:
        """The apiserver did not answer a request: a watch may hang as silently, so no kind is read until its
        stream speaks again (an event, a bookmark or a clean end)."""
        with self._lock:
            self._synced = dict.fromkeys(self._synced, False)

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.ready:
                return True
            time.sleep(0.05)
        return self.ready

    # -- reads -----------------------------------------------------------------------------------------------------

    def inventory(self, namespace: str) -> Inventory | None:
        """The namespace's inventory from the cache, or None when the caller must read it directly: a kind is not
        synced (never listed, or its watch broke or was distrusted), the namespace is not known as a sandbox yet, or
        it is read directly (past MAX_SANDBOX_BYTES, or labelled after it was made)."""
        with self._lock:
            ready = all(self._synced.values())
            self._log_readiness(ready)
            if not ready or namespace not in self._sandboxes or namespace in self._direct:
                return None
            inv = Inventory()
            for kind in NAMESPACED:  # in the apiserver's order (by name), so a snapshot is the same either way
                shelf = self._objects[kind.kind].get(namespace, {})
                objects = [shelf[name] for name in sorted(shelf)]
                setattr(inv, kind.field, getattr(inv, kind.field) + objects)
            wanted = {(p.get("spec") or {}).get("nodeName") for p in inv.pods} - {None}
            inv.nodes = [n for name, n in self._nodes.items() if name in wanted]
        inv.config_maps = [c for c in inv.config_maps if _meta(c).get("name") != inventory.ROOT_CA_CONFIGMAP]
        usage, source = self._usage_of(namespace)
        inv.usage, inv.usage_source = usage, source
        return inv

    def namespaces(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._sandboxes)

    def _log_readiness(self, ready: bool) -> None:
        if ready != self._ready_logged:
            if ready:
                log.info("watch cache synced: sandboxes are read from it")
            elif self._ready_logged is not None:
                unsynced = ", ".join(k for k, ok in self._synced.items() if not ok)
                log.warning("watch cache not synced (%s): sandboxes are read directly until it is", unsynced)
            self._ready_logged = ready

    def _usage_of(self, namespace: str) -> tuple[dict[str, dict[str, dict[str, str]]], UsageSource]:
        """The namespace's pods' usage from one cluster-wide metrics.k8s.io list, shared for USAGE_MAX_AGE_S."""
        with self._usage_lock:
            if self._usage is None or time.monotonic() - self._usage[0] > USAGE_MAX_AGE_S:
                self._usage = (time.monotonic(), *self._list_usage())
            _, by_namespace, source = self._usage
        return by_namespace.get(namespace, {}), source

    def _list_usage(self) -> tuple[dict[str, dict[str, dict[str, dict[str, str]]]], UsageSource]:
        try:
            data: Json = client.CustomObjectsApi(self.api).list_cluster_custom_object(
                "metrics.k8s.io", "v1beta1", "pods", field_selector=NAMESPACE_FILTER, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status in (404, 503):
                return {}, "requests"
            raise
        with self._lock:
            sandboxes = set(self._sandboxes)
        out: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
        for item in data.get("items", []):
            meta = _meta(item)
            if meta.get("namespace") in sandboxes:
                out.setdefault(meta["namespace"], {})[meta.get("name", "")] = {
                    c["name"]: c.get("usage", {}) for c in item.get("containers", [])}
        return out, "metrics"

    # -- list and watch --------------------------------------------------------------------------------------------

    def _run(self, kind: Kind) -> None:
        """List, then watch from the list's resourceVersion; relist on 410, reconnect with backoff otherwise. A run
        of failures is one warning (its first), and its end one line."""
        pause = BACKOFF_S[0]
        failing = False
        while not self._stop.is_set():
            try:
                version = self._versions.get(kind.kind)
                if version is None:
                    version = self._versions[kind.kind] = self._relist(kind)
                self._watch(kind, version)
                if failing:
                    log.info("watch of %s works again", kind.kind)
                pause, failing = BACKOFF_S[0], False
            except ApiException as exc:
                self._set_synced(kind, False)
                if exc.status == 410:
                    log.info("watch of %s expired (410 Gone): listing again", kind.kind)
                    self._versions.pop(kind.kind, None)
                    continue
                failing = self._failed(kind, f"{exc.status} {exc.reason}", failing, pause)
                pause = self._pause(pause)
            except Exception as exc:  # urllib3 and socket errors: the apiserver went away, or the stream broke
                self._set_synced(kind, False)
                if self._stop.is_set():
                    return
                failing = self._failed(kind, type(exc).__name__, failing, pause)
                pause = self._pause(pause)

    @staticmethod
    def _failed(kind: Kind, why: str, failing: bool, pause: float) -> bool:
        (log.debug if failing else log.warning)(
            "watch of %s failed (%s): sandboxes are read directly until it works; trying again in %.1fs, then "
            "less often", kind.kind, why, pause)
        return True

    def _pause(self, pause: float) -> float:
        self._stop.wait(pause * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret
        return min(pause * 2, BACKOFF_S[1])

    def _set_synced(self, kind: Kind, synced: bool) -> None:
        with self._lock:
            self._synced[kind.kind] = synced

    def _relist(self, kind: Kind) -> str:
        """Every object of the kind (paged), replacing what the cache held of it; returns the list's
        resourceVersion, where the watch starts."""
        lister = kind.lister(self.api)
        items: list[Sized] = []
        token: str | None = None
        while True:
            kwargs: Json = {"limit": PAGE, "_preload_content": False, "_request_timeout": self.timeout}
            if kind.namespaced:
                kwargs["field_selector"] = NAMESPACE_FILTER
            if token:
                kwargs["_continue"] = token
            page: Json = json.loads(lister(**kwargs).data)
            items += [sized(obj, kind) for obj in page.get("items") or []]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                version = str((page.get("metadata") or {}).get("resourceVersion") or "")
                break
        with self._lock:
            self.relists[kind.kind] += 1
            if kind.kind == "Namespace":
                self._sandboxes, self._others = set(), set()
                for obj, _ in items:
                    self._classify(obj)
                for gone in {*self._bytes, *self._direct} - self._sandboxes:  # what the new verdicts no longer admit
                    self._forget_namespace(gone)
            elif kind.kind == "Node":
                self._nodes = {_meta(obj).get("name", ""): obj for obj, _ in items}
            else:
                for ns, shelf in self._objects[kind.kind].items():
                    for name in list(shelf):
                        self._drop(kind, ns, name)
                self._objects[kind.kind], self._held[kind.kind] = {}, {}
                for item in items:
                    self._put(kind, item)
            self._synced[kind.kind] = True
        return version

    def _watch(self, kind: Kind, version: str) -> None:
        """One watch request from ``version`` until it ends (``WATCH_S``), keeping the last resourceVersion seen as
        where the next one resumes. Raises ApiException(410) when ``version`` is too old."""
        w = watch.Watch()
        with self._lock:
            self._watches[kind.kind] = w
        kwargs: Json = {"resource_version": version, "allow_watch_bookmarks": True, "timeout_seconds": WATCH_S,
                        "_request_timeout": (self.timeout[0], WATCH_S + self.timeout[1])}
        if kind.namespaced:
            kwargs["field_selector"] = NAMESPACE_FILTER
        lister = kind.lister(self.api)
        try:
            # Through a function that names no return type, Watch yields plain dicts (no model deserialised per
            # event, the costly part) and still turns an ERROR event (410 Gone) into an ApiException.
            for event in w.stream(lambda **kw: lister(**kw), **kwargs):
                obj = event.get("object") or {}
                self._versions[kind.kind] = str(_meta(obj).get("resourceVersion") or version)
                if event.get("type") != "BOOKMARK":
                    self._apply(kind, str(event.get("type")), sized(obj, kind))
                self._set_synced(kind, True)
                if self._stop.is_set():
                    w.stop()
        finally:
            with self._lock:
                self._watches.pop(kind.kind, None)
        if not self._stop.is_set():
            self._set_synced(kind, True)  # a clean end: nothing was missed

    # -- the store (called with the lock held, or from _apply) -----------------------------------------------------

    def _apply(self, kind: Kind, event: str, item: Sized) -> None:
        obj = item[0]
        with self._lock:
            if kind.kind == "Namespace":
                name = _meta(obj).get("name", "")
                if event == "DELETED":
                    self._forget_namespace(name)
                else:
                    self._classify(obj)
            elif kind.kind == "Node":
                name = _meta(obj).get("name", "")
                if event == "DELETED":
                    self._nodes.pop(name, None)
                else:
                    self._nodes[name] = obj
            elif event == "DELETED":
                ns, name = _meta(obj).get("namespace", ""), _meta(obj).get("name", "")
                self._drop(kind, ns, name)
                self._held[kind.kind].get(ns, {}).pop(name, None)
            else:
                self._put(kind, item)

    def _put(self, kind: Kind, item: Sized) -> None:
        obj, size = item
        ns, name = _meta(obj).get("namespace", ""), _meta(obj).get("name", "")
        if ns in self._others:
            return
        if ns not in self._sandboxes:
            self._held[kind.kind].setdefault(ns, {})[name] = item
            return
        if ns in self._direct:
            return
        self._drop(kind, ns, name)
        self._objects[kind.kind].setdefault(ns, {})[name] = obj
        self._sizes.setdefault(ns, {})[(kind.kind, name)] = size
        self._bytes[ns] = self._bytes.get(ns, 0) + size
        if self._bytes[ns] > MAX_SANDBOX_BYTES:
            log.warning("sandbox %s holds over %d KiB of objects: read directly from now on", ns,
                        MAX_SANDBOX_BYTES // 1024)
            self._forget_namespace(ns)
            self._sandboxes.add(ns)
            self._direct.add(ns)

    def _drop(self, kind: Kind, ns: str, name: str) -> None:
        """One stored object out of the cache and its size out of the sandbox's count."""
        self._objects[kind.kind].get(ns, {}).pop(name, None)
        size = self._sizes.get(ns, {}).pop((kind.kind, name), 0)
        if size:
            self._bytes[ns] -= size

    def _classify(self, namespace: Json) -> None:
        """A namespace's verdict: a sandbox (its held objects enter) or another (they are dropped)."""
        name = _meta(namespace).get("name", "")
        if render.SESSION_LABEL in (_meta(namespace).get("labels") or {}):
            if name in self._others:  # labelled after it was made: its objects were dropped, so read it directly
                self._direct.add(name)
            self._others.discard(name)
            self._sandboxes.add(name)
            for kind in NAMESPACED:
                for item in self._held[kind.kind].pop(name, {}).values():
                    self._put(kind, item)
        else:
            self._forget_namespace(name)
            self._others.add(name)

    def _forget_namespace(self, name: str) -> None:
        """A namespace that went (or is no sandbox): nothing of it stays."""
        self._sandboxes.discard(name)
        self._others.discard(name)
        self._direct.discard(name)
        self._sizes.pop(name, None)
        self._bytes.pop(name, None)
        for kind in NAMESPACED:
            self._objects[kind.kind].pop(name, None)
            self._held[kind.kind].pop(name, None)
