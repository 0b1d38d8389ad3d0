"""Webhook endpoints and the delivery log (``/v1/webhooks``; the role matrix admits instructors only).

An endpoint's ``whsec_`` secret is in the answer to its creation and to each rotation, and nowhere else. Errors of the
outbox (:mod:`labctl.errors`) become problem documents with their status through the API's problem handler.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api import responses
from api.deps import Authorized, WebhooksDep
from api.schemas import IntId
from labctl.outbox.endpoints import DeliveryView
from labctl.outbox.events import EVENT_TYPES
from labctl.store.webhook_models import WebhookEndpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=responses.TOKEN)
ENDPOINT = responses.problems(404, s404="no such webhook endpoint")




class CreateEndpoint(BaseModel):
    url: str = Field(min_length=1, max_length=2000, examples=["https://exam.example.com/hooks/labctl"])
    events: list[str] | str = Field(default="*", examples=[["session.ready", "submission.graded"], "*"],
                                    description=f"'*' for every type, or a list of: {', '.join(EVENT_TYPES)}")
    description: str = Field(default="", max_length=500)


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str
    events: list[str] | str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None = Field(
        description="while set, the secret before the last rotation still signs (a second signature)")

    @classmethod
    def of(cls, row: WebhookEndpoint) -> EndpointOut:
        return cls(id=row.id, url=row.url, description=row.description, events=row.events,
                   created_at=row.created_at, disabled_at=row.disabled_at,
                   disabled_reason=row.disabled_reason, consecutive_failures=row.consecutive_failures,
                   previous_secret_expires_at=row.previous_secret_expires_at)


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="the whsec_ signing secret: shown here once, keep it in the receiver")

    @classmethod
    def of(cls, row: WebhookEndpoint) -> EndpointWithSecret:
        return cls(**EndpointOut.of(row).model_dump(), secret=row.secret)


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="the webhook-id header: the same on every attempt")
    event_type: str
    endpoint_id: str
    session_id: str | None
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, view: DeliveryView) -> DeliveryOut:
        d = view.delivery
        return cls(id=d.id, event_id=d.event_id, event_type=view.event_type, endpoint_id=d.endpoint_id,
                   session_id=d.session_id, state=d.state, attempts=d.attempts,
                   next_attempt_at=d.next_attempt_at, last_attempt_at=d.last_attempt_at,
                   last_status=d.last_status, last_error=d.last_error, delivered_at=d.delivered_at,
                   created_at=d.created_at)


@router.post("/endpoints", status_code=201, summary="Subscribe a receiver (the secret is shown once)")
def create_endpoint(body: CreateEndpoint, principal: Authorized, admin: WebhooksDep) -> EndpointWithSecret:
    row = admin.create(url=body.url, events=body.events, description=body.description)
    return EndpointWithSecret.of(row)


@router.get("/endpoints", summary="List receivers (without secrets)")
def list_endpoints(principal: Authorized, admin: WebhooksDep) -> list[EndpointOut]:
    return [EndpointOut.of(row) for row in admin.list_endpoints()]


@router.get("/endpoints/{endpoint_id}", summary="One receiver (without its secret)",
            responses=ENDPOINT)
def get_endpoint(endpoint_id: str, principal: Authorized, admin: WebhooksDep) -> EndpointOut:
    return EndpointOut.of(admin.get(endpoint_id))


@router.post("/endpoints/{endpoint_id}/rotate", summary="New secret; the old one also signs for 24 hours",
             responses=ENDPOINT)
def rotate(endpoint_id: str, principal: Authorized, admin: WebhooksDep) -> EndpointWithSecret:
    return EndpointWithSecret.of(admin.rotate(endpoint_id))


@router.post("/endpoints/{endpoint_id}/disable", summary="Stop sending; undelivered messages wait",
             responses=ENDPOINT)
def disable(endpoint_id: str, principal: Authorized, admin: WebhooksDep) -> EndpointOut:
    return EndpointOut.of(admin.disable(endpoint_id, reason=f"disabled by {principal.name}"))


@router.post("/endpoints/{endpoint_id}/enable", summary="Send again, starting with the messages that waited",
             responses=ENDPOINT)
def enable(endpoint_id: str, principal: Authorized, admin: WebhooksDep) -> EndpointOut:
    return EndpointOut.of(admin.enable(endpoint_id))


@router.get("/deliveries", summary="The delivery log, newest first")
def list_deliveries(
    principal: Authorized, admin: WebhooksDep,
    state: Annotated[str | None, Query(description="pending, failed, delivered or dead")] = None,
    endpoint_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryOut]:
    return [DeliveryOut.of(v) for v in admin.deliveries(state=state, endpoint_id=endpoint_id, limit=limit)]


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202,
             summary="Send again now with a fresh retry schedule (same webhook-id)",
             responses=responses.problems(404, 409, s404="no such delivery"))
def redeliver(delivery_id: IntId, _: Authorized, admin: WebhooksDep) -> DeliveryOut:
    return DeliveryOut.of(admin.redeliver(delivery_id))
