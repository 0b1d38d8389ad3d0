"""Liveness, readiness and metrics: the routes that need no bearer token, and show no learner or address without one.

Anonymous callers learn whether each readiness check passed (``ok``), never its detail: a failing probe's text can
carry the apiserver's or the database's address. An instructor token adds each check's detail and timing. A change of
a check's outcome is logged once, with its detail. ``/metrics`` serves the service's own figures to anyone; the
per-session gauges (labelled with session, lab and learner ids) need an instructor token, unless
``LABCTL_METRICS_PUBLIC_SESSIONS`` opens them (for a scraper on a trusted network without a token).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import problems, responses
from api.deps import MaybePrincipal, PartsDep
from labctl.service import health

log = logging.getLogger("labctl.api")
router = APIRouter(tags=["health"], responses=responses.EDGE)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    # On the event loop, not the request threads: a liveness probe must not queue behind a class's blocking
    # starts or submits.
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the store and the cluster answer (details with an instructor token)",
            responses=responses.problems(503, s503="not ready: `checks` says which check failed; `Retry-After` says "
                                                   "when to ask again"))
def readyz(parts: PartsDep, principal: MaybePrincipal) -> JSONResponse:
    result = health.check(parts.runtime.probes, any_of=parts.runtime.cluster_probes)
    parts.metrics.ready.set(1 if result.ready else 0)
    _log_changes(parts.readiness_seen, result)
    detailed = principal is not None and principal.role == "instructor"
    checks: dict[str, dict[str, Any]] = {
        name: ({"ok": c.ok, "detail": c.detail, "seconds": c.seconds} if detailed else {"ok": c.ok})
        for name, c in result.checks.items()}
    if result.ready:
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(n for n, c in result.checks.items() if not c.ok)
    return problems.problem_response(503, f"labctl is not ready: {failing} not ok (the service log says why)",
                                     slug="not-ready", checks=checks)


def _log_changes(seen: dict[str, bool], result: health.Readiness) -> None:
    for name, check in result.checks.items():
        if seen.get(name) != check.ok:
            if check.ok:
                log.info("readiness check %s ok: %s", name, check.detail)
            else:
                log.warning("readiness check %s failing: %s", name, check.detail)
            seen[name] = check.ok


@router.get("/metrics", summary="Prometheus metrics (per-session gauges with an instructor token)",
            response_class=Response,
            responses=responses.text(200, responses.PROMETHEUS_TEXT, "the Prometheus text exposition format"))
def metrics(parts: PartsDep, principal: MaybePrincipal) -> Response:
    text = generate_latest(parts.metrics.registry)
    if parts.runtime.settings.metrics_public_sessions or (principal is not None and principal.role == "instructor"):
        text += generate_latest(parts.metrics.sessions)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
