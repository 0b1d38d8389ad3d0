"""The Kubernetes sandbox provider: one namespace per session, made with server-side apply.

Server-side apply makes every step converge: a repeated, retried or resumed start applies the same objects again and
ends in the same state. A start returns only once the sandbox holds: the quota has its status and the admission
policy refuses the learner what it must (a dry-run create as the learner), so a fresh sandbox is never handed out
unprotected. The learner gets a kubeconfig with a TokenRequest token for the sandbox's ServiceAccount whose lifetime
ends with the session. Destroy deletes the per-session ClusterRoleBinding and the namespace, then waits for the
namespace's real finalization; the admission policy, shared by every sandbox, stays.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import urllib3
import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from labctl.grading.snapshot import BudgetInfo, SessionInfo, Snapshot
from labctl.ports import (
    ClusterRoom,
    Credentials,
    Listing,
    ProviderError,
    ProviderUnavailable,
    SandboxSpec,
    Suspension,
    UsageByPod,
)
from labctl.providers.kubernetes import cache, capacity, inventory, render, snapshot, suspension, usage
from labctl.providers.kubernetes import client as kube
from labctl.providers.kubernetes.client import api_client

log = logging.getLogger("labctl.providers.kubernetes")

FIELD_MANAGER = "labctl"
API_CONNECTIONS = 32  # the workers that apply objects side by side
PROVISIONS_AT_ONCE = 16  # sandboxes provisioned side by side; more starts wait their turn
# The client's connections: the apply workers, the provisions' own waits, removals and reads beside them (a request
# beyond the pool opens a connection, a TLS handshake, and discards it after: a class's starts and deletes did).
POOL_CONNECTIONS = 2 * API_CONNECTIONS
PING_FRESH_S = 1.0  # how long an answered ping stands
ROOM_FRESH_S = 2.0  # how long a capacity summary stands (starts in flight are reserved by placement meanwhile)
ROOM_PAGE = 500  # pods a page of the capacity summary's list holds
BOUND_PODS = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
MIN_TOKEN_SECONDS = 600  # the apiserver refuses shorter TokenRequests
REFERRED_KINDS = ("Role", "ClusterRole", "ValidatingAdmissionPolicy")  # applied before what binds them
ROOT_CA_CONFIGMAP = inventory.ROOT_CA_CONFIGMAP
T = TypeVar("T")


class KubernetesSandboxes:
    """Sandboxes as namespaces in the cluster of ``kubeconfig``."""

    name = "kubernetes"

    def __init__(self, kubeconfig: Path | None, manifests_dir: Path, *, step_delay_s: float = 0.0,
                 timeout: tuple[float, float] = kube.DEFAULT_TIMEOUT, learner_server: str | None = None,
                 cluster: str = "default") -> None:
        self.cluster = cluster  # its name among labctl's clusters (LABCTL_CLUSTERS), recorded on each session
        self.kubeconfig = kubeconfig  # None: the pod's ServiceAccount (in-cluster)
        # The apiserver address learners' kubeconfigs name; None: the one labctl talks to.
        self.learner_server = learner_server
        self.manifests_dir = manifests_dir
        self.timeout = timeout  # (connect, read) seconds of every API request
        # Only for tests of interrupted starts: a pause between applied objects widens the window to kill in.
        self.step_delay_s = step_delay_s
        self._lock = threading.Lock()
        self._api: client.ApiClient | None = None
        self._dyn: dynamic.DynamicClient | None = None
        self._cache: cache.ClusterCache | None = None
        # Namespaces frozen for grading by this process (read from the apiserver but for interim views), each with
        # whether an interim view of it has had to read directly (said once a freeze).
        self._frozen: dict[str, bool] = {}
        # The API calls one start makes side by side, shared by all starts (as many as the client's connections).
        self._workers = ThreadPoolExecutor(max_workers=API_CONNECTIONS, thread_name_prefix="kube-apply")
        self._provisions = threading.BoundedSemaphore(PROVISIONS_AT_ONCE)
        self._pinged: tuple[float, str | ProviderUnavailable] | None = None  # (monotonic time, version or failure)
        self._pinging = False  # a ping is out
        self._ping_lock = threading.Lock()
        self._room: tuple[float, ClusterRoom] | None = None  # (monotonic time, summary) of the last capacity read
        self._room_lock = threading.Lock()

    # -- clients ---------------------------------------------------------------------------------------------------

    def _client(self) -> client.ApiClient:
        with self._lock:
            if self._api is None:
                self.ping()  # refuses a missing kubeconfig outside a pod, with what to set
                self._api = api_client(self.kubeconfig, pool_size=POOL_CONNECTIONS, timeout=self.timeout)
            return self._api

    def watch_cache(self) -> cache.ClusterCache:
        """The cluster-wide list+watch cache the sweeps read (:mod:`.cache`), started on first use; that first use
        waits up to the read timeout for its initial lists, later ones never wait."""
        self._client()  # pings first: an unreachable cluster is a ProviderUnavailable, not a cache of nothing
        with self._lock:
            started = self._cache is None
            if self._cache is None:
                assert self.kubeconfig is not None
                self._cache = cache.ClusterCache(api_client(self.kubeconfig, pool_size=len(cache.KINDS) + 8,
                                                            timeout=self.timeout), timeout=self.timeout)
                self._cache.start()
            watched = self._cache
        if started:
            watched.wait_ready(self.timeout[1])
        return watched

    def _distrusting(self, fn: Callable[[], T]) -> T:
        """:func:`_call`; an apiserver that did not answer also makes the watch cache unreadable until its watches
        speak again (a hung watch does not fail by itself)."""
        try:
            return _call(fn)
        except ProviderUnavailable:
            with self._lock:
                watched = self._cache
            if watched is not None:
                watched.distrust()
            raise

    def close(self) -> None:
        """Stop the watch cache (the runtime's end)."""
        with self._lock:
            watched, self._cache = self._cache, None
        if watched is not None:
            watched.stop()

    def _dynamic(self) -> dynamic.DynamicClient:
        api = self._client()
        with self._lock:
            if self._dyn is None:
                self._dyn = _call(lambda: dynamic.DynamicClient(api))
            return self._dyn

    # -- SandboxProvider -------------------------------------------------------------------------------------------

    def ping(self) -> str:
        """The apiserver's version; an answer (or a failure) of the last :data:`PING_FRESH_S` stands, and while one
        start pings again the others take the last answer instead of waiting for it or sending their own (a class's
        starts each ask, and a ping is a new client, a TLS handshake and a request)."""
        with self._ping_lock:  # not self._lock: _client() holds that while it pings
            last = self._pinged
            if last is not None and (self._pinging or time.monotonic() - last[0] < PING_FRESH_S):
                answer: str | ProviderUnavailable | None = last[1]
            else:
                self._pinging, answer = True, None
        if answer is None:
            try:
                answer = kube.ping(self.kubeconfig, timeout_s=self.timeout[0])
            except RuntimeError as exc:
                answer = ProviderUnavailable(str(exc))
            finally:
                with self._ping_lock:  # fresh from when it came back
                    self._pinging = False
                    if answer is not None:
                        self._pinged = (time.monotonic(), answer)
        if isinstance(answer, ProviderUnavailable):
            raise ProviderUnavailable(str(answer))
        return answer

    def room(self) -> ClusterRoom:
        """The cluster's capacity summary (:mod:`.capacity`): its Nodes and the requests of the pods bound to them,
        two paged cluster-wide lists shared by every start within :data:`ROOM_FRESH_S` (so a class starting together
        costs a few lists, not one per start); a cluster that does not answer gives a room with the ``error``."""
        with self._room_lock:  # one reader lists; the starts arriving meanwhile wait for its answer and share it
            if self._room is not None and time.monotonic() - self._room[0] < ROOM_FRESH_S:
                return self._room[1]
            try:
                self.ping()  # within the connect timeout: an apiserver that hangs must not hold a start for a read's
                core = client.CoreV1Api(self._client())
                nodes = _paged(lambda **kw: core.list_node(**kw))
                pods = _paged(lambda **kw: core.list_pod_for_all_namespaces(field_selector=BOUND_PODS, **kw))
                summary = capacity.room(self.cluster, nodes=nodes, pods=pods, taken_at=datetime.now(UTC))
            except ProviderError as exc:  # shared too: while the cluster is down, starts are not each held up
                summary = ClusterRoom(name=self.cluster, error=str(exc), taken_at=datetime.now(UTC))
            self._room = (time.monotonic(), summary)
            return summary

    def provision(self, spec: SandboxSpec) -> None:
        """Apply the sandbox and wait until it holds. At most :data:`PROVISIONS_AT_ONCE` run at a time: a class's
        starts finish one group after another (each answer leaves when its sandbox is ready) instead of all
        advancing together on the shared API workers and all finishing at the end."""
        with self._provisions:
            objects = render.sandbox_objects(spec, self.manifests_dir)
            namespace, rest = objects[:1], objects[1:]
            referred = [o for o in rest if o["kind"] in REFERRED_KINDS]
            # The namespace first; then what others refer to: a binding is judged against its role by RBAC's
            # escalation check unless its writer may `bind` (labctl's least role may not), and a missing role fails
            # it; then the sandbox's other objects side by side; the starters last, so the LimitRange and quota
            # judge their pods.
            for step in (namespace, referred, [o for o in rest if o["kind"] not in REFERRED_KINDS],
                         render.starter_objects(spec, self.manifests_dir)):
                self.apply(step, parallel=not self.step_delay_s)
            self._wait_quota(spec.namespace, timeout_s=30)
            self._wait_policy(spec.namespace, timeout_s=30)

    def hand_over(self, spec: SandboxSpec, *, previous: SandboxSpec) -> None:
        """Write only the objects that render differently for ``spec`` than for ``previous`` (the namespace's
        learner label, expiry and budget annotations; starters that name the learner), and wait for nothing: the
        quota and the admission policy already held when the pooled sandbox was made, and the learner's RBAC does
        not change (it binds the sandbox's own ServiceAccount, whose tokens are minted only for the session)."""
        self.apply(render.handed_over(spec, previous, self.manifests_dir), parallel=True)

    def apply(self, objects: list[dict[str, Any]], *, parallel: bool = False) -> None:
        """Server-side apply the objects as labctl's field manager, taking over conflicting fields: in order, or
        ``parallel`` on the provider's bounded pool of API workers (returns when all are applied; the first
        failure is raised)."""
        dyn = self._dynamic()
        if parallel and len(objects) > 1:
            for future in [self._workers.submit(_call, functools.partial(_apply_one, dyn, obj), retry_quota=True)
                           for obj in objects]:
                future.result()
            return
        for obj in objects:
            _call(lambda: _apply_one(dyn, obj), retry_quota=True)  # noqa: B023 - called at once, in this iteration
            if self.step_delay_s:
                time.sleep(self.step_delay_s)

    def credentials(self, spec: SandboxSpec) -> Credentials:
        api = self._client()
        now = datetime.now(UTC)
        seconds = max(MIN_TOKEN_SECONDS, int((spec.expires_at - now).total_seconds()))
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                     expiration_seconds=seconds))
        token = _call(lambda: client.CoreV1Api(api).create_namespaced_service_account_token(
            "learner", spec.namespace, request))
        cfg = api.configuration
        cluster: dict[str, Any] = {"server": self.learner_server or cfg.host}
        if cfg.ssl_ca_cert:
            cluster["certificate-authority-data"] = base64.b64encode(Path(cfg.ssl_ca_cert).read_bytes()).decode()
        name = f"labctl-{spec.namespace}"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "labctl", "cluster": cluster}],
            "users": [{"name": name, "user": {"token": token.status.token}}],
            "contexts": [{"name": name, "context": {"cluster": "labctl", "user": name,
                                                    "namespace": spec.namespace}}],
            "current-context": name,
        }
        expires = token.status.expiration_timestamp
        return Credentials(kind="kubeconfig", content=yaml.safe_dump(kubeconfig, sort_keys=False),
                           expires_at=expires if isinstance(expires, datetime) else spec.expires_at)

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        api = self._client()
        rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
        _call(lambda: _ignore_404(lambda: rbac.delete_cluster_role_binding(
            render.node_binding_name(spec.namespace))))
        _call(lambda: _ignore_404(lambda: core.delete_namespace(spec.namespace)))
        with self._lock:
            self._frozen.pop(spec.namespace, None)
        deadline = time.monotonic() + wait_s
        while True:
            # Polled as raw JSON: a class's removals poll hundreds of namespaces, and a typed model built for each
            # answer only to see that it still exists is CPU the requests' threads need.
            raw = _call(lambda: _ignore_404(lambda: core.read_namespace(spec.namespace, _preload_content=False)))
            if raw is None:
                return
            body = raw.data  # type: ignore[attr-defined]  # a urllib3 response: read, its connection given back
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        raise ProviderError(f"namespace {spec.namespace} is still terminating after {wait_s:.0f}s"
                            f"{_why_terminating(json.loads(body))}", retryable=True)

    def suspend(self, spec: SandboxSpec) -> Suspension:
        return _call(lambda: suspension.suspend(self._client(), spec.namespace))

    def resume(self, spec: SandboxSpec, record: Suspension) -> None:
        _call(lambda: suspension.resume(self._client(), spec.namespace, record))

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        """Make the learner's Role read-only (a submission) or editable again (a resubmission). While frozen, this
        process snapshots the sandbox straight from the apiserver, never from the watch cache: every grading freezes
        first in the process that grades, so a grade always sees at least what was there at the freeze (interim views,
        a replay's intermediate steps, may come from the cache: see :meth:`snapshot`)."""
        self.apply([o for o in render.sandbox_objects(spec, self.manifests_dir, frozen=frozen) if o["kind"] == "Role"])
        with self._lock:
            if frozen:
                self._frozen[spec.namespace] = False
            else:
                self._frozen.pop(spec.namespace, None)

    def snapshot(self, spec: SandboxSpec, *, now: datetime, interim: bool = False) -> Snapshot:
        """The sandbox as a provider-neutral, unpriced snapshot (docs/SNAPSHOT.md): from the watch cache when it is
        synced and knows the namespace, else read directly, one list per kind. A frozen sandbox is read directly
        unless ``interim``: the learner cannot write it, and what kube-controller-manager does in it meanwhile (the
        HPA, ReplicaSets) the cache sees by watch; only the graded snapshot needs the direct reads' guarantee."""
        with self._lock:
            frozen = spec.namespace in self._frozen
        inv = None if frozen and not interim else \
            self._distrusting(lambda: self.watch_cache().inventory(spec.namespace))
        if inv is None:
            if frozen and interim:
                self._said_direct(spec.namespace)
            inv = self._distrusting(lambda: inventory.collect(self._client(), spec.namespace))
        session = SessionInfo(id=spec.session_id, lab_id=spec.lab.id, learner_id=spec.learner_id, provider="kubernetes",
                              namespace=spec.namespace, started_at=spec.started_at, taken_at=max(now, spec.started_at))
        budget = BudgetInfo(budget_usd=spec.budget_usd, reference_cost_usd=spec.lab.budget.reference_usd)
        return snapshot.build(inv, session=session, budget=budget, now=now)

    def _said_direct(self, namespace: str) -> None:
        """One line a freeze when an interim view of the frozen ``namespace`` cannot come from the watch cache."""
        with self._lock:
            said = self._frozen.get(namespace, True)
            if not said:
                self._frozen[namespace] = True
        if not said:
            log.info("replay steps of %s read the apiserver directly: the watch cache is not synced or does not hold "
                     "it", namespace)

    def enforce(self, spec: SandboxSpec, *, resource: str, action: Literal["stop", "terminate"]) -> None:
        """Not applicable: guardrails check cloud instances, and a namespace has none (its quota and admission
        policy fence it instead); the catalog refuses ``guardrails`` on kubernetes labs."""
        raise ProviderError(f"session {spec.session_id} is a Kubernetes sandbox: it has no instances to {action} "
                            f"({resource}); guardrails apply only to cloud labs")

    def write_usage(self, spec: SandboxSpec, usage_by_pod: UsageByPod) -> None:
        """The simulated usage, written into kwok's cluster-scoped usage objects (:mod:`.usage`)."""
        figures = {pod: {name: usage.ContainerUsage(
            cpu_cores=values.get("cpu", 0.0), memory_bytes=int(values.get("memory", 0.0)),
            other={k: v for k, v in values.items() if k not in ("cpu", "memory")})
            for name, values in containers.items()} for pod, containers in usage_by_pod.items()}
        _call(lambda: usage.apply_usage(self._client(), namespace=spec.namespace, usage=figures))

    def sandboxes(self) -> Listing:
        """The sessions whose namespace exists and is not being deleted (by the session label labctl puts on it)."""
        core = client.CoreV1Api(self._client())
        listed = self._distrusting(lambda: core.list_namespace(label_selector=render.SESSION_LABEL))
        return Listing(sessions=frozenset(ns.metadata.labels[render.SESSION_LABEL] for ns in listed.items
                                          if ns.metadata.deletion_timestamp is None),
                       providers=frozenset({self.name}), clusters=frozenset({self.cluster}))

    def exists(self, namespace: str) -> bool:
        core = client.CoreV1Api(self._client())
        return _call(lambda: _ignore_404(lambda: core.read_namespace(namespace))) is not None

    def _wait_quota(self, namespace: str, *, timeout_s: float) -> None:
        """Wait until the controller-manager has computed the quota, so the learner's first pod is not refused, and
        has put the cluster's CA ConfigMap in the namespace: it counts against ``count/configmaps``, and a learner
        quick enough to fill that quota first would keep it out (pods' ServiceAccount volumes need it)."""
        core = client.CoreV1Api(self._client())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            quota = _call(lambda: core.read_namespaced_resource_quota("sandbox", namespace))
            if quota.status and quota.status.hard and _call(lambda: _ignore_404(
                    lambda: core.read_namespaced_config_map(ROOT_CA_CONFIGMAP, namespace))) is not None:
                return
            time.sleep(0.2)
        raise ProviderError(f"the ResourceQuota in {namespace} got no status, or the namespace no "
                            f"{ROOT_CA_CONFIGMAP} ConfigMap, within {timeout_s:.0f}s; is kube-controller-manager "
                            "running?", retryable=True)

    def _wait_policy(self, namespace: str, *, timeout_s: float) -> None:
        """Wait until the admission policy judges this sandbox's learner (a new policy, or a new namespace, takes
        about a second to be seen): as the learner (impersonated), a dry-run create of a Secret the policy refuses."""
        api = self._client()
        learner = kube.TimedApiClient(api.configuration, timeout=self.timeout, header_name="Impersonate-User",
                                      header_value=f"system:serviceaccount:{namespace}:{render.LEARNER}")
        core = client.CoreV1Api(learner)
        deadline = time.monotonic() + timeout_s
        refusal = f"ValidatingAdmissionPolicy '{render.ADMISSION_POLICY}'"
        last = "nothing"
        try:
            while time.monotonic() < deadline:
                try:
                    core.create_namespaced_secret(namespace, render.policy_probe(namespace), dry_run="All")
                    last = "admitted"
                except ApiException as exc:
                    body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or "")
                    if refusal in body:
                        return
                    # Not yet: the learner's RoleBinding or the quota's status may lag by a moment too.
                    if exc.status not in (403, 500, 503):
                        raise ProviderError(f"probing the admission policy in {namespace} failed ({exc.status} "
                                            f"{exc.reason}): {_message(body)}") from exc
                    last = f"{exc.status}: {_message(body)}"
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise ProviderUnavailable(f"the Kubernetes API did not answer: {exc}") from exc
                time.sleep(0.2)
        finally:
            learner.close()
        raise ProviderError(f"the admission policy {render.ADMISSION_POLICY} does not judge {namespace} after "
                            f"{timeout_s:.0f}s (the probe got: {last}); does the apiserver serve "
                            "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy, and may labctl impersonate "
                            "ServiceAccounts?", retryable=True)


