"""The learner page: ``/learn/open?link=...`` exchanges a signed learner link for the page cookie, ``/learn/{session}``
is the page, and its script calls ``/learn/{session}/...`` for live figures and the learner's actions.

- **The link** (``learner_url`` of a session answer, :mod:`api.learner_links`) is verified (signature, expiry) and
  its session must still belong to its learner. Then the answer sets the page cookie and sends the browser to
  ``/learn/{session}`` (303), so the link is not left in the address bar or the history. A tampered link is a 403
  page, an expired one a 410 page, one for a session that does not exist or is not its learner's a 404 page: plain
  HTML that says what to do and shows nothing of any session.
- **The page cookie** ``labctl_page`` is signed for its own purpose (:class:`labctl.service.links.Purpose`), names
  the session and the learner, lasts ``LABCTL_LEARNER_TOKEN_TTL_S`` at most (and no longer than the session's
  deadline), is ``HttpOnly`` and scoped by ``Path`` to ``/learn/{session}``: the browser sends it to that session's
  page only. ``SameSite=Lax`` by default; ``LABCTL_PAGE_COOKIE_SAMESITE=none`` for a course site on another site
  that embeds the page in an iframe (then ``Secure; Partitioned``). A bearer token opens no page.
- **What the cookie allows**: the learner's own actions on that one session (read it, its kubeconfig, extend,
  suspend, resume, ask for budget, submit), through the same use cases and rules as the API with a learner token.
  Never an instructor's action, never another session. Every action (POST) also needs the page's anti-forgery token
  in ``X-Labctl-Csrf`` (signed for the CSRF purpose, rendered into the page), so another site cannot make the
  learner's browser act.
- **Headers**: a CSP with no outside source (``default-src 'none'``; scripts, styles and images from labctl only;
  ``frame-ancestors`` from ``LABCTL_PAGE_FRAME_ANCESTORS``), ``no-store``, ``no-referrer``, ``nosniff``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from api import learner_view
from api.deps import learner_links, runtime_of, settings_of
from api.markdown import readme_html
from api.schemas import BudgetRequest, Extend
from labctl.errors import Forbidden, LabctlError, NotFound, Unauthorized
from labctl.service import background as tasks
from labctl.service import links
from labctl.service.auth import Principal
from labctl.settings import Settings
from labctl.store.models import SandboxSession

log = logging.getLogger("labctl.api")

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC_DIR = HERE / "static"
COOKIE = "labctl_page"
CSRF_HEADER = "x-labctl-csrf"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".txt": "text/plain"}

router = APIRouter(include_in_schema=False)


def _usd(value: float | None) -> str:
    """Money for people: cents from $10 up, tenths of a cent below (a sandbox's spend starts small)."""
    if value is None:
        return "—"
    return f"${value:,.2f}" if abs(value) >= 10 else f"${value:,.4f}"


def _hm(value: datetime, seconds: bool = False) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S UTC" if seconds else "%a %H:%M UTC")


def _left(until: datetime, now: datetime) -> str:
    """Time from ``now`` to ``until`` as the countdown shows it (the script keeps it ticking)."""
    total = int((until - now).total_seconds())
    if total <= 0:
        return "time is up"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours} h {minutes:02d} min " if hours else f"{minutes} min ") + f"{secs:02d} s"


TEMPLATES.env.filters.update(usd=_usd, hm=_hm, left=_left)


@dataclass(frozen=True)
class PageCaller:
    """The learner behind a valid page cookie, and the session it is for."""

    grant: links.Grant
    principal: Principal
    row: SandboxSession


class ActionDone(BaseModel):
    message: str
    state: str


class NoBody(BaseModel):
    """Actions without parameters accept an empty JSON object (or no body)."""

    model_config = {"extra": "forbid"}


class SubmitBody(NoBody):
    confirm: bool = Field(default=True, description="the learner confirmed on the page")


# -- internals -----------------------------------------------------------------------------------------------------


def _session_of(request: Request, grant: links.Grant) -> SandboxSession:
    """The grant's session, if it still belongs to the grant's learner (else NotFound, saying nothing of it)."""
    try:
        row = runtime_of(request).sessions.row_of(grant.session_id)
    except NotFound:
        raise NotFound("there is no lab session for this page") from None
    if row.learner_id != grant.learner_id:
        raise NotFound("there is no lab session for this page")
    return row


def _caller(request: Request, session_id: str) -> PageCaller:
    """The learner of a valid page cookie for ``session_id``; else 401 (none), 403 (forged), 410 (expired) or 404."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise Unauthorized("this page needs your lab link: open the lab again from your course page")
    grant = links.verify(cookie, key=learner_links(request).key, purpose=links.Purpose.PAGE, now=datetime.now(UTC))
    if grant.session_id != session_id:
        raise NotFound("there is no lab session for this page")
    row = _session_of(request, grant)
    principal = Principal(name=f"learner page ({grant.learner_id})", role="learner", learner_id=grant.learner_id)
    return PageCaller(grant=grant, principal=principal, row=row)


def page_caller(session_id: str, request: Request) -> PageCaller:
    """The dependency of the page's JSON routes: it runs before the body is validated (authentication first)."""
    return _caller(request, session_id)


