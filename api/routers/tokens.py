"""API tokens (``/v1/tokens``): create (the token is returned once, stored hashed), list, revoke.

Every token expires: a learner token after ``LABCTL_LEARNER_TOKEN_TTL_S`` (12 hours by default), the others after
``LABCTL_TOKEN_TTL_S`` (90 days); a creation may ask for less, never for more.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from api import responses
from api.deps import Authorized, SettingsDep, StoreDep
from api.schemas import CreateToken, IntId, TokenInfo, TokenOut
from labctl.errors import Unprocessable
from labctl.service import auth

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=responses.TOKEN)


@router.post("", status_code=201, summary="Create a token (shown once)", responses=responses.problems(409))
def create_token(body: CreateToken, _: Authorized, settings: SettingsDep, store: StoreDep) -> TokenOut:
    most = settings.learner_token_ttl_s if body.role == "learner" else settings.token_ttl_s
    if body.ttl_s is not None and body.ttl_s > most:
        raise Unprocessable(f"ttl_s {body.ttl_s} is longer than {body.role} tokens may live ({most} s, "
                            f"LABCTL_{'LEARNER_' if body.role == 'learner' else ''}TOKEN_TTL_S)")
    row, token = auth.create_token(store, name=body.name, role=body.role,
                                   learner_id=body.learner_id, now=datetime.now(UTC),
                                   ttl=timedelta(seconds=body.ttl_s or most))
    return TokenOut(**TokenInfo.of(row).model_dump(), token=token)


@router.get("", summary="Every token: role, expiry, last use (never the token itself)")
def list_tokens(_: Authorized, store: StoreDep) -> list[TokenInfo]:
    return [TokenInfo.of(row) for row in auth.list_tokens(store)]


@router.delete("/{token_id}", summary="Revoke a token now", responses=responses.problems(404))
def revoke_token(token_id: IntId, _: Authorized, store: StoreDep) -> TokenInfo:
    return TokenInfo.of(auth.revoke_token(store, token_id=token_id, now=datetime.now(UTC)))
