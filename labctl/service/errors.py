"""Errors of the use cases, each with a message a person can act on; the API maps them to problem documents."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    slug = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    status = 404
    slug = "not-found"


class Conflict(ServiceError):
    status = 409
    slug = "conflict"


class Unauthorized(ServiceError):
    status = 401
    slug = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    slug = "forbidden"


class Unavailable(ServiceError):
    status = 503
    slug = "backend-unavailable"
