"""The composition root: the one place that builds labctl's parts from the settings, for every process.

:func:`build` makes the :class:`Runtime`: the store, catalog, providers and use cases, the webhook admin and
dispatcher, the exam platform's inbound handlers, the readiness probes, the per-session cost gauges and the leader
lock (``LABCTL_LEADER``: the store's lease row, or a Kubernetes Lease). ``labctl serve`` (``create_app`` puts the
runtime on the app once; routes receive its parts through ``api.deps``) and ``labctl sweep`` get everything from it,
so they always agree. :meth:`Runtime.jobs` is the one set of background jobs both run, and :class:`Loops` runs each on
APScheduler's interval jobs behind the leader's :class:`~labctl.service.leader.Tenure`: with several replicas
exactly one meters, runs timers, regrades and delivers webhooks, and a long pass stops between two sessions when the
lead is lost.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import jwt
from apscheduler.schedulers.background import BackgroundScheduler

from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.cost.prices import PriceSheet, load_sheet
from labctl.grading import jail
from labctl.outbox import Unprocessable, toolkey
from labctl.outbox import launch as lti_launch
from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.endpoints import Webhooks
from labctl.outbox.targets import TargetPolicy
from labctl.ports import SandboxProvider
from labctl.providers.kubernetes.clusters import Clusters
from labctl.providers.kubernetes.leader import KubernetesLeader, default_namespace
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from labctl.providers.router import ProviderRouter
from labctl.service import leader, pools
from labctl.service.clusters import Placement
from labctl.service.gauges import SessionCosts
from labctl.service.launches import Launches, ScorePassback
from labctl.service.observation import Observation
from labctl.service.pools import Pools
from labctl.service.replay import Replayer
from labctl.service.sessions import Sessions
from labctl.service.submissions import Submissions
from labctl.service.sweeps import Sweeper
from labctl.settings import DEFAULT_CLUSTER, REPO_ROOT, Settings
from labctl.store.db import Store, is_outage, open_store

log = logging.getLogger("labctl.runtime")

LEASE = "sweeps"  # the leader lock's name: the store's lease row, or the Lease object "labctl-sweeps"
RECONCILE_INTERVAL_S = 30.0

Job = tuple[Callable[[], object], float]  # what a background job runs, and every how many seconds
Handler = Callable[[dict[str, Any]], dict[str, Any]]  # an inbound exam-platform event's data -> its result
Probe = Callable[[], str]  # a readiness check: its detail, or it raises


@dataclass
class Runtime:
    """Every part one labctl process works with, built once by :func:`build`."""

    settings: Settings
    store: Store
    catalog: dict[str, Lab]
    clusters: Clusters  # the Kubernetes provider: one KubernetesSandboxes per cluster, and the placer
    providers: ProviderRouter  # what the use cases hold: each session's calls go to its lab's provider
    sessions: Sessions
    sweeper: Sweeper
    submissions: Submissions
    observation: Observation
    lti_registry: lti_launch.Registry
    webhooks: Webhooks  # the instructor's endpoints and delivery log
    dispatcher: Dispatcher  # sends the outbox (the "webhooks" job)
    tenure: leader.Tenure  # this process's hold on the leader lock
    session_costs: SessionCosts  # the per-session gauges of /metrics, read from the store
    pools: Pools  # the labs' warm pools: refilled, drained and metered by the "pools" job
    inbound: dict[str, Handler] = field(default_factory=dict)  # POST /v1/hooks/exam: event type -> handler
    probes: dict[str, Probe] = field(default_factory=dict)  # /readyz: check name -> probe
    cluster_probes: frozenset[str] = frozenset()  # the clusters' checks: ready while one of them passes

    @property
    def provider(self) -> KubernetesSandboxes:
        """The first cluster's provider (the local cluster's tools and tests use it directly)."""
        return self.clusters.members[self.clusters.cluster_names[0]]

    @property
    def placement(self) -> Placement:
        assert self.sessions.placement is not None  # build() always gives one
        return self.sessions.placement

    @property
    def holder(self) -> str:
        return self.settings.replica_id

    @property
    def admin_token(self) -> str:
        """The first instructor token (``LABCTL_ADMIN_TOKEN``), or "" when none is set."""
        return self.settings.admin_token.get_secret_value() if self.settings.admin_token else ""

    @functools.cached_property
    def lti_key(self) -> toolkey.ToolKey:
        """The tool's LTI key, read (or, in development, made) on first use."""
        return toolkey.load(self.settings.effective_lti_key_file, create=self.settings.lti_key_file is None)

    @functools.cached_property
    def launches(self) -> Launches:
        """The LTI launch use case."""
        return Launches(store=self.store, sessions=self.sessions, registry=self.lti_registry,
                        keys=self.platform_keys, clock=self.sessions.clock)

    @functools.cached_property
    def platform_keys(self) -> Callable[[lti_launch.Platform, str], Any]:
        return _platform_keys()

    def score_passback(self) -> ScorePassback:
        return ScorePassback(store=self.store, registry=self.lti_registry, key=self.lti_key,
                             http=lambda: httpx.Client(timeout=30), clock=self.sessions.clock)

    def jobs(self) -> dict[str, Job]:
        """Every background job, for ``labctl serve`` and ``labctl sweep`` alike (each behind the leader lock; the
        long passes also stop between two sessions when the lead is lost)."""
        held = self.tenure.held
        jobs: dict[str, Job] = {
            "sweep": (lambda: self.sweeper.run_once(held=held), self.settings.sweep_interval_s),
            # Each sweep ends with a reconcile; this one also finishes stops and cleanups that timed out (a namespace
            # slow to go) when sweeps are rare, so no session waits a whole sweep interval in `terminating`.
            "reconcile": (lambda: self.sessions.reconcile(held=held),
                          min(RECONCILE_INTERVAL_S, self.settings.sweep_interval_s)),
            "regrade": (lambda: self.submissions.reconcile(held=held), 60.0),
            "webhooks": (self.deliver, 1.0),
        }
        jobs["pools"] = (self.pools.run_once, self.settings.sweep_interval_s)  # warm pools: drain, meter, refill
        if self.lti_registry.platforms:
            passback = self.score_passback()
            jobs["lti-scores"] = (passback.run_once, 10.0)
        return jobs

    def deliver(self) -> int:
        """Send the outbox: the dispatcher's sweeps back to back while there is work and this process leads."""
        sent = 0
        while True:
            attempts = self.dispatcher.run_once()
            sent += attempts
            if not attempts or not self.tenure.held():
                return sent

    def close(self) -> None:
        """Release what the parts hold: every cluster's watch cache stops, attempts in flight finish,
        connections close."""
        self.clusters.close()
        self.dispatcher.close()
        self.store.engine.dispose()