def _paged(lister: Callable[..., Any]) -> list[dict[str, Any]]:
    """Every object of a cluster-wide list, page by page, as plain JSON (no model objects: a big cluster's pods)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        answer = _call(functools.partial(lister, limit=ROOM_PAGE, _continue=token, _preload_content=False))
        body = json.loads(answer.data)
        found.extend(body.get("items") or [])
        token = (body.get("metadata") or {}).get("continue") or None
        if token is None:
            return found


def _apply_one(dyn: dynamic.DynamicClient, obj: dict[str, Any]) -> None:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    dyn.server_side_apply(
        resource, body=obj, name=obj["metadata"]["name"], namespace=namespace, field_manager=FIELD_MANAGER,
        force_conflicts=True)


def _why_terminating(namespace: dict[str, Any]) -> str:
    """What the namespace controller says holds a deletion back (its true conditions: content left, a finalizer, an
    API group it could not discover), for the operator; empty when it says nothing."""
    conditions = (namespace.get("status") or {}).get("conditions") or []
    held = [f"{c.get('type')}: {c.get('message')}" for c in conditions if c.get("status") == "True"]
    return f" ({'; '.join(held)})" if held else ""


def _ignore_404(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _call(fn: Callable[[], T], *, retry_quota: bool = False) -> T:
    """Run one API call; connection failures become ProviderUnavailable, API errors a readable ProviderError."""
    for attempt in range(20):
        try:
            return fn()
        except ApiException as exc:
            body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or "")
            # Right after a quota is created the apiserver refuses objects until the quota has a status.
            if retry_quota and exc.status == 403 and "status unknown for quota" in body and attempt < 19:
                time.sleep(0.25)
                continue
            if exc.status in (500, 502, 503, 504) and attempt < 3:
                time.sleep(0.5)
                continue
            raise ProviderError(f"Kubernetes refused the request ({exc.status} {exc.reason}): {_message(body)}",
                                retryable=exc.status in (409, 429, 500, 502, 503, 504)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ProviderUnavailable(f"the Kubernetes API did not answer: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _message(body: str) -> str:
    try:
        parsed = yaml.safe_load(body)
    except yaml.YAMLError:
        return body[:500]
    if isinstance(parsed, dict) and "message" in parsed:
        return str(parsed["message"])
    return body[:500]
