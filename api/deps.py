"""Dependencies of the routes: the principal behind the bearer token, and the use-case objects."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from labctl.service.auth import Principal, authenticate
from labctl.service.sessions import Sessions


def current_principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    state = request.app.state
    return authenticate(state.store, authorization, admin_token=state.admin_token)


def sessions_service(request: Request) -> Sessions:
    service: Sessions = request.app.state.sessions
    return service


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
SessionsDep = Annotated[Sessions, Depends(sessions_service)]