def build(settings: Settings) -> Runtime:
    """Every part, from the settings (nothing is contacted yet: the store is migrated and the cluster asked later)."""
    store = open_store(settings.effective_database_url, pool_size=settings.db_pool_size)
    catalog = enabled(loader.load_catalog(settings.labs_dir, settings.manifests_dir, fleet_file=settings.fleet_file),
                      providers=settings.providers)
    timeout = (settings.kube_connect_timeout_s, settings.kube_read_timeout_s)
    # One Kubernetes provider (clients, watch cache, capacity summary) per cluster; one cluster is a list of one.
    clusters = Clusters([KubernetesSandboxes(c.kubeconfig, settings.manifests_dir,
                                             step_delay_s=settings.provision_step_delay_s, timeout=timeout,
                                             learner_server=c.learner_server, cluster=c.name)
                         for c in settings.cluster_list])
    providers = ProviderRouter(provider_factories(settings, kubernetes=clusters),
                               in_use={lab.provider for lab in catalog.values()},
                               cooldown_s=settings.backend_cooldown_s)
    sheet = _sheet_loader(settings.prices_file)
    placement = Placement(placer=clusters, prices=sheet, store=store, clock=lambda: datetime.now(UTC))
    sessions = Sessions(store=store, provider=providers, catalog=catalog, holder=settings.replica_id,
                        pool_hashes=pools.hashes(catalog, settings.manifests_dir), placement=placement)
    sweeper = Sweeper(sessions=sessions, prices=sheet, meter_failure_limit=settings.meter_failure_limit,
                      simulate=settings.simulate_demand, replay_max_s=settings.replay_max_s)
    sessions.baseline = sweeper.baseline
    submissions = Submissions(sessions=sessions, sweeper=sweeper, prices=sheet, graders_dir=settings.graders_dir,
                              repo_root=REPO_ROOT, jail=jail.prepare(jail.policy(settings)),
                              replayer=Replayer(sweeper=sweeper, step_seconds=settings.replay_step_s))
    targets = TargetPolicy.from_entries(settings.webhook_allow)
    rt = Runtime(settings=settings, store=store, catalog=catalog, clusters=clusters, providers=providers,
                 sessions=sessions, sweeper=sweeper, submissions=submissions,
                 observation=Observation(sessions=sessions, simulate=settings.simulate_demand),
                 lti_registry=lti_launch.load_registry(settings.lti_platforms_file),
                 webhooks=Webhooks(store, targets=targets), dispatcher=Dispatcher(store, targets=targets),
                 tenure=leader.Tenure(leader_lock(settings, store=store), ttl=timedelta(seconds=settings.leader_ttl_s),
                                      clock=lambda: datetime.now(UTC)),
                 session_costs=SessionCosts(store), pools=Pools(sessions=sessions, prices=sheet))
    rt.inbound["grade.requested"] = lambda data: grade_requested(rt, data)
    # One readiness check per provider the catalog's labs use: a cloud's by its name, Kubernetes' per cluster
    # and one per cluster ("cluster" for the default cluster, "cluster:<name>" for another).
    rt.probes.update({"store": lambda: _store_probe(store),
                      **{probe_name(name): member.ping for name, member in clusters.members.items()},
                      **{name: _provider_probe(providers, name) for name in providers.in_use if name != "kubernetes"}})
    rt.cluster_probes = frozenset(probe_name(name) for name in clusters.members)
    return rt


