"""Inbound signed webhooks from the exam platform: verify, de-duplicate on ``webhook-id``, dispatch by type, remember.

The Standard Webhooks signature *is* the authentication (there is no bearer token): the expected signature is
computed by the reference ``standardwebhooks`` package from the configured ``whsec_`` secret, and compared in constant
time with every ``v1,`` entry of the ``webhook-signature`` header. The timestamp must be within five minutes of our
clock, which bounds how long a captured request could be replayed; within that window the ``webhook-id`` record
answers a replay with the first result instead of acting again.

A message is first *claimed* (its row inserted in its own transaction, so two concurrent copies cannot both act),
then handed to the handler registered for its type, then completed with the handler's result. A handler that raises
(an unknown learner, say) leaves no trace: the claim is removed and the error propagates, so a corrected retry with
the same id is processed. A claim whose request died is taken over after ``claim_timeout``.

Rejections, each before anything is recorded or any handler runs: no or wrong signature -> :class:`Unauthorized`
(401); missing id or timestamp, timestamp out of the window, body not JSON (or JSON that :mod:`labctl.inputs`
refuses: too deep, a NUL character, NaN) -> :class:`BadRequest` (400); not an event object, or no handler for its
type -> :class:`Unprocessable` (422). The signature is checked before the body is parsed, so an unsigned sender
never gets the JSON parser to work for it.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from standardwebhooks.webhooks import Webhook

from labctl import inputs
from labctl.outbox import BadRequest, Conflict, Unauthorized, Unprocessable
from labctl.store.db import Store
from labctl.store.webhook_models import InboundMessage

Handler = Callable[[dict[str, Any]], dict[str, Any]]
"""Acts on an event's ``data`` and returns a JSON-able result (remembered and returned to replays)."""

TOLERANCE = timedelta(minutes=5)
CLAIM_TIMEOUT = timedelta(minutes=2)
MAX_ID_LENGTH = 255


def require_signature(headers: Mapping[str, str]) -> str:
    """The ``webhook-signature`` header, or :class:`Unauthorized` (checked before the body is even read)."""
    signature = next((v for k, v in headers.items() if k.lower() == "webhook-signature"), "").strip()
    if not signature:
        raise Unauthorized("missing webhook-signature header: requests must be signed (Standard Webhooks)")
    return signature


def verify(*, headers: Mapping[str, str], body: bytes, secret: str, now: datetime) -> tuple[str, dict[str, Any]]:
    """Check the headers and signature of one request; returns ``(webhook-id, parsed event)`` or raises."""
    lower = {k.lower(): v for k, v in headers.items()}
    signature = require_signature(lower)
    msg_id = lower.get("webhook-id", "").strip()
    stamp = lower.get("webhook-timestamp", "").strip()
    if not msg_id or len(msg_id) > MAX_ID_LENGTH or inputs.NUL in msg_id:
        raise BadRequest(f"the webhook-id header must be 1-{MAX_ID_LENGTH} characters")
    try:
        sent_at = datetime.fromtimestamp(int(stamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"the webhook-timestamp header must be Unix seconds, not {stamp[:40]!r}") from None
    skew = sent_at - _utc(now)
    if abs(skew) > TOLERANCE:
        which = "old" if skew < timedelta(0) else "far in the future"
        raise BadRequest(f"webhook-timestamp {stamp} is too {which}: it is {abs(skew.total_seconds()):.0f}s from our "
                         f"clock; at most {TOLERANCE.total_seconds():.0f}s is accepted (check the sender's clock, "
                         "or sign each attempt afresh)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    expected = Webhook(secret).sign(msg_id, sent_at, text).split(",", 1)[1].encode()
    offered = [entry.split(",", 1)[1].encode() for entry in signature.split() if entry.startswith("v1,")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise Unauthorized("no webhook-signature entry matches: the secret, the body or the id differs from what "
                           "was signed")
    try:
        event = inputs.loads(text)  # only now, once the signature proved who sent it
    except inputs.UnsafeInput as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not isinstance(event.get("data"),
                                                                                               dict):
        raise Unprocessable('the body must be an event object: {"type": "<event type>", "data": {...}}')
    return msg_id, event


def verify_and_record(store: Store, *, headers: Mapping[str, str], body: bytes, secret: str, now: datetime,
                      handlers: Mapping[str, Handler], claim_timeout: timedelta = CLAIM_TIMEOUT) -> InboundMessage:
    """Verify one request, act on it once per ``webhook-id``, and return its record (with the handler's result).

    A replay of a completed message returns the first record without calling the handler. Raises the rejections
    listed in the module docstring, :class:`Conflict` while another request is still acting on the same id, and
    whatever the handler raises.
    """
    now = _utc(now)
    msg_id, event = verify(headers=headers, body=body, secret=secret, now=now)
    with store.session() as db:
        seen = db.get(InboundMessage, msg_id)
    if seen is not None and seen.completed_at is not None:
        return seen
    handler = handlers.get(event["type"])
    if handler is None:
        known = ", ".join(sorted(handlers)) or "none yet"
        raise Unprocessable(f"no handler for event type {event['type']!r} (handled types: {known})")
    claimed_at = _claim(store, msg_id, event["type"], now, claim_timeout)
    if isinstance(claimed_at, InboundMessage):
        return claimed_at
    try:
        result = handler(event["data"])
        json.dumps(result)
    except BaseException:
        with store.session() as db:
            db.execute(delete(InboundMessage).where(InboundMessage.webhook_id == msg_id,
                                                    InboundMessage.claimed_at == claimed_at,
                                                    InboundMessage.completed_at.is_(None)))
        raise
    with store.session() as db:
        row = db.get(InboundMessage, msg_id)
        assert row is not None
        row.result = result
        row.completed_at = now
        row.claimed_at = None
    return row


def _claim(store: Store, msg_id: str, event_type: str, now: datetime,
           claim_timeout: timedelta) -> datetime | InboundMessage:
    """Our claim time once we own the message, or the completed record when another request finished it first."""
    try:
        with store.session() as db:
            db.add(InboundMessage(webhook_id=msg_id, type=event_type, received_at=now, claimed_at=now))
        return now
    except IntegrityError:
        pass
    with store.session() as db:
        row = db.get(InboundMessage, msg_id)
        if row is None:
            raise Conflict(f"message {msg_id} was being processed and then rejected; send it again")
        if row.completed_at is not None:
            return row
        previous = row.claimed_at
        if previous is not None and _utc(previous) > now - claim_timeout:
            raise Conflict(f"message {msg_id} is being processed by another request; retry in a few seconds")
        taken = db.execute(update(InboundMessage)
                           .where(InboundMessage.webhook_id == msg_id, InboundMessage.claimed_at == previous,
                                  InboundMessage.completed_at.is_(None))
                           .values(claimed_at=now).execution_options(synchronize_session=False))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"message {msg_id} is being processed by another request; retry in a few seconds")
    return now


def sign_request(*, secret: str, msg_id: str, body: str, timestamp: datetime) -> dict[str, str]:
    """Headers for a request to ``POST /v1/hooks/exam`` (what the exam platform sends; used by tests and docs)."""
    sent_at = datetime.fromtimestamp(math.floor(_utc(timestamp).timestamp()), tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, sent_at, body),
        "content-type": "application/json",
    }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
