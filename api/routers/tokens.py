"""API tokens: ``POST /v1/tokens`` (instructors only); the token is returned once, stored hashed."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from api.deps import CurrentPrincipal
from api.schemas import CreateToken, TokenOut
from labctl.service import auth

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=201, summary="Create a token (shown once)")
def create_token(body: CreateToken, principal: CurrentPrincipal, request: Request) -> TokenOut:
    principal.require("instructor")
    token = auth.create_token(request.app.state.store, name=body.name, role=body.role, learner_id=body.learner_id,
                              now=datetime.now(UTC))
    return TokenOut(name=body.name, role=body.role, learner_id=body.learner_id, token=token)