def probe_name(cluster: str) -> str:
    """The readiness check of a cluster: ``cluster`` for the default one (as with one cluster), else
    ``cluster:<name>``."""
    return "cluster" if cluster == DEFAULT_CLUSTER else f"cluster:{cluster}"


def leader_lock(settings: Settings, *, store: Store) -> leader.Leader:
    """The leader lock ``LABCTL_LEADER`` names: the store's lease row, or a Lease in the cluster labctl runs in."""
    if settings.leader == "kubernetes":
        kubeconfig = settings.cluster_list[0].kubeconfig  # the Lease lives in the first cluster
        if kubeconfig is None:
            raise ValueError("LABCTL_LEADER=kubernetes needs a cluster: set LABCTL_KUBECONFIG (or LABCTL_CLUSTERS: "
                             "the Lease is kept in the first)")
        return KubernetesLeader(kubeconfig, name=f"labctl-{LEASE}",
                                namespace=settings.leader_namespace or default_namespace(),
                                holder=settings.replica_id,
                                timeout=(settings.kube_connect_timeout_s, settings.kube_read_timeout_s))
    return leader.StoreLeader(store, name=LEASE, holder=settings.replica_id)


def grade_requested(rt: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """The exam platform's ``grade.requested``: submit the learner's live session for the lab (once) and grade it in
    the background."""
    missing = [k for k in ("learner_id", "lab_id") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise Unprocessable(f"grade.requested needs data.{' and data.'.join(missing)}")
    sub, created = rt.submissions.submit_requested(lab_id=data["lab_id"], learner_id=data["learner_id"],
                                                   actor="exam-platform")
    if created:
        rt.submissions.grade_later(sub.id)
    return {"submission_id": sub.id, "session_id": sub.session_id, "created": created}


def _provider_probe(providers: ProviderRouter, name: str) -> Probe:
    return lambda: providers.of(name).ping()


def _store_probe(store: Store) -> str:
    store.ping()
    return f"{store.engine.dialect.name} at revision {store.revision()}"


def _platform_keys() -> Callable[[lti_launch.Platform, str], Any]:
    """(platform, id_token) -> the key of the platform's JWKS that signed the token; one JWKS client per platform,
    which caches the keys and fetches them again for a ``kid`` it does not know (a platform's key rotation)."""
    clients: dict[str, jwt.PyJWKClient] = {}

    def key(platform: lti_launch.Platform, id_token: str) -> Any:
        client = clients.get(platform.jwks_url)
        if client is None:
            client = clients[platform.jwks_url] = jwt.PyJWKClient(platform.jwks_url, cache_keys=True, timeout=10)
        return client.get_signing_key_from_jwt(id_token).key

    return key


def enabled(catalog: dict[str, Lab], *, providers: Sequence[str]) -> dict[str, Lab]:
    """The labs whose provider this service runs (``LABCTL_PROVIDERS``); the others are named once in the log."""
    kept = {lab_id: lab for lab_id, lab in catalog.items() if lab.provider in providers}
    left = sorted(f"{lab_id} ({lab.provider})" for lab_id, lab in catalog.items() if lab_id not in kept)
    if left:
        log.info("labs left out (their provider is not in LABCTL_PROVIDERS=%s): %s", ",".join(providers),
                 ", ".join(left))
    return kept


def provider_factories(settings: Settings, *, kubernetes: SandboxProvider) -> dict[str, Callable[[], SandboxProvider]]:
    """The provider registry: lab ``provider`` name -> a factory. Cloud adapters are imported by name when first
    built, so a Kubernetes-only deployment never loads a cloud SDK."""

    def aws() -> SandboxProvider:
        module = importlib.import_module("labctl.providers.aws.sandbox")
        built: SandboxProvider = module.AwsSandboxes(region=settings.aws_region, endpoint_url=settings.aws_endpoint_url,
                                                     profile=settings.aws_profile)
        log.info("aws provider: region %s, %s, credentials from %s", settings.aws_region,
                 f"endpoint {settings.aws_endpoint_url}" if settings.aws_endpoint_url else "AWS's own endpoints",
                 f"profile {settings.aws_profile}" if settings.aws_profile else "the default chain")
        return built

    def gcp() -> SandboxProvider:
        module = importlib.import_module("labctl.providers.gcp.sandbox")
        built: SandboxProvider = module.GcpSandboxes(project=settings.gcp_project,
                                                     endpoint_url=settings.gcp_endpoint_url)
        log.info("gcp provider: project %s, %s", settings.gcp_project or "(each lab's own)",
                 f"endpoint {settings.gcp_endpoint_url}" if settings.gcp_endpoint_url else "Google's own endpoints")
        return built

    return {"kubernetes": lambda: kubernetes, "aws": aws, "gcp": gcp}


def _sheet_loader(path: Path) -> Callable[[], PriceSheet]:
    """The price sheet, re-read when the file changes (a lab author may edit prices while the service runs)."""

    @lru_cache(maxsize=4)
    def load(_mtime: float) -> PriceSheet:
        return load_sheet(path)

    return lambda: load(path.stat().st_mtime)


class Loops:
    """The background jobs on an APScheduler; each runs only while this process leads (:class:`leader.Tenure`)."""

    def __init__(self, runtime: Runtime, *, jobs: dict[str, Job]) -> None:
        self.runtime = runtime
        self.jobs = jobs
        self.tenure = runtime.tenure
        self.scheduler = BackgroundScheduler(timezone=UTC)
        # APScheduler logs every run and every run skipped while the last one still works: not events. A job's own
        # failure is logged by _guarded, once.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self.stopped = threading.Event()
        self._paused: set[str] = set()  # jobs whose last pass met a store outage (logged once until it ends)

    def leads(self) -> bool:
        return self.tenure.held()

    def start(self) -> None:
        for name, (fn, interval) in self.jobs.items():
            self.scheduler.add_job(self._guarded(name, fn), "interval", seconds=interval, id=name, max_instances=1,
                                   coalesce=True, next_run_time=datetime.now(UTC))
        self.scheduler.start()
        log.info("background loops started behind %s (lease %gs): %s", self.tenure.leader.describe(),
                 self.tenure.ttl.total_seconds(), ", ".join(f"{n} every {i:g}s" for n, (_, i) in self.jobs.items()))

    def stop(self) -> None:
        self.stopped.set()
        self.scheduler.shutdown(wait=True)
        self.tenure.release()

    def _guarded(self, name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            if self.stopped.is_set():
                return
            try:
                if not self.leads():
                    return
                fn()
            except Exception as exc:  # one failed pass must not stop the loop; the next pass tries again
                if not is_outage(exc):
                    log.exception("background job %s failed", name)
                elif name not in self._paused:  # an outage is one line when it starts and one when it ends
                    log.warning("background job %s paused: the store did not answer (%s); trying again every pass",
                                name, type(getattr(exc, "orig", None) or exc).__name__)
                    self._paused.add(name)
                return
            if name in self._paused:
                self._paused.discard(name)
                log.info("background job %s resumed: the store answers again", name)
        return run
