"""Dependencies of the routes: the authorized principal, and the use-case objects.

:data:`Authorized` is the one guard of every token route: the edge (:mod:`api.guard`) has authenticated the bearer
token; this dependency looks the matched route up in the role matrix (:mod:`labctl.service.roles`) and refuses a role
the matrix does not name (403 that says which roles may), so route bodies carry no role checks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from api.learner_links import LearnerLinks
from labctl.errors import Forbidden, Unauthorized
from labctl.outbox.toolkey import ToolKey
from labctl.runtime import Runtime
from labctl.service import roles
from labctl.service.auth import Principal
from labctl.service.launches import Launches
from labctl.service.observation import Observation
from labctl.service.sessions import Sessions
from labctl.settings import Settings
from labctl.store.models import SandboxSession

LearnerUrl = Callable[[SandboxSession], str | None]


async def authorized(request: Request) -> Principal:
    """The caller, when the role matrix lets its role call the matched route."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    method = "GET" if request.method == "HEAD" else request.method
    path: str = request.scope["route"].path
    rule = roles.rule_for(method, path)
    if rule is None:
        raise Forbidden(f"{method} {path} has no entry in labctl's role matrix, so no token may call it")
    if not roles.allows(rule, principal.role):
        allowed = " or ".join(rule) if isinstance(rule, tuple) else "no token role"
        raise Forbidden(f"{method} {path} needs the role {allowed}; your token ({principal.name}) has "
                        f"{principal.role}")
    return principal


async def learner_urls(request: Request, principal: Annotated[Principal, Depends(authorized)]) -> LearnerUrl:
    """The ``learner_url`` maker for this caller: a signed link for those who may open the page, else ``None``.
    Async (it only builds a function): a sync dependency would take a second turn on the thread pool, queued behind
    the blocking routes of every other request."""
    links: LearnerLinks = request.app.state.learner_links
    base_url, now = str(request.base_url), datetime.now(UTC)
    return lambda row: links.url_for(row, principal=principal, base_url=base_url, now=now)


async def optional_principal(request: Request) -> Principal | None:
    """The caller of a public route when it sent a (valid) token, else ``None``."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def runtime_of(request: Request) -> Runtime:
    """What the composition root built for this app (``labctl.runtime.build``)."""
    rt: Runtime = request.app.state.runtime
    return rt


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def sessions_service(request: Request) -> Sessions:
    service: Sessions = request.app.state.sessions
    return service


async def observation_service(request: Request) -> Observation:
    service: Observation = request.app.state.runtime.observation
    return service


async def launches_service(request: Request) -> Launches:
    service: Launches = request.app.state.launches
    return service


def learner_links(request: Request) -> LearnerLinks:
    made: LearnerLinks = request.app.state.learner_links
    return made


def lti_key(request: Request) -> ToolKey:
    key: ToolKey = request.app.state.runtime.lti_key
    return key


Authorized = Annotated[Principal, Depends(authorized)]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]
SessionsDep = Annotated[Sessions, Depends(sessions_service)]
ObservationDep = Annotated[Observation, Depends(observation_service)]
LaunchesDep = Annotated[Launches, Depends(launches_service)]
ToolKeyDep = Annotated[ToolKey, Depends(lti_key)]
LearnerLinksDep = Annotated[LearnerLinks, Depends(learner_links)]
LearnerUrls = Annotated[LearnerUrl, Depends(learner_urls)]
