"""LTI 1.3 for an LMS: login initiation, the resource-link launch, and the tool's public keys.

These routes are reached by a browser the LMS sends, not by an API client: no bearer token (the launch is
authenticated by the platform's signed ``id_token``), and every refusal is a short HTML page saying what went wrong
and what to do, with no detail of any session. ``docs/WEBHOOKS.md`` ("LTI 1.3") has the flow and the platforms file.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Cookie, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from api import responses
from api.deps import LaunchesDep, LearnerLinksDep, ToolKeyDep
from labctl.errors import LabctlError
from labctl.outbox.launch import FLOW_LIFETIME, LaunchRefused, Login

router = APIRouter(prefix="/lti", tags=["lti"], responses=responses.EDGE)
REFUSED = "a page for the learner saying what went wrong and what to do"

STATE_COOKIE = "labctl_lti_state"
MAX_FORM_BYTES = 64 * 1024
LAUNCH_PATH = "/lti/launch"


@router.get("/login", summary="LTI 1.3 login initiation (the LMS sends the browser here)",
            response_class=RedirectResponse, status_code=302,
            responses=responses.merge(responses.redirect(302, "to the platform's authorization endpoint"),
                                      responses.EDGE, responses.html(400, description=REFUSED)))
@router.post("/login", summary="LTI 1.3 login initiation, posted", response_class=RedirectResponse, status_code=302,
             include_in_schema=False)
async def login(request: Request, launches: LaunchesDep) -> Response:
    fields = dict(request.query_params) | await _form(request)
    try:
        params = Login.model_validate(fields)
    except ValidationError as exc:
        missing = sorted({str(e["loc"][-1]) for e in exc.errors()})
        return _refusal(400, "This login from your course is incomplete",
                        f"The learning platform did not send {', '.join(missing)}. Open the lab from your course "
                        "again; if it keeps failing, tell your instructor.")
    if not urlsplit(params.target_link_uri).path.endswith(LAUNCH_PATH):
        return _refusal(400, "This link does not lead to a lab",
                        "The course's link points somewhere labctl does not launch from. Tell your instructor.")
    try:
        target, state = launches.login(params, redirect_uri=str(request.url_for("lti_launch")))
    except LaunchRefused as exc:
        return _refusal(400, "This course is not connected to labctl", str(exc))
    response = RedirectResponse(target, status_code=302)
    secure = request.url.scheme == "https"
    response.set_cookie(STATE_COOKIE, state, max_age=int(FLOW_LIFETIME.total_seconds()), path="/lti",
                        httponly=True, secure=secure, samesite="none" if secure else "lax")
    return response


@router.post("/launch", name="lti_launch", summary="LTI 1.3 resource-link launch (the LMS posts the id_token here)",
             response_class=RedirectResponse, status_code=303,
             responses=responses.merge(responses.redirect(303, "to the learner page, by a fresh signed link"),
                                       responses.EDGE, responses.problems(422),
                                       responses.html(400, 403, 404, 409, 422, 503, description=REFUSED)))
async def launch(request: Request, launches: LaunchesDep, links: LearnerLinksDep,
                 browser_state: Annotated[str | None, Cookie(alias=STATE_COOKIE)] = None) -> Response:
    form = await _form(request)
    id_token, state = form.get("id_token"), form.get("state")
    if not id_token or not state:
        return _refusal(400, "This launch is incomplete", "The learning platform did not send the launch's token. "
                        "Open the lab from your course again.")
    try:
        row = launches.launch(id_token=id_token, state=state, browser_state=browser_state)
    except LaunchRefused as exc:
        return _refusal(403, "This launch could not be verified", str(exc))
    except LabctlError as exc:
        return _refusal(exc.status, "The lab could not be started", exc.detail)
    landing = links.link(row, base_url=str(request.base_url), now=datetime.now(UTC))
    response = RedirectResponse(landing, status_code=303)  # the learner page, by a fresh signed link
    response.delete_cookie(STATE_COOKIE, path="/lti")
    return response


@router.get("/jwks.json", summary="The tool's public keys (platforms check AGS requests with them)")
def jwks(key: ToolKeyDep) -> JSONResponse:
    return JSONResponse(key.jwks(), headers={"cache-control": "public, max-age=3600"})


async def _form(request: Request) -> dict[str, str]:
    if request.method != "POST":
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), max_num_fields=50))


def _refusal(status: int, title: str, message: str) -> HTMLResponse:
    """A small page a person can read: what went wrong and what to do (no stack trace, no session detail)."""
    page = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            f"content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)} - labctl</title></head><body "
            "style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; "
            f"color: #1a1a1a\"><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>")
    return HTMLResponse(page, status_code=status)
