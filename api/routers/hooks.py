"""Inbound webhooks from the exam platform (``POST /v1/hooks/exam``), authenticated by a Standard Webhooks signature.

No bearer token: the ``webhook-signature`` over ``id.timestamp.body`` with the secret in ``LABCTL_EXAM_WEBHOOK_SECRET``
is the authentication. The body is ``{"type": ..., "data": {...}}``; the handler for the type comes from
the runtime's ``inbound`` handlers (the composition root registers them, e.g. ``grade.requested`` -> submit the
learner's live session). Every rejection is a problem document, and nothing is recorded or done for it; a replayed
``webhook-id`` is answered with the first result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api import responses
from api.deps import InboundDep, SettingsDep, StoreDep
from api.problems import Problem
from labctl.outbox import inbound

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])


class InboundOut(BaseModel):
    webhook_id: str
    type: str
    received_at: datetime
    result: dict[str, Any] | None


@router.post("/exam", summary="Signed event from the exam platform (Standard Webhooks; e.g. grade.requested)",
             responses=responses.problems(
                 400, 401, 404, 409, 413, 422, 503,
                 s400="missing id or timestamp, timestamp outside +-5 minutes, not JSON, JSON too deep or with a NUL "
                      "character",
                 s401="missing or wrong signature (or a bearer token sent along that is not valid)",
                 s404="the handler found no such learner or lab",
                 s409="the same webhook-id is being processed right now",
                 s422="not an event object, or no handler for its type",
                 s503="no exam webhook secret is configured, or the store did not answer"))
async def exam_hook(request: Request, settings: SettingsDep, store: StoreDep, handlers: InboundDep) -> InboundOut:
    secret = settings.exam_webhook_secret
    if secret is None:
        raise Problem(503, "inbound exam webhooks are off: set LABCTL_EXAM_WEBHOOK_SECRET to the whsec_ secret shared "
                           "with the exam platform", slug="not-configured")
    inbound.require_signature(request.headers)  # an unsigned request is refused before its body is read
    body = await request.body()
    row = await run_in_threadpool(
        lambda: inbound.verify_and_record(store, headers=dict(request.headers), body=body,
                                          secret=secret.get_secret_value(), now=datetime.now(UTC),
                                          handlers=handlers))
    return InboundOut(webhook_id=row.webhook_id, type=row.type, received_at=row.received_at,
                      result=row.result)
