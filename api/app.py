"""The FastAPI application: routers, error handling and the background loops, over the parts that
:func:`labctl.runtime.build` wires from the settings."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

import labctl
from api import guard, problems
from api import metrics as metrics_mod
from api.learner_links import LearnerLinks
from api.routers import (
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
from labctl.outbox import Unprocessable
from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.endpoints import Webhooks
from labctl.outbox.targets import TargetPolicy
from labctl.service import background as tasks
from labctl.settings import Settings
from labctl.store.db import Store

log = logging.getLogger("labctl.api")


def create_app(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    """The app; ``background=False`` leaves the sweeps to the caller (tests drive them one pass at a time)."""
    settings = settings or Settings()
    rt = runtime_mod.build(settings)
    loops = runtime_mod.Loops(rt, jobs=rt.jobs())
    targets = TargetPolicy.from_entries(settings.webhook_allow)
    dispatcher = Dispatcher(rt.store, targets=targets)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("labctl %s starting with %s; %d labs", labctl.__version__, settings.redacted(), len(rt.catalog))
        rt.store.migrate()
        # Blocking routes run on this loop's thread pool: sized so a class's starts run at once (each waits on the
        # cluster), and a route's sync dependencies do not queue behind them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        if background:
            loops.start()  # the first sweep also reconciles what an interrupted run left
            dispatch_stop = threading.Event()
            dispatch = threading.Thread(target=dispatcher.run_forever, args=(dispatch_stop,), name="webhooks",
                                        daemon=True)
            dispatch.start()
        yield
        if background:
            dispatch_stop.set()
            dispatch.join(timeout=60)
            loops.stop()
        dispatcher.close()
        rt.store.engine.dispose()

    app = FastAPI(
        title="labctl",
        version=labctl.__version__,
        summary="Hands-on FinOps lab controller: sandboxes with budgets, a live cost meter and cost-aware graders.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.runtime = rt
    app.state.store = rt.store
    app.state.sessions = rt.sessions
    app.state.admin_token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    app.state.learner_links = LearnerLinks.from_settings(settings, admin_token=app.state.admin_token)
    app.state.metrics = metrics_mod.Metrics(rt.store)
    app.state.webhooks = Webhooks(rt.store, targets=targets)
    app.state.dispatcher = dispatcher
    # Event type -> handler for POST /v1/hooks/exam (see labctl.outbox.inbound).
    app.state.inbound_handlers = {"grade.requested": lambda data: _grade_requested(rt, data)}
    app.state.launches = rt.launches()
    # One readiness check per provider the catalog's labs use: "cluster" for Kubernetes, a cloud's by its name.
    app.state.probes = {"store": lambda: _store_probe(rt.store), "cluster": rt.provider.ping,
                        **{name: _provider_probe(rt, name) for name in rt.providers.in_use if name != "kubernetes"}}
    app.state.readiness_seen = {}  # check name -> last outcome, so a change is logged once
    problems.RETRY_AFTER_S = max(1, math.ceil(settings.backend_cooldown_s))
    problems.install(app)
    app.add_middleware(guard.Guard)
    app.state.metrics.install(app)
    for module in (health, labs, pools, sessions, submissions, costs, tokens, webhooks, hooks, lti, pages, dashboard):
        app.include_router(module.router)
    return app


def _grade_requested(rt: runtime_mod.Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Submit the learner's live session for the lab (once) and grade it in the background."""
    missing = [k for k in ("learner_id", "lab_id") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise Unprocessable(f"grade.requested needs data.{' and data.'.join(missing)}")
    sub, created = rt.submissions.submit_requested(lab_id=data["lab_id"], learner_id=data["learner_id"],
                                                   actor="exam-platform")
    if created:
        threading.Thread(target=tasks.run, args=(f"grading {sub.id}", rt.submissions.grade, sub.id),
                         name=f"grade-{sub.id}", daemon=True).start()
    return {"submission_id": sub.id, "session_id": sub.session_id, "created": created}


def _provider_probe(rt: runtime_mod.Runtime, name: str) -> Callable[[], str]:
    return lambda: rt.providers.of(name).ping()


def _store_probe(store: Store) -> str:
    store.ping()
    return f"{store.engine.dialect.name} at revision {store.revision()}"
