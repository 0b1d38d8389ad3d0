"""The FastAPI application: wiring of settings, store, cluster probe, routers and error handling.

This is the composition root of the service: it picks the adapters (store, Kubernetes client) and hands them to the
use cases; nothing below it knows which ones were chosen.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import labctl
from api import metrics as metrics_mod
from api import problems
from api.routers import health
from labctl.providers.kubernetes import client as kube
from labctl.settings import Settings
from labctl.store.db import Store, open_store

log = logging.getLogger("labctl.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = open_store(settings.effective_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("labctl %s starting with %s", labctl.__version__, settings.redacted())
        store.migrate()
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
    app.state.metrics = metrics_mod.Metrics()
    app.state.probes = {
        "store": lambda: _store_probe(store),
        "cluster": lambda: kube.ping(settings.effective_kubeconfig),
    }
    problems.install(app)
    app.state.metrics.install(app)
    app.include_router(health.router)
    return app


def _store_probe(store: Store) -> str:
    store.ping()
    return f"{store.engine.dialect.name} at revision {store.revision()}"
