"""Test apps: the real webhook and hook routers on a FastAPI app over a real store, with problem handling installed.

The production wiring (``api.app.create_app``) needs the lab catalog and a cluster; these apps mount only the routers
under test, as the composition root does, so the tests can register their own inbound handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from api import guard, problems
from api.routers import hooks, webhooks
from labctl.outbox.endpoints import Webhooks
from labctl.settings import Settings
from labctl.store.db import Store
from tests.webhooks.conftest import LOOPBACK

ADMIN_TOKEN = "webhook-tests-admin-token-0123456789abcdef"


def webhook_app(store: Store, *, exam_secret: str | None = None,
                handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None) -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings(exam_webhook_secret=SecretStr(exam_secret) if exam_secret else None)
    app.state.store = store
    app.state.admin_token = ADMIN_TOKEN
    app.state.webhooks = Webhooks(store, targets=LOOPBACK)
    app.state.inbound_handlers = handlers if handlers is not None else {}
    problems.install(app)
    app.add_middleware(guard.Guard)
    app.include_router(webhooks.router)
    app.include_router(hooks.router)
    return app
