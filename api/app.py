"""The FastAPI application over the parts :func:`labctl.runtime.build` wires from the settings: routers, error
handling, and the background jobs (:meth:`labctl.runtime.Runtime.jobs`, behind the leader lock) for its lifetime.

The app holds one typed object, :class:`api.deps.Parts` on ``app.state.parts``; routes receive its parts through the
dependencies of :mod:`api.deps`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

import labctl
from api import guard, problems
from api.deps import Parts
from api.routers import (
    clusters,
    costs,
    dashboard,
    health,
    hooks,
    labs,
    lti,
    pages,
    pools,
    sessions,
    submissions,
    tokens,
    webhooks,
)
from labctl import runtime as runtime_mod
from labctl.settings import Settings

log = logging.getLogger("labctl.api")


def create_app(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    """The app; ``background=False`` leaves the jobs to the caller (tests drive them one pass at a time)."""
    rt = runtime_mod.build(settings or Settings())
    parts = Parts.of(rt)
    loops = runtime_mod.Loops(rt, jobs=rt.jobs())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("labctl %s starting as replica %s with %s; %d labs", labctl.__version__, rt.holder,
                 rt.settings.redacted(), len(rt.catalog))
        rt.store.migrate()
        # Blocking routes run on this loop's thread pool: sized so a class's starts run at once (each waits on the
        # cluster), and a route's sync dependencies do not queue behind them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = rt.settings.request_threads
        if background:
            loops.start()  # the first sweep also reconciles what an interrupted run left
        yield
        if background:
            loops.stop()
        rt.close()

    app = FastAPI(
        title="labctl",
        version=labctl.__version__,
        summary="Hands-on FinOps lab controller: sandboxes with budgets, a live cost meter and cost-aware graders.",
        lifespan=lifespan,
    )
    app.state.parts = parts
    problems.RETRY_AFTER_S = max(1, math.ceil(rt.settings.backend_cooldown_s))
    problems.install(app)
    app.add_middleware(guard.Guard)
    parts.metrics.install(app)
    for module in (health, labs, pools, clusters, sessions, submissions, costs, tokens, webhooks, hooks, lti, pages,
                   dashboard):
        app.include_router(module.router)
    return app