def acting(session_id: str, request: Request) -> PageCaller:
    """:func:`page_caller`, for an action: the page's anti-forgery token must be sent too, for the same grant."""
    caller = _caller(request, session_id)
    token = request.headers.get(CSRF_HEADER, "")
    try:
        sent = links.verify(token, key=learner_links(request).key, purpose=links.Purpose.CSRF, now=datetime.now(UTC))
    except links.Tampered:
        raise Forbidden("this action did not come from your lab page (its anti-forgery token is missing or wrong); "
                        "reload the page and try again") from None
    if (sent.session_id, sent.learner_id) != (caller.grant.session_id, caller.grant.learner_id):
        raise Forbidden("this action's anti-forgery token is for another page; reload the page and try again")
    return caller


def _view(request: Request, caller: PageCaller) -> learner_view.LearnerView:
    rt = runtime_of(request)
    return learner_view.build(caller.row, lab=rt.sessions.lab(caller.row.lab_id), principal=caller.principal,
                              observation=rt.observation, now=rt.sessions.clock())  # the use cases' clock


def _readme(settings: Settings, lab_id: str) -> Any:
    path = settings.labs_dir / lab_id / "README.md"
    return readme_html(path.read_text(encoding="utf-8")) if path.is_file() else None


def _done(request: Request, message: str, row: SandboxSession) -> Response:
    return _secured(request, JSONResponse(ActionDone(message=message, state=row.state).model_dump()))


def _refused_page(request: Request, exc: LabctlError) -> Response:
    if isinstance(exc, links.Expired):
        return _error_page(request, 410, "This page has expired",
                           "Open the lab again from your course page to continue.")
    if isinstance(exc, links.Tampered):
        return _error_page(request, 403, "This page cannot be opened",
                           "Your page pass is not valid. Open the lab again from your course page.")
    if isinstance(exc, Unauthorized):
        return _error_page(request, 401, "Open this page from your course",
                           "This page needs your lab link: open the lab again from your course page.")
    if isinstance(exc, NotFound):
        return _error_page(request, 404, "There is no lab session here",
                           "Open the lab again from your course page.")
    return _error_page(request, exc.status if 400 <= exc.status < 600 else 500, "The page cannot be shown now",
                       f"{exc.detail} Try again in a moment.")


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    response = TEMPLATES.TemplateResponse(request, "error.html", {"status": status, "title": title,
                                                                  "message": message}, status_code=status)
    return _secured(request, response)


def _secured(request: Request, response: Response) -> Response:
    """The headers every page answer carries (see the module docstring)."""
    ancestors = " ".join(settings_of(request).page_frame_ancestors)
    response.headers["content-security-policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}")
    response.headers["cache-control"] = "no-store"
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["x-content-type-options"] = "nosniff"
    return response


Caller = Annotated[PageCaller, Depends(page_caller)]
Acting = Annotated[PageCaller, Depends(acting)]


# -- the link -----------------------------------------------------------------------------------------------------


@router.get("/learn/open")
def open_link(request: Request, link: Annotated[str | None, Query()] = None) -> Response:
    """Exchange a learner link for the page cookie, then go to the page."""
    now = datetime.now(UTC)
    if not link:
        return _error_page(request, 400, "This address needs your lab link",
                           "Open the lab from your course page: it gives you a link to this page.")
    try:
        grant = links.verify(link, key=learner_links(request).key, purpose=links.Purpose.LINK, now=now)
        row = _session_of(request, grant)
    except links.Expired:
        return _error_page(request, 410, "This link has expired",
                           "Lab links work for a few minutes only. Open the lab again from your course page for a "
                           "new one.")
    except links.Tampered:
        return _error_page(request, 403, "This link is not valid",
                           "It was changed or cut short on the way. Open the lab again from your course page.")
    except NotFound:
        return _error_page(request, 404, "There is no lab session for this link",
                           "Open the lab again from your course page.")
    settings = settings_of(request)
    cookie_until = min(now + timedelta(seconds=settings.learner_token_ttl_s), row.deadline_at or now)
    if cookie_until <= now:
        cookie_until = now + timedelta(minutes=30)  # an ended session: long enough to read the grade
    cookie = links.sign(links.Grant(grant.session_id, grant.learner_id, links.expiry(cookie_until, 0)),
                        key=learner_links(request).key, purpose=links.Purpose.PAGE)
    response = RedirectResponse(f"/learn/{row.id}", status_code=303)
    secure = settings.page_cookie_samesite == "none" or request.url.scheme == "https" or \
        (settings.public_url or "").startswith("https://")
    response.set_cookie(COOKIE, cookie, max_age=int((cookie_until - now).total_seconds()), path=f"/learn/{row.id}",
                        httponly=True, secure=secure, samesite=settings.page_cookie_samesite)
    if settings.page_cookie_samesite == "none":  # CHIPS: kept per top-level site where third-party cookies are cut
        header = response.headers["set-cookie"]
        del response.headers["set-cookie"]
        response.headers.append("set-cookie", header + "; Partitioned")
    log.info("learner page opened for session %s", row.id)
    return _secured(request, response)


