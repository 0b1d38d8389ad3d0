"""Every error is an RFC 9457 problem-details document (``application/problem+json``) a person can act on.

A 503 always says when to try again (``Retry-After``, :data:`RETRY_AFTER_S`: a backend that did not answer is not
asked again for the providers' cool-down, see ``labctl.providers.router``), so a client backs off instead of
hammering an outage. A store that does not answer (a database restarting, a connection cut, SQLite locked) is such
an outage too: a 503 that names the store, never a 500. A 405 names the methods the path allows (``Allow``, from
every route of that path). The statuses each route answers are declared for the OpenAPI document by
:mod:`api.responses`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api import responses
from labctl.errors import LabctlError
from labctl.store.db import is_outage

log = logging.getLogger("labctl.api")

PROBLEM_JSON = responses.PROBLEM_JSON
RETRY_AFTER_S = 5  # default; create_app sets it from LABCTL_BACKEND_COOLDOWN_S
TYPE_BASE = "https://labctl.dev/problems/"


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, slug: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.extra = extra


def problem_response(status: int, detail: str, *, slug: str | None = None, instance: str | None = None,
                     **extra: Any) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or phrase.lower().replace(" ", "-")),
        "title": phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, slug=exc.slug, instance=request.url.path, **exc.extra)

    @app.exception_handler(LabctlError)
    async def _service(request: Request, exc: LabctlError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        response = problem_response(exc.status, exc.detail, slug=exc.slug, instance=request.url.path)
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No such resource: {request.method} {request.url.path}. See /docs for the API."
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            response = problem_response(405, f"{request.method} is not allowed on {request.url.path}; it answers "
                                             f"{', '.join(allowed)}.", instance=request.url.path)
            response.headers["Allow"] = ", ".join(allowed)
            return response
        response = problem_response(exc.status_code, detail, instance=request.url.path)
        for name, value in (exc.headers or {}).items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"] if p != "body"), "message": err["msg"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return problem_response(422, f"Invalid request: {summary}", slug="validation-error",
                                instance=request.url.path, errors=errors)

    @app.exception_handler(DBAPIError)
    async def _store(request: Request, exc: DBAPIError) -> JSONResponse:
        return _store_down(request, exc) if is_outage(exc) else _unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Also what an error raised outside the routes gets (the edge's authentication reads the store too).
        if isinstance(exc, DBAPIError) and is_outage(exc):
            return _store_down(request, exc)
        return _unexpected_error(request, exc)


def _store_down(request: Request, exc: DBAPIError) -> JSONResponse:
    log.warning("the store did not answer on %s %s: %s", request.method, request.url.path,
                type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__)
    return problem_response(503, "labctl's store (its database) did not answer; try again shortly.",
                            slug="store-unavailable", instance=request.url.path)


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "labctl hit an unexpected error; the service log has the details.",
                            instance=request.url.path)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path answers, asked of the router itself (Starlette's own 405 names the
    methods of the first route that matched the path only)."""
    routes = request.app.router.routes
    return [method for method in METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


