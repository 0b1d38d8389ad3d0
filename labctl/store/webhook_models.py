"""Tables of the webhook outbox: endpoints, events, deliveries, and the inbound messages already handled.

The outbox is the durable half of Standard Webhooks delivery. An :class:`OutboxEvent` is written in the same
transaction as the state change that caused it, with one :class:`WebhookDelivery` per subscribed endpoint; the
dispatcher then works through the deliveries (retry schedule, per-session order, leases so a killed process loses
nothing). :class:`InboundMessage` remembers every signed message received from the exam platform by its
``webhook-id`` so a replay is answered from the first result instead of acting twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from labctl.store.models import Base, UTCDateTime


class WebhookEndpoint(Base):
    """A receiver URL, the event types it wants (a list, or ``"*"`` for all) and its signing secret(s)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    events: Mapped[list[str] | str] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret keeps signing (a second signature) until this moment.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Deliveries that died in a row (reset by any success); the dispatcher disables the endpoint at its threshold.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxEvent(Base):
    """One event as the receivers see it; ``id`` is the ``webhook-id`` header, the same on every retry."""

    __tablename__ = "outbox_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(63), index=True)
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event to one endpoint: ``pending`` (not tried yet), ``failed`` (will retry), ``delivered`` or ``dead``.

    ``next_attempt_at`` is when it is due; while a dispatcher holds it, it is the end of that dispatcher's lease, so a
    delivery whose dispatcher died becomes due again by itself. ``session_id`` is copied from the event so the
    per-session order check is one indexed lookup.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "endpoint_id", "session_id", "state", "id"),
    )


class InboundMessage(Base):
    """A signed message received from the exam platform, by ``webhook-id``: claimed, then completed with a result."""

    __tablename__ = "inbound_messages"

    webhook_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set while a request is acting on the message; a claim older than the takeover time may be taken over.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[dict[str, object] | None] = mapped_column(JSON)