# -- the page -----------------------------------------------------------------------------------------------------


@router.get("/learn/{session_id}")
def page(session_id: str, request: Request) -> Response:
    try:
        caller = _caller(request, session_id)
        view = _view(request, caller)
    except LabctlError as exc:
        return _refused_page(request, exc)
    csrf = links.sign(caller.grant, key=learner_links(request).key, purpose=links.Purpose.CSRF)
    readme = _readme(settings_of(request), caller.row.lab_id)
    response = TEMPLATES.TemplateResponse(request, "learn.html", {"v": view, "csrf": csrf, "readme": readme})
    return _secured(request, response)


@router.get("/learn/{session_id}/state")
def state(request: Request, caller: Caller) -> Response:
    """The live figures and each panel's HTML, for the page's script (polled every few seconds)."""
    view = _view(request, caller)
    panels = TEMPLATES.get_template("_panels.html").make_module({"v": view})
    body = {**view.json(), "panels": {name: str(getattr(panels, name)(view))
                                      for name in ("status", "budget", "workloads", "grade")}}
    return _secured(request, JSONResponse(body))


@router.get("/learn/{session_id}/kubeconfig")
def kubeconfig(session_id: str, request: Request, caller: Caller) -> Response:
    creds = runtime_of(request).sessions.credentials(session_id, principal=caller.principal)
    response = PlainTextResponse(creds.content, media_type="application/yaml")
    if request.query_params.get("download"):
        response.headers["content-disposition"] = f'attachment; filename="{session_id}-kubeconfig.yaml"'
    return _secured(request, response)


# -- the learner's actions ------------------------------------------------------------------------------------------


@router.post("/learn/{session_id}/extend")
def extend(session_id: str, body: Extend, request: Request, caller: Acting) -> Response:
    row = runtime_of(request).sessions.extend(session_id, seconds=body.seconds, principal=caller.principal)
    assert row.expires_at is not None
    return _done(request, f"Extended: your sandbox now runs until {row.expires_at:%H:%M} UTC.", row)


@router.post("/learn/{session_id}/suspend")
def suspend(session_id: str, request: Request, caller: Acting, body: NoBody | None = None) -> Response:
    row = runtime_of(request).sessions.suspend(session_id, principal=caller.principal, cause="learner",
                                             reason="suspended from the learner page")
    return _done(request, "Suspended: your workloads are scaled to zero and your work is kept.", row)


@router.post("/learn/{session_id}/resume")
def resume(session_id: str, request: Request, caller: Acting, body: NoBody | None = None) -> Response:
    row = runtime_of(request).sessions.resume(session_id, principal=caller.principal,
                                            reason="resumed from the learner page")
    return _done(request, "Resumed: your workloads are back as they were.", row)


@router.post("/learn/{session_id}/budget-requests")
def ask_budget(session_id: str, body: BudgetRequest, request: Request, caller: Acting) -> Response:
    row = runtime_of(request).sessions.request_budget(session_id, usd=body.usd, reason=body.reason,
                                                    principal=caller.principal)
    return _done(request, f"Asked for ${body.usd:.2f} more; an instructor decides.", row)


@router.post("/learn/{session_id}/submissions")
def submit(session_id: str, request: Request, background: BackgroundTasks, caller: Acting,
           body: SubmitBody | None = None) -> Response:
    rt = runtime_of(request)
    sub = rt.submissions.submit(session_id, principal=caller.principal)
    background.add_task(tasks.wait, rt.submissions.grade_later(sub.id))
    response = _done(request, "Submitted: your sandbox is frozen while it is graded.", rt.sessions.row_of(session_id))
    response.status_code = 202
    return response


@router.get("/static/{asset}")
def static(asset: str) -> Response:
    """The pages' stylesheet, scripts and icon (only files of ``api/static``, by name)."""
    path = STATIC_DIR / asset
    if "/" in asset or asset.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return PlainTextResponse(f"there is no static file {asset!r}", status_code=404)
    response = FileResponse(path, media_type=STATIC_TYPES[path.suffix])
    response.headers["cache-control"] = "public, max-age=300"
    response.headers["x-content-type-options"] = "nosniff"
    return response
