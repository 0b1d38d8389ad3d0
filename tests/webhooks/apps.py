"""Test apps: the real webhook and hook routers on a FastAPI app over a real store, with problem handling installed.

The parts come from the composition root (``labctl.runtime.build``) over the test's store; these apps mount only the
routers under test, so the tests can register their own inbound handlers and reach loopback receivers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from api import guard, problems
from api.deps import Parts
from api.routers import hooks, webhooks
from labctl import runtime
from labctl.outbox.endpoints import Webhooks
from labctl.settings import Settings
from labctl.store.db import Store
from tests.webhooks.conftest import LOOPBACK

ADMIN_TOKEN = "webhook-tests-admin-token-0123456789abcdef"


def webhook_app(store: Store, *, exam_secret: str | None = None,
                handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None) -> FastAPI:
    settings = Settings(database_url=store.engine.url.render_as_string(hide_password=False),
                        admin_token=SecretStr(ADMIN_TOKEN),
                        exam_webhook_secret=SecretStr(exam_secret) if exam_secret else None)
    built = runtime.build(settings)
    built.store.engine.dispose()
    rt = dataclasses.replace(built, store=store, webhooks=Webhooks(store, targets=LOOPBACK),
                             inbound=handlers if handlers is not None else {})
    app = FastAPI()
    app.state.parts = Parts.of(rt)
    problems.install(app)
    app.add_middleware(guard.Guard)
    app.include_router(webhooks.router)
    app.include_router(hooks.router)
    return app
