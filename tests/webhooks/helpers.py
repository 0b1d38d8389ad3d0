"""Small helpers shared by the webhook tests: emit events, run the dispatcher until it is idle, read the outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.events import emit
from labctl.store.db import Store
from labctl.store.webhook_models import OutboxEvent, WebhookDelivery
from tests.webhooks.conftest import Clock


def emit_one(store: Store, clock: Clock, type: str, session_id: str | None, **data: Any) -> str:
    with store.session() as db:
        return emit(db, type=type, data={"session_id": session_id, **data}, session_id=session_id, now=clock()).id


def drain(dispatcher: Dispatcher, *, rounds: int = 100) -> int:
    """Sweep until nothing is due; returns the number of attempts made."""
    total = 0
    for _ in range(rounds):
        sent = dispatcher.run_once()
        if not sent:
            return total
        total += sent
    raise AssertionError(f"still sending after {rounds} sweeps")


def deliveries(store: Store) -> list[WebhookDelivery]:
    with store.session() as db:
        return list(db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all())


def events(store: Store) -> list[OutboxEvent]:
    with store.session() as db:
        return list(db.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at, OutboxEvent.id)).all())
