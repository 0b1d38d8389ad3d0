"""The webhook outbox: signed events out to the exam platform, signed requests in from it, LTI grade passback.

Outbound delivery follows Standard Webhooks (standardwebhooks.com): :mod:`~labctl.outbox.events` writes an event and its
deliveries in the caller's transaction, :mod:`~labctl.outbox.dispatcher` sends them (signed by
:mod:`~labctl.outbox.signing`, retried on :mod:`~labctl.outbox.schedule`), :mod:`~labctl.outbox.endpoints` manages the
receivers. :mod:`~labctl.outbox.inbound` verifies and de-duplicates what the exam platform sends us, and
:mod:`~labctl.outbox.lti` publishes a score to an LMS with LTI 1.3 Assignment and Grade Services.

Errors are :mod:`labctl.errors`' family (``OutboxError`` is its base under an older name); the API turns each into
the problem document of its status.
"""

from __future__ import annotations

from labctl.errors import BadRequest, Conflict, LabctlError, NotFound, Unauthorized, Unprocessable, UpstreamError

OutboxError = LabctlError  # the outbox raises the package-wide family (labctl.errors)

__all__ = ["BadRequest", "Conflict", "NotFound", "OutboxError", "Unauthorized", "Unprocessable", "UpstreamError"]
