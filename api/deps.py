"""Dependencies of the routes: the authorized principal, and the typed parts the app was built with.

:data:`Authorized` is the one guard of every token route: the edge (:mod:`api.guard`) has authenticated the bearer
token; this dependency looks the matched route up in the role matrix (:mod:`labctl.service.roles`) and refuses a role
the matrix does not name (403 that says which roles may), so route bodies carry no role checks.

:class:`Parts` is the one object ``create_app`` puts on ``app.state`` (``app.state.parts``): the composition root's
:class:`~labctl.runtime.Runtime` and the HTTP edge's own parts. Routes never read ``app.state``; they take a part
through an ``Annotated`` alias below (``SessionsDep``, ``StoreDep``, ...) or an accessor (``runtime_of``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from api.learner_links import LearnerLinks
from api.metrics import Metrics
from labctl.errors import Forbidden, Unauthorized
from labctl.outbox.endpoints import Webhooks
from labctl.outbox.toolkey import ToolKey
from labctl.runtime import Handler, Runtime
from labctl.service import roles
from labctl.service.auth import Principal
from labctl.service.launches import Launches
from labctl.service.observation import Observation
from labctl.service.sessions import Sessions
from labctl.service.submissions import Submissions
from labctl.settings import Settings
from labctl.store.db import Store
from labctl.store.models import SandboxSession

LearnerUrl = Callable[[SandboxSession], str | None]


@dataclass
class Parts:
    """What one app serves with: the runtime every process shares, and the HTTP edge's own parts."""

    runtime: Runtime
    learner_links: LearnerLinks
    metrics: Metrics
    readiness_seen: dict[str, bool] = field(default_factory=dict)  # check name -> last outcome (logged on change)

    @classmethod
    def of(cls, runtime: Runtime) -> Parts:
        return cls(runtime=runtime, learner_links=LearnerLinks.from_settings(runtime.settings,
                                                                             admin_token=runtime.admin_token),
                   metrics=Metrics(runtime.session_costs))


def parts_of(app: FastAPI) -> Parts:
    """The parts ``create_app`` put on the app."""
    parts: Parts = app.state.parts
    return parts


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
    links = learner_links(request)
    base_url, now = str(request.base_url), datetime.now(UTC)
    return lambda row: links.url_for(row, principal=principal, base_url=base_url, now=now)


async def optional_principal(request: Request) -> Principal | None:
    """The caller of a public route when it sent a (valid) token, else ``None``."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def app_parts(request: Request) -> Parts:
    return parts_of(request.app)


def runtime_of(request: Request) -> Runtime:
    """What the composition root built for this app (``labctl.runtime.build``)."""
    return parts_of(request.app).runtime


def settings_of(request: Request) -> Settings:
    return runtime_of(request).settings


def store_of(request: Request) -> Store:
    return runtime_of(request).store


async def sessions_service(request: Request) -> Sessions:
    return runtime_of(request).sessions


async def submissions_service(request: Request) -> Submissions:
    return runtime_of(request).submissions


async def observation_service(request: Request) -> Observation:
    return runtime_of(request).observation


async def launches_service(request: Request) -> Launches:
    return runtime_of(request).launches


async def webhooks_admin(request: Request) -> Webhooks:
    return runtime_of(request).webhooks


async def inbound_handlers(request: Request) -> dict[str, Handler]:
    return runtime_of(request).inbound


def learner_links(request: Request) -> LearnerLinks:
    return parts_of(request.app).learner_links


def lti_key(request: Request) -> ToolKey:
    return runtime_of(request).lti_key


Authorized = Annotated[Principal, Depends(authorized)]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]
PartsDep = Annotated[Parts, Depends(app_parts)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
StoreDep = Annotated[Store, Depends(store_of)]
SessionsDep = Annotated[Sessions, Depends(sessions_service)]
SubmissionsDep = Annotated[Submissions, Depends(submissions_service)]
ObservationDep = Annotated[Observation, Depends(observation_service)]
LaunchesDep = Annotated[Launches, Depends(launches_service)]
WebhooksDep = Annotated[Webhooks, Depends(webhooks_admin)]
InboundDep = Annotated[dict[str, Handler], Depends(inbound_handlers)]
ToolKeyDep = Annotated[ToolKey, Depends(lti_key)]
LearnerLinksDep = Annotated[LearnerLinks, Depends(learner_links)]
LearnerUrls = Annotated[LearnerUrl, Depends(learner_urls)]
