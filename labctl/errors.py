"""Errors with a message a person can act on, each carrying the HTTP status and problem slug the API answers with.

One family for the whole package: the use cases, the outbox and the API's problem handler all speak it, so an error
raised anywhere becomes the same RFC 9457 document.
"""

from __future__ import annotations


class LabctlError(Exception):
    status = 400
    slug = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(LabctlError):
    """Malformed input that no retry will fix (a stale timestamp, a body that is not JSON)."""


class Unauthorized(LabctlError):
    status = 401
    slug = "unauthorized"


class Forbidden(LabctlError):
    status = 403
    slug = "forbidden"


class NotFound(LabctlError):
    status = 404
    slug = "not-found"


class Conflict(LabctlError):
    status = 409
    slug = "conflict"


class Unprocessable(LabctlError):
    """Well-formed but not acceptable: an unknown event type, an invalid URL."""

    status = 422
    slug = "unprocessable"


class UpstreamError(LabctlError):
    """Another system (an LMS, its token endpoint) refused or failed."""

    status = 502
    slug = "upstream-error"


class Unavailable(LabctlError):
    """A backend labctl needs (the cluster, a cloud) does not answer now."""

    status = 503
    slug = "backend-unavailable"
