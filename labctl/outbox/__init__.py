"""The webhook outbox: signed events out to the exam platform, signed requests in from it, LTI grade passback.

Outbound delivery follows Standard Webhooks (standardwebhooks.com): :mod:`~labctl.outbox.events` writes an event and its
deliveries in the caller's transaction, :mod:`~labctl.outbox.dispatcher` sends them (signed by
:mod:`~labctl.outbox.signing`, retried on :mod:`~labctl.outbox.schedule`), :mod:`~labctl.outbox.endpoints` manages the
receivers. :mod:`~labctl.outbox.inbound` verifies and de-duplicates what the exam platform sends us, and
:mod:`~labctl.outbox.lti` publishes a score to an LMS with LTI 1.3 Assignment and Grade Services.

This package sits below the use cases (import-linter layers), so it cannot raise :mod:`labctl.service.errors`; it
raises the :class:`OutboxError` family below instead, each with the HTTP status and problem slug the API answers with.
"""

from __future__ import annotations


class OutboxError(Exception):
    """A request the outbox cannot satisfy, with a message a person can act on."""

    status = 400
    slug = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(OutboxError):
    """Malformed input that no retry will fix (a stale timestamp, a body that is not JSON)."""


class Unauthorized(OutboxError):
    status = 401
    slug = "unauthorized"


class NotFound(OutboxError):
    status = 404
    slug = "not-found"


class Conflict(OutboxError):
    status = 409
    slug = "conflict"


class Unprocessable(OutboxError):
    """Well-formed but not acceptable: an unknown event type, an invalid URL."""

    status = 422
    slug = "unprocessable"


class UpstreamError(OutboxError):
    """Another system (an LMS, its token endpoint) refused or failed."""

    status = 502
    slug = "upstream-error"
