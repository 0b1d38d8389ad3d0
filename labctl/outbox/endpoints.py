"""Managing webhook receivers and the delivery log: subscribe, rotate a secret, disable, enable, list, redeliver.

The secret of a new endpoint (and of a rotation) is returned once, to be shown once; the store keeps it because every
delivery must be signed with it. A rotation keeps the old secret signing for an overlap window (24 hours by default)
so a receiver can switch secrets without losing a message. Disabling an endpoint keeps its undelivered messages; they
go out when it is enabled again. A new endpoint's host must resolve to addresses the target policy allows
(:mod:`labctl.outbox.targets`: public ones, or ones the operator's allow-list names).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select

from labctl.outbox import NotFound, Unprocessable
from labctl.outbox import events as events_mod
from labctl.outbox.signing import new_secret
from labctl.outbox.targets import TargetPolicy
from labctl.store.db import Store
from labctl.store.webhook_models import OutboxEvent, WebhookDelivery, WebhookEndpoint

ROTATION_OVERLAP = timedelta(hours=24)
DELIVERY_STATES = ("pending", "failed", "delivered", "dead")
MAX_URL_LENGTH = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


def validate_url(url: str) -> str:
    """An absolute ``http`` or ``https`` URL with a host; raises :class:`Unprocessable` with what is wrong."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise Unprocessable(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Unprocessable(f"'{url}' is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise Unprocessable(f"webhook URLs must be http or https, not '{parts.scheme or '(none)'}': '{url}'")
    if not parts.hostname:
        raise Unprocessable(f"the URL '{url}' has no host")
    if port == 0:
        raise Unprocessable(f"the URL '{url}' names port 0")
    if parts.fragment:
        raise Unprocessable(f"the URL '{url}' has a fragment (#...), which is never sent to a server")
    return url


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as the log shows it, with its event's type."""

    delivery: WebhookDelivery
    event_type: str


class Webhooks:
    """The instructor's operations on endpoints and deliveries, over one store."""

    def __init__(self, store: Store, *, targets: TargetPolicy, clock: Callable[[], datetime] = utcnow,
                 rotation_overlap: timedelta = ROTATION_OVERLAP) -> None:
        self.store = store
        self.targets = targets
        self.clock = clock
        self.rotation_overlap = rotation_overlap

    def create(self, *, url: str, events: str | Iterable[str], description: str = "") -> WebhookEndpoint:
        """A new endpoint with a fresh secret (read it from the returned row; it is not shown again)."""
        url = validate_url(url)
        try:
            chosen = events_mod.validate_types(events)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        parts = urlsplit(url)
        assert parts.hostname is not None  # validate_url refuses URLs without a host
        self.targets.addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        row = WebhookEndpoint(id=f"ep_{secrets.token_hex(8)}", url=url, description=description, events=chosen,
                              secret=new_secret(), consecutive_failures=0, created_at=self.clock())
        with self.store.session() as db:
            db.add(row)
        return row

    def list_endpoints(self) -> list[WebhookEndpoint]:
        with self.store.session() as db:
            return list(db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at,
                                                                    WebhookEndpoint.id)).all())

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        with self.store.session() as db:
            return _endpoint(db.get(WebhookEndpoint, endpoint_id), endpoint_id)

    def rotate(self, endpoint_id: str) -> WebhookEndpoint:
        """A new current secret; the old one keeps signing (a second signature) for the overlap window."""
        now = self.clock()
        with self.store.session() as db:
            row = _endpoint(db.get(WebhookEndpoint, endpoint_id), endpoint_id)
            row.previous_secret = row.secret
            row.previous_secret_expires_at = now + self.rotation_overlap
            row.secret = new_secret()
        return row

    def disable(self, endpoint_id: str, *, reason: str = "disabled by an instructor") -> WebhookEndpoint:
        """Stop sending to the endpoint; its undelivered messages wait until it is enabled."""
        with self.store.session() as db:
            row = _endpoint(db.get(WebhookEndpoint, endpoint_id), endpoint_id)
            if row.disabled_at is None:
                row.disabled_at = self.clock()
                row.disabled_reason = reason
        return row

    def enable(self, endpoint_id: str) -> WebhookEndpoint:
        """Send to the endpoint again (waiting deliveries go out at once) with a fresh failure count."""
        with self.store.session() as db:
            row = _endpoint(db.get(WebhookEndpoint, endpoint_id), endpoint_id)
            row.disabled_at = None
            row.disabled_reason = None
            row.consecutive_failures = 0
        return row

    def deliveries(self, *, state: str | None = None, endpoint_id: str | None = None,
                   limit: int = 100) -> list[DeliveryView]:
        """The delivery log, newest first."""
        if state is not None and state not in DELIVERY_STATES:
            raise Unprocessable(f"unknown delivery state '{state}'; known: {', '.join(DELIVERY_STATES)}")
        query = (select(WebhookDelivery, OutboxEvent.type).join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
                 .order_by(WebhookDelivery.id.desc()).limit(limit))
        if state is not None:
            query = query.where(WebhookDelivery.state == state)
        if endpoint_id is not None:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        with self.store.session() as db:
            return [DeliveryView(delivery=d, event_type=t) for d, t in db.execute(query).all()]

    def delivery(self, delivery_id: int) -> DeliveryView:
        query = (select(WebhookDelivery, OutboxEvent.type).join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
                 .where(WebhookDelivery.id == delivery_id))
        with self.store.session() as db:
            found = db.execute(query).first()
        if found is None:
            raise NotFound(f"there is no delivery {delivery_id}; `labctl webhooks deliveries list` shows them")
        return DeliveryView(delivery=found[0], event_type=found[1])

    def redeliver(self, delivery_id: int) -> DeliveryView:
        """Send the delivery again now with a fresh retry schedule (same ``webhook-id``, so receivers can dedupe)."""
        redeliver(self.store, delivery_id, now=self.clock())
        return self.delivery(delivery_id)


def redeliver(store: Store, delivery_id: int, *, now: datetime) -> WebhookDelivery:
    """Reset one delivery to pending, due at ``now``, with its attempt count back to zero."""
    with store.session() as db:
        row = db.get(WebhookDelivery, delivery_id)
        if row is None:
            raise NotFound(f"there is no delivery {delivery_id}; `labctl webhooks deliveries list` shows them")
        row.state = "pending"
        row.attempts = 0
        row.next_attempt_at = now
        row.delivered_at = None
    return row


def _endpoint(row: WebhookEndpoint | None, endpoint_id: str) -> WebhookEndpoint:
    if row is None:
        raise NotFound(f"there is no webhook endpoint '{endpoint_id}'; `labctl webhooks endpoints list` shows them")
    return row
