"""The composition root: one place that builds labctl's parts from the settings, and runs its background loops.

The API (``create_app``) and the CLI (``labctl sweep --once``) both get their store, catalog, provider and use cases
from :func:`build`, so they always agree. :class:`Loops` runs the sweeps on APScheduler's interval jobs; each job first
takes the store's leader lease, so with several replicas exactly one meters, runs timers and delivers webhooks.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from labctl.outbox import launch as lti_launch
from labctl.outbox import toolkey
from labctl.ports import SandboxProvider
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from labctl.providers.router import ProviderRouter
from labctl.service import leader, pools
from labctl.service.launches import Launches, ScorePassback
from labctl.service.observation import Observation
from labctl.service.pools import Pools
from labctl.service.replay import Replayer
from labctl.service.sessions import Sessions
from labctl.service.submissions import Submissions
from labctl.service.sweeps import Sweeper
from labctl.settings import REPO_ROOT, Settings
from labctl.store.db import Store, open_store

log = logging.getLogger("labctl.runtime")

LEASE = "sweeps"


@dataclass
class Runtime:
    settings: Settings
    store: Store
    catalog: dict[str, Lab]
    provider: KubernetesSandboxes  # the Kubernetes provider (the local cluster's tools and tests use it directly)
    providers: ProviderRouter  # what the use cases hold: each session's calls go to its lab's provider
    sessions: Sessions
    sweeper: Sweeper
    submissions: Submissions
    observation: Observation
    lti_registry: lti_launch.Registry
    pools: Pools

    @property
    def holder(self) -> str:
        return self.settings.replica_id

    @functools.cached_property
    def lti_key(self) -> toolkey.ToolKey:
        """The tool's LTI key, read (or, in development, made) on first use."""
        return toolkey.load(self.settings.effective_lti_key_file, create=self.settings.lti_key_file is None)

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

    def jobs(self) -> dict[str, tuple[Callable[[], object], float]]:
        """Every background job, for ``labctl serve`` and ``labctl sweep`` alike (each behind the leader lease)."""
        jobs: dict[str, tuple[Callable[[], object], float]] = {
            "sweep": (self.sweeper.run_once, self.settings.sweep_interval_s),
            "regrade": (self.submissions.reconcile, 60.0),
        }
        jobs["pools"] = (self.pools.run_once, self.settings.sweep_interval_s)  # warm pools: drain, meter, refill
        if self.lti_registry.platforms:
            passback = self.score_passback()
            jobs["lti-scores"] = (passback.run_once, 10.0)
        return jobs


def build(settings: Settings) -> Runtime:
    store = open_store(settings.effective_database_url, pool_size=settings.db_pool_size)
    catalog = enabled(loader.load_catalog(settings.labs_dir, settings.manifests_dir, fleet_file=settings.fleet_file),
                      providers=settings.providers)
    provider = KubernetesSandboxes(settings.effective_kubeconfig, settings.manifests_dir,
                                   step_delay_s=settings.provision_step_delay_s,
                                   timeout=(settings.kube_connect_timeout_s, settings.kube_read_timeout_s))
    providers = ProviderRouter(provider_factories(settings, kubernetes=provider),
                               in_use={lab.provider for lab in catalog.values()},
                               cooldown_s=settings.backend_cooldown_s)
    sessions = Sessions(store=store, provider=providers, catalog=catalog, holder=settings.replica_id,
                        pool_hashes=pools.hashes(catalog, settings.manifests_dir))
    sheet = _sheet_loader(settings.prices_file)
    sweeper = Sweeper(sessions=sessions, prices=sheet, meter_failure_limit=settings.meter_failure_limit,
                      simulate=settings.simulate_demand, replay_max_s=settings.replay_max_s)
    submissions = Submissions(sessions=sessions, sweeper=sweeper, prices=sheet, graders_dir=settings.graders_dir,
                              repo_root=REPO_ROOT, jail=jail.prepare(jail.policy(settings)),
                              replayer=Replayer(sweeper=sweeper, step_seconds=settings.replay_step_s))
    return Runtime(settings=settings, store=store, catalog=catalog, provider=provider, providers=providers,
                   sessions=sessions, sweeper=sweeper, submissions=submissions,
                   observation=Observation(sessions=sessions, simulate=settings.simulate_demand),
                   lti_registry=lti_launch.load_registry(settings.lti_platforms_file),
                   pools=pools.Pools(sessions=sessions, prices=sheet))


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
    """Background jobs on an APScheduler; each runs only while this replica holds the leader lease."""

    def __init__(self, runtime: Runtime, *, jobs: dict[str, tuple[Callable[[], object], float]]) -> None:
        self.runtime = runtime
        self.jobs = jobs
        self.scheduler = BackgroundScheduler(timezone=UTC)
        # APScheduler logs every run and every run skipped while the last one still works: not events. A job's own
        # failure is logged by _guarded, once.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self.stopped = threading.Event()
        shortest = min(interval for _, interval in jobs.values())
        self.ttl = timedelta(seconds=max(15.0, 3 * shortest))

    def leads(self) -> bool:
        return leader.try_acquire(self.runtime.store, name=LEASE, holder=self.runtime.holder, ttl=self.ttl,
                                  now=datetime.now(UTC))

    def start(self) -> None:
        for name, (fn, interval) in self.jobs.items():
            self.scheduler.add_job(self._guarded(name, fn), "interval", seconds=interval, id=name, max_instances=1,
                                   coalesce=True, next_run_time=datetime.now(UTC))
        self.scheduler.start()
        log.info("background loops started: %s",
                 ", ".join(f"{n} every {i:g}s" for n, (_, i) in self.jobs.items()))

    def stop(self) -> None:
        self.stopped.set()
        self.scheduler.shutdown(wait=True)
        leader.release(self.runtime.store, name=LEASE, holder=self.runtime.holder, now=datetime.now(UTC))

    def _guarded(self, name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            if self.stopped.is_set():
                return
            try:
                if not self.leads():
                    return
                fn()
            except Exception:  # one failed pass must not stop the loop; the next pass tries again
                log.exception("background job %s failed", name)
        return run
