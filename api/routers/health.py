"""Liveness, readiness and metrics: the only routes without a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from labctl.service import health

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the store and the cluster answer")
def readyz(request: Request) -> JSONResponse:
    result = health.check(request.app.state.probes)
    request.app.state.metrics.ready.set(1 if result.ready else 0)
    body = {
        "status": "ready" if result.ready else "not ready",
        "checks": {name: {"ok": c.ok, "detail": c.detail, "seconds": c.seconds} for name, c in result.checks.items()},
    }
    if result.ready:
        return JSONResponse(body)
    failing = ", ".join(f"{n}: {c.detail}" for n, c in result.checks.items() if not c.ok)
    problem = {
        "type": "https://labctl.dev/problems/not-ready",
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"labctl is not ready: {failing}",
        "checks": body["checks"],
    }
    return JSONResponse(problem, status_code=503, media_type="application/problem+json")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
