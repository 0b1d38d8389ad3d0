"""The FastAPI application: wiring of settings, store, catalog, provider, routers and error handling.

This is the composition root of the service: it picks the adapters (store, Kubernetes provider) and hands them to the
use cases; nothing below it knows which ones were chosen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import labctl
from api import metrics as metrics_mod
from api import problems
from api.routers import health, labs, sessions, tokens
from labctl.catalog import loader
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from labctl.service.sessions import Sessions
from labctl.settings import Settings
from labctl.store.db import Store, open_store

log = logging.getLogger("labctl.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = open_store(settings.effective_database_url)
    catalog = loader.load_catalog(settings.labs_dir, settings.manifests_dir, fleet_file=settings.fleet_file)
    provider = KubernetesSandboxes(settings.effective_kubeconfig, settings.manifests_dir,
                                   step_delay_s=settings.provision_step_delay_s)
    service = Sessions(store=store, provider=provider, catalog=catalog)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("labctl %s starting with %s; %d labs", labctl.__version__, settings.redacted(), len(catalog))
        store.migrate()
        # Finish what an interrupted run left (starts in flight, stops, cleanups) without delaying start-up.
        threading.Thread(target=_reconcile, args=(service,), name="reconcile", daemon=True).start()
        yield
        store.engine.dispose()

    app = FastAPI(
        title="labctl",
        version=labctl.__version__,
        summary="Hands-on FinOps lab controller: sandboxes with budgets, a live cost meter and cost-aware graders.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.sessions = service
    app.state.admin_token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    app.state.metrics = metrics_mod.Metrics()
    app.state.probes = {"store": lambda: _store_probe(store), "cluster": provider.ping}
    problems.install(app)
    app.state.metrics.install(app)
    for module in (health, labs, sessions, tokens):
        app.include_router(module.router)
    return app


def _store_probe(store: Store) -> str:
    store.ping()
    return f"{store.engine.dialect.name} at revision {store.revision()}"


def _reconcile(service: Sessions) -> None:
    try:
        counts = service.reconcile()
    except Exception:  # a failed reconcile must not kill the service; the next start-up tries again
        log.exception("reconcile at start-up failed")
        return
    if any(counts.values()):
        log.info("reconciled at start-up: %s", counts)
