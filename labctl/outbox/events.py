"""Outbox events: the catalogue, subscriptions, and :func:`emit`, which writes an event in the caller's transaction.

Writing the event row (and one pending delivery per subscribed endpoint) in the same database transaction as the
state change that caused it is what makes delivery durable: either both commit or neither does, so no event is ever
lost or sent for a change that was rolled back. The dispatcher picks the deliveries up afterwards.

The body every receiver gets is ``{"type": ..., "timestamp": <ISO 8601 UTC>, "data": {...}}``; the event id
(``msg_...``) is the ``webhook-id`` header, the same on every retry, so receivers de-duplicate on it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labctl.store.webhook_models import OutboxEvent, WebhookDelivery, WebhookEndpoint

EVENT_TYPES: dict[str, str] = {
    "session.ready": "the learner's sandbox is ready to use",
    "session.expiring": "the session will expire soon (time left in the data)",
    "session.suspended": "workloads scaled to zero (budget, idle, off-hours or an instructor)",
    "session.terminated": "the sandbox is gone",
    "session.violation": "a resource of a cloud sandbox broke the lab's guardrails: resource, rule, action taken",
    "budget.threshold_crossed": "accrued cost crossed one of the lab's budget thresholds",
    "submission.graded": "a submission was graded: score, max, per-check results, receipt, learner and lab",
    "submission.failed": "grading could not finish; the reason is in the data",
    "webhook.endpoint_disabled": "an endpoint was disabled because its deliveries kept dying",
}
"""Every event type labctl sends, with what it means (the catalogue in docs/WEBHOOKS.md)."""

ALL = "*"


def new_event_id(now: datetime) -> str:
    """``msg_`` + 12 hex digits of milliseconds + 20 random hex digits: unique, and sortable by creation time."""
    millis = int(_utc(now).timestamp() * 1000)
    return f"msg_{millis:012x}{secrets.token_hex(10)}"


def validate_types(events: str | Iterable[str]) -> list[str] | str:
    """``"*"`` or a non-empty list of known event types (sorted, without repeats); raises ``ValueError`` otherwise."""
    if isinstance(events, str):
        if events == ALL:
            return ALL
        events = [events]
    chosen = sorted(set(events))
    if not chosen:
        raise ValueError("subscribe to at least one event type, or '*' for all")
    if ALL in chosen:
        if len(chosen) > 1:
            raise ValueError("'*' already means every event type; do not list others with it")
        return ALL
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return chosen


def subscribed(events: list[str] | str, event_type: str) -> bool:
    """Whether an endpoint with the subscription ``events`` wants ``event_type``."""
    return events == ALL or (isinstance(events, list) and event_type in events)


def body(payload: Mapping[str, Any]) -> str:
    """The exact text sent (and signed) for a stored payload: compact JSON, keys in their stored order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def emit(db: Session, *, type: str, data: dict[str, Any], session_id: str | None,
         now: datetime) -> OutboxEvent:
    """Add an event and one pending delivery per enabled endpoint subscribed to ``type``, in ``db``'s transaction.

    Nothing is committed here: the caller's unit of work commits the event together with the change that caused it.
    Raises ``ValueError`` for an unknown type or data that is not JSON.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; known: {', '.join(EVENT_TYPES)}")
    now = _utc(now)
    payload: dict[str, Any] = {"type": type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    body(payload)  # fail here, inside the caller's transaction, if the data is not JSON
    event = OutboxEvent(id=new_event_id(now), type=type, session_id=session_id, payload=payload, created_at=now)
    db.add(event)
    endpoints = db.scalars(select(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_(None))
                           .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)).all()
    for endpoint in endpoints:
        if subscribed(endpoint.events, type):
            db.add(WebhookDelivery(event_id=event.id, endpoint_id=endpoint.id, session_id=session_id,
                                   state="pending", attempts=0, next_attempt_at=now, created_at=now))
    return event


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
