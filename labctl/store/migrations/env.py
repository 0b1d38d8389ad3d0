"""Alembic environment: migrates the connection handed in by :meth:`labctl.store.db.Store.migrate`."""

from alembic import context
from sqlalchemy import create_engine

import labctl.store.webhook_models  # noqa: F401  (registers the webhook tables on Base.metadata)
from labctl.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    context.run_migrations()


run()
