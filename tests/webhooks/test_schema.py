"""Revision 0002 creates the webhook tables of ``labctl.store.webhook_models`` as modelled, and comes off cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from labctl.store.db import Store
from labctl.store.models import Base

WEBHOOK_TABLES = {"webhook_endpoints", "outbox_events", "webhook_deliveries", "inbound_messages"}


def _about_webhooks(diff: object) -> bool:
    text = repr(diff)
    return any(table in text for table in WEBHOOK_TABLES)


def test_the_migrated_schema_matches_the_models(store: Store) -> None:
    assert set(inspect(store.engine).get_table_names()) >= WEBHOOK_TABLES
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if _about_webhooks(d)] == []
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("webhook_deliveries")}
    assert {"ix_webhook_deliveries_due", "ix_webhook_deliveries_order"} <= indexes


def test_downgrade_to_0001_removes_the_webhook_tables_and_keeps_the_rest(store: Store) -> None:
    before = set(inspect(store.engine).get_table_names())
    with store.engine.begin() as conn:
        cfg = store.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    after = set(inspect(store.engine).get_table_names())
    assert before - after >= WEBHOOK_TABLES  # (and whatever later revisions added)
    assert {"sessions", "session_events", "api_tokens"} <= after
    store.migrate()
    assert set(inspect(store.engine).get_table_names()) >= WEBHOOK_TABLES
