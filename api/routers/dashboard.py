"""The instructor dashboard: ``/dashboard/login`` signs an instructor in with a token, ``/dashboard`` shows every
session, spend, grades, budget requests and failed webhook deliveries, and its script calls ``/dashboard/...`` for
live panels and the instructor's actions.

- **Sign-in**: the login form posts an instructor token (JSON, from the page's script) to ``POST /dashboard/login``.
  It is checked by :func:`labctl.service.auth.authenticate`, as a bearer token would be; only the role instructor is
  let in (a learner, platform or exam token gets a 403 that says so). A request whose ``Origin`` is another site's is
  refused, so another site cannot sign a browser in.
- **The dashboard cookie** ``labctl_dashboard`` is a :class:`labctl.service.links.StaffPass` signed for its own
  purpose: the *id* of the token that signed in (``token:<id>``, or ``admin:<fingerprint>`` for
  ``LABCTL_ADMIN_TOKEN``, :func:`labctl.service.auth.reference`) and an expiry :data:`SIGN_IN_TTL` ahead, never the
  token. ``HttpOnly``, ``SameSite=Strict``, ``Path=/dashboard``,
  ``Secure`` over https. Every request verifies it and then looks the token up again
  (:func:`labctl.service.auth.reauthenticate`): a revoked or expired token, or a tampered, expired or foreign cookie,
  sends the browser back to the login page (the live and action routes answer 401) and shows nothing.
- **Actions** (POST) also need the dashboard's anti-forgery token in ``X-Labctl-Csrf``, a pass for the same token
  signed for the dashboard's CSRF purpose and rendered into the page. They call the same use cases as the API does
  for an instructor token (extend, suspend, resume, reset, stop, budget decisions, redeliver).
- **Headers**: the learner page's CSP with ``frame-ancestors 'none'`` (the dashboard is never framed), ``no-store``,
  ``no-referrer``, ``nosniff``. A bearer token opens no dashboard and the cookie opens no ``/v1`` route.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from api import dashboard_view
from api.deps import learner_links, runtime_of, settings_of
from api.routers.pages import TEMPLATES
from api.schemas import BudgetDecision, Extend, IntId
from labctl.errors import Forbidden, LabctlError, Unauthorized
from labctl.service import auth, costs, links, overview, paging
from labctl.service import background as tasks
from labctl.service.auth import Principal
from labctl.store.models import SandboxSession

log = logging.getLogger("labctl.api")

COOKIE = "labctl_dashboard"
CSRF_HEADER = "x-labctl-csrf"
SIGN_IN_TTL = timedelta(hours=8)
PAGE_SIZE = 50
FAILED_DELIVERIES = 50  # of each state, failed and dead
PANELS = ("sessions", "budget", "costs", "grades", "deliveries")
WHY = {  # the login page's notice, by the reason the browser was sent there (never text from the request)
    "signed-out": "You are signed out.",
    "ended": "Your dashboard sign-in has ended: it expired, its token was revoked or it is not valid. Sign in again.",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Instructor:
    """The instructor behind a valid dashboard cookie, re-checked against the store for this request."""

    staff: links.StaffPass
    principal: Principal


class SignIn(BaseModel):
    model_config = {"extra": "forbid"}
    token: str = Field(min_length=1, max_length=512, description="an instructor token")


class NoBody(BaseModel):
    model_config = {"extra": "forbid"}


class Done(BaseModel):
    message: str
    next: str | None = None


# -- internals -----------------------------------------------------------------------------------------------------


def _key(request: Request) -> bytes:
    return learner_links(request).key


def _secure(request: Request) -> bool:
    settings = settings_of(request)
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")


def _instructor(request: Request) -> Instructor:
    """The instructor of a valid dashboard cookie; else Unauthorized (none, tampered, expired, token gone) or
    Forbidden (the token is no longer an instructor's)."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise Unauthorized("sign in to the dashboard with an instructor token at /dashboard/login")
    now = datetime.now(UTC)
    try:
        staff = links.verify_pass(cookie, key=_key(request), purpose=links.Purpose.DASHBOARD, now=now)
    except links.Tampered:
        raise Unauthorized("this dashboard sign-in is not valid; sign in again at /dashboard/login") from None
    except links.Expired:
        raise Unauthorized("this dashboard sign-in has expired; sign in again at /dashboard/login") from None
    try:
        principal = auth.reauthenticate(runtime_of(request).store, staff.caller,
                                        admin_token=runtime_of(request).admin_token, now=now)
    except Unauthorized as exc:
        raise Unauthorized(f"your dashboard sign-in has ended: {exc.detail}; then sign in again at "
                           "/dashboard/login") from None
    if principal.role != "instructor":
        raise Unauthorized("the token of this sign-in is no longer an instructor's; sign in again")
    return Instructor(staff=staff, principal=principal)


def signed_in(request: Request) -> Instructor:
    """The dependency of the live route: it runs before anything else of the request is looked at."""
    return _instructor(request)


def acting(request: Request) -> Instructor:
    """:func:`signed_in`, for an action: the dashboard's anti-forgery token must be sent too, for the same sign-in."""
    who = _instructor(request)
    try:
        sent = links.verify_pass(request.headers.get(CSRF_HEADER, ""), key=_key(request),
                                 purpose=links.Purpose.DASHBOARD_CSRF, now=datetime.now(UTC))
    except LabctlError:
        raise Forbidden("this action did not come from the dashboard (its anti-forgery token is missing or wrong); "
                        "reload the dashboard and try again") from None
    if sent.caller != who.staff.caller:
        raise Forbidden("this action's anti-forgery token is for another sign-in; reload the dashboard")
    return who


SignedIn = Annotated[Instructor, Depends(signed_in)]
Acting = Annotated[Instructor, Depends(acting)]


def _headers(response: Response) -> Response:
    """The headers every dashboard answer carries (see the module docstring)."""
    response.headers["content-security-policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    response.headers["cache-control"] = "no-store"
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["x-content-type-options"] = "nosniff"
    return response


def _to_login(why: str) -> Response:
    response = RedirectResponse(f"/dashboard/login?why={why}" if why else "/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return _headers(response)


def _error_page(request: Request, status: int, message: str) -> Response:
    response = TEMPLATES.TemplateResponse(request, "error.html", {
        "status": status, "title": "The dashboard cannot show this", "message": message}, status_code=status)
    return _headers(response)


def _filters(lab_id: str | None, learner_id: str | None, state: str | None, page: str | None) -> dashboard_view.Filters:
    return dashboard_view.Filters(lab_id=(lab_id or "").strip(), learner_id=(learner_id or "").strip(),
                                  state=(state or "").strip(), page=(page or "").strip())


def _view(request: Request, who: Instructor, filters: dashboard_view.Filters) -> dashboard_view.DashboardView:
    rt = runtime_of(request)
    webhooks = rt.webhooks
    rows, following = rt.sessions.list_sessions(
        principal=who.principal, lab_id=filters.lab_id or None, learner_id=filters.learner_id or None,
        state=filters.state or None, limit=PAGE_SIZE, after=paging.decode(filters.page) if filters.page else None)
    failed = [*webhooks.deliveries(state="failed", limit=FAILED_DELIVERIES),
              *webhooks.deliveries(state="dead", limit=FAILED_DELIVERIES)]
    return dashboard_view.build(
        filters=filters, labs=list(rt.sessions.catalog), page=rows,
        next_token=following.token() if following else None,
        cost_by_lab=costs.report(rt.store, group_by="lab"), cost_by_learner=costs.report(rt.store, group_by="learner"),
        grades=overview.latest_grades(rt.store), pending=overview.pending_budget_requests(rt.store),
        deliveries=failed, now=rt.sessions.clock())


def _done(message: str, **extra: Any) -> Response:
    return _headers(JSONResponse(Done(message=message, **extra).model_dump(exclude_none=True)))


def _same_origin(request: Request) -> bool:
    """Whether a browser's ``Origin`` (when it sent one) is this labctl's own address."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    settings = settings_of(request)
    own = {f"{request.url.scheme}://{request.url.netloc}"}
    if settings.public_url:
        public = urlsplit(settings.public_url)
        own.add(f"{public.scheme}://{public.netloc}")
    return origin in own


# -- sign-in -------------------------------------------------------------------------------------------------------


@router.get("/dashboard/login")
def login_page(request: Request, why: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    notice = WHY.get(why or "")
    return _headers(TEMPLATES.TemplateResponse(request, "dashboard_login.html", {"notice": notice}))


@router.post("/dashboard/login")
def login(body: SignIn, request: Request) -> Response:
    """Check an instructor token and answer with the dashboard cookie (never the token itself)."""
    if not _same_origin(request):
        raise Forbidden("sign in from labctl's own login page (/dashboard/login), not from another site")
    now = datetime.now(UTC)
    rt = runtime_of(request)
    principal = auth.authenticate(rt.store, f"Bearer {body.token.strip()}", admin_token=rt.admin_token, now=now)
    if principal.role != "instructor":
        raise Forbidden(f"this is a {principal.role} token ({principal.name}): the dashboard needs an instructor "
                        "token (`labctl tokens create --role instructor`)")
    ref = auth.reference(principal, admin_token=rt.admin_token)
    staff = links.StaffPass(ref, links.expiry(now, SIGN_IN_TTL.total_seconds()))
    response = _done(f"Signed in as {principal.name}.", next="/dashboard")
    response.set_cookie(COOKIE, links.sign_pass(staff, key=_key(request), purpose=links.Purpose.DASHBOARD),
                        max_age=int(SIGN_IN_TTL.total_seconds()), path="/dashboard", httponly=True,
                        secure=_secure(request), samesite="strict")
    log.info("dashboard sign-in by %s (%s)", principal.name, principal.caller)
    return response


@router.post("/dashboard/logout")
def logout(who: Acting, body: NoBody | None = None) -> Response:
    response = _done("Signed out.", next="/dashboard/login?why=signed-out")
    response.delete_cookie(COOKIE, path="/dashboard")
    log.info("dashboard sign-out by %s", who.principal.name)
    return response


# -- the dashboard -------------------------------------------------------------------------------------------------

LabQ = Annotated[str | None, Query(max_length=63)]
LearnerQ = Annotated[str | None, Query(max_length=128)]
StateQ = Annotated[str | None, Query(max_length=20)]
PageQ = Annotated[str | None, Query(alias="continue", max_length=512)]


@router.get("/dashboard")
def dashboard(request: Request, lab_id: LabQ = None, learner_id: LearnerQ = None, state: StateQ = None,
              page: PageQ = None) -> Response:
    try:
        who = _instructor(request)
    except Unauthorized:
        return _to_login("ended" if request.cookies.get(COOKIE) else "")
    try:
        view = _view(request, who, _filters(lab_id, learner_id, state, page))
    except LabctlError as exc:
        return _error_page(request, exc.status if 400 <= exc.status < 500 else 503, exc.detail)
    csrf = links.sign_pass(who.staff, key=_key(request), purpose=links.Purpose.DASHBOARD_CSRF)
    return _headers(TEMPLATES.TemplateResponse(request, "dashboard.html", {
        "v": view, "csrf": csrf, "who": who.principal.name}))


@router.get("/dashboard/state")
def live(request: Request, who: SignedIn, lab_id: LabQ = None, learner_id: LearnerQ = None, state: StateQ = None,
         page: PageQ = None) -> Response:
    """The dashboard's figures and each panel's HTML, for its script (polled every few seconds)."""
    view = _view(request, who, _filters(lab_id, learner_id, state, page))
    panels = TEMPLATES.get_template("dashboard_panels.html").make_module({"v": view})
    body = {**view.json(), "panels": {name: str(getattr(panels, name)(view)) for name in PANELS}}
    return _headers(JSONResponse(body))


# -- the instructor's actions --------------------------------------------------------------------------------------


def _stamp(row: SandboxSession) -> str:
    return f"{row.expires_at:%H:%M} UTC" if row.expires_at else "its deadline"


@router.post("/dashboard/sessions/{session_id}/extend")
def extend(session_id: str, body: Extend, request: Request, who: Acting) -> Response:
    row = runtime_of(request).sessions.extend(session_id, seconds=body.seconds, principal=who.principal)
    return _done(f"Extended {row.id} ({row.learner_id}): it now runs until {_stamp(row)}.")


@router.post("/dashboard/sessions/{session_id}/suspend")
def suspend(session_id: str, request: Request, who: Acting, body: NoBody | None = None) -> Response:
    row = runtime_of(request).sessions.suspend(session_id, principal=who.principal, cause="instructor",
                                             reason=f"suspended by {who.principal.name} from the dashboard")
    return _done(f"Suspended {row.id} ({row.learner_id}): its workloads are scaled to zero, its work is kept.")


@router.post("/dashboard/sessions/{session_id}/resume")
def resume(session_id: str, request: Request, who: Acting, body: NoBody | None = None) -> Response:
    row = runtime_of(request).sessions.resume(session_id, principal=who.principal,
                                            reason=f"resumed by {who.principal.name} from the dashboard")
    return _done(f"Resumed {row.id} ({row.learner_id}).")


@router.post("/dashboard/sessions/{session_id}/reset")
def reset(session_id: str, request: Request, who: Acting, body: NoBody | None = None) -> Response:
    row = runtime_of(request).sessions.reset(session_id, principal=who.principal)
    return _done(f"Reset {row.id} ({row.learner_id}): its sandbox was made again from scratch; it is {row.state}.")


@router.post("/dashboard/sessions/{session_id}/stop")
def stop(session_id: str, request: Request, who: Acting, body: NoBody | None = None) -> Response:
    sessions = runtime_of(request).sessions
    row = sessions.stop(session_id, principal=who.principal, reason=f"stopped by {who.principal.name}")
    tasks.REMOVALS.submit(f"removing the sandbox of {session_id}", sessions.finish_stop, session_id,
                          actor=who.principal.name)
    return _done(f"Stopping {row.id} ({row.learner_id}): its sandbox is being removed.")


@router.post("/dashboard/sessions/{session_id}/budget/approve")
def approve(session_id: str, body: BudgetDecision, request: Request, who: Acting) -> Response:
    row = runtime_of(request).sessions.decide_budget(session_id, approve=True, principal=who.principal,
                                                   request_id=body.request_id, usd=body.usd)
    return _done(f"Approved: {row.learner_id}'s budget in {row.id} is now ${row.budget_usd:,.2f}.")


@router.post("/dashboard/sessions/{session_id}/budget/deny")
def deny(session_id: str, body: BudgetDecision, request: Request, who: Acting) -> Response:
    row = runtime_of(request).sessions.decide_budget(session_id, approve=False, principal=who.principal,
                                                   request_id=body.request_id, usd=body.usd)
    return _done(f"Denied: {row.learner_id}'s request in {row.id} was refused; the budget stays "
                 f"${row.budget_usd:,.2f}.")


@router.post("/dashboard/deliveries/{delivery_id}/redeliver")
def redeliver(delivery_id: IntId, request: Request, who: Acting, body: NoBody | None = None) -> Response:
    view = runtime_of(request).webhooks.redeliver(delivery_id)
    return _done(f"Delivery {view.delivery.id} ({view.event_type}) is sent again now.")
