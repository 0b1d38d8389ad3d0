"""Sessions: start, list, inspect, kubeconfig, events, reset and stop (``/v1/sessions``); budget requests and
instructors' grants of attempts and money to a learner in a lab.

Who may call each route is the role matrix's decision (:data:`api.deps.Authorized`); which sessions a caller may
touch is the use cases' (a learner's own, 404 for others).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse

from api import responses
from api.deps import Authorized, LearnerUrl, LearnerUrls, ObservationDep, SessionsDep
from api.schemas import (
    AllowanceOut,
    BudgetDecision,
    BudgetRequest,
    EventOut,
    Extend,
    GrantIn,
    MetricsOut,
    SessionBrief,
    SessionOut,
    StartSession,
    session_view,
)
from labctl.service import background as tasks
from labctl.service import paging
from labctl.store.models import SandboxSession

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=responses.TOKEN)
SESSION = responses.problems(404)  # a session that does not exist or is not the caller's
COMMAND = responses.problems(404, 409)  # and one whose state or lease refuses the command


@router.post("", summary="Start a lab (or get the learner's live session for it)",
             responses={200: {"description": "the live session that already existed"},
                        201: {"description": "a new session"},
                        **responses.problems(404, 409, s404="no such lab")})
def start(body: StartSession, principal: Authorized, sessions: SessionsDep, response: Response,
          links: LearnerUrls) -> SessionOut:
    row, created = sessions.start(lab_id=body.lab_id, learner_id=body.learner_id, principal=principal)
    response.status_code = 201 if created else 200
    return _out(links, row)


@router.post("/grants", summary="Give a learner more attempts or money in a lab (instructors)",
             responses=responses.problems(404, 409, s404="no such lab"))
def grant(body: GrantIn, principal: Authorized, sessions: SessionsDep) -> AllowanceOut:
    return AllowanceOut.of(sessions.grant(lab_id=body.lab_id, learner_id=body.learner_id, attempts=body.attempts,
                                          usd=Decimal(str(body.usd)), reason=body.reason, principal=principal))


@router.get("", summary="List sessions, newest first, a page at a time",
            responses={200: {"description": "one page; a `Link` header with `rel=\"next\"` names the next one",
                             "headers": {"Link": {"description": "the next page's URL (absent on the last page)",
                                                  "schema": {"type": "string"}}}}})
def list_sessions(
    request: Request, response: Response, principal: Authorized, sessions: SessionsDep, links: LearnerUrls,
    lab_id: Annotated[str | None, Query()] = None, learner_id: Annotated[str | None, Query()] = None,
    state: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT, description="rows per page")] = paging.DEFAULT_LIMIT,
    continue_: Annotated[str | None, Query(alias="continue", max_length=512,
                                           description="the token of the previous page's Link header")] = None,
) -> list[SessionOut | SessionBrief]:
    rows, following = sessions.list_sessions(principal=principal, lab_id=lab_id, learner_id=learner_id, state=state,
                                             limit=limit, after=paging.decode(continue_) if continue_ else None)
    if following is not None:
        url = request.url.include_query_params(limit=limit, **{"continue": following.token()})
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return [session_view(r, principal, links) for r in rows]


@router.get("/{session_id}", summary="One session", responses=SESSION)
def get_session(session_id: str, principal: Authorized, sessions: SessionsDep,
                links: LearnerUrls) -> SessionOut | SessionBrief:
    return session_view(sessions.get(session_id, principal=principal), principal, links)


@router.get("/{session_id}/kubeconfig", summary="The learner's kubeconfig (YAML)",
            response_class=responses.YamlResponse, responses=COMMAND)
def kubeconfig(session_id: str, principal: Authorized, sessions: SessionsDep) -> PlainTextResponse:
    creds = sessions.credentials(session_id, principal=principal)
    return PlainTextResponse(creds.content, media_type="application/yaml")


@router.get("/{session_id}/metrics", summary="What the sandbox's pods use now (CPU, memory, GPU in DCGM terms) and "
                                             "what its workloads served", responses=COMMAND)
def metrics(session_id: str, principal: Authorized, observation: ObservationDep) -> MetricsOut:
    return MetricsOut.of(observation.metrics(session_id, principal=principal))


@router.get("/{session_id}/events", summary="The session's timeline", responses=SESSION)
def events(session_id: str, principal: Authorized, sessions: SessionsDep) -> list[EventOut]:
    return [EventOut.of(e) for e in sessions.events(session_id, principal=principal)]


@router.post("/{session_id}/extend", summary="More time, up to the lab's deadline", responses=COMMAND)
def extend(session_id: str, body: Extend, principal: Authorized, sessions: SessionsDep,
           links: LearnerUrls) -> SessionOut:
    return _out(links, sessions.extend(session_id, seconds=body.seconds, principal=principal))


@router.post("/{session_id}/suspend", summary="Scale the sandbox to zero, keeping the learner's work",
             responses=COMMAND)
def suspend(session_id: str, principal: Authorized, sessions: SessionsDep, links: LearnerUrls) -> SessionOut:
    return _out(links, sessions.suspend(session_id, principal=principal, cause="instructor"
                                          if principal.role == "instructor" else "learner",
                                          reason=f"suspended by {principal.name}"))


@router.post("/{session_id}/resume", summary="Restore exactly what suspend stopped", responses=COMMAND)
def resume(session_id: str, principal: Authorized, sessions: SessionsDep, links: LearnerUrls) -> SessionOut:
    return _out(links, sessions.resume(session_id, principal=principal, reason=f"resumed by {principal.name}"))


@router.post("/{session_id}/budget-requests", summary="Ask for more budget (an instructor decides)", responses=COMMAND)
def request_budget(session_id: str, body: BudgetRequest, principal: Authorized,
                   sessions: SessionsDep, links: LearnerUrls) -> SessionOut:
    return _out(links, sessions.request_budget(session_id, usd=body.usd, reason=body.reason, principal=principal))


@router.post("/{session_id}/budget-requests/approve",
             summary="Approve the pending budget request, named by its request_id or usd (409 if it changed)",
             responses=COMMAND)
def approve_budget(session_id: str, principal: Authorized, sessions: SessionsDep,
                   links: LearnerUrls, body: BudgetDecision | None = None) -> SessionOut:
    body = body or BudgetDecision()
    return _out(links, sessions.decide_budget(session_id, approve=True, principal=principal,
                                              request_id=body.request_id, usd=body.usd))


@router.post("/{session_id}/budget-requests/deny", summary="Refuse the pending budget request", responses=COMMAND)
def deny_budget(session_id: str, principal: Authorized, sessions: SessionsDep,
                links: LearnerUrls, body: BudgetDecision | None = None) -> SessionOut:
    body = body or BudgetDecision()
    return _out(links, sessions.decide_budget(session_id, approve=False, principal=principal,
                                              request_id=body.request_id, usd=body.usd))


@router.post("/{session_id}/reset", summary="Make the sandbox again from scratch", responses=COMMAND)
def reset(session_id: str, principal: Authorized, sessions: SessionsDep, links: LearnerUrls) -> SessionOut:
    return _out(links, sessions.reset(session_id, principal=principal))


@router.delete("/{session_id}", status_code=202, summary="Stop: terminating, then terminated",
               responses=COMMAND)
def stop(session_id: str, principal: Authorized, sessions: SessionsDep, links: LearnerUrls) -> SessionOut:
    row = sessions.stop(session_id, principal=principal)
    tasks.REMOVALS.submit(f"removing the sandbox of {session_id}", sessions.finish_stop, session_id,
                          actor=principal.name)
    return _out(links, row)


def _out(links: LearnerUrl, row: SandboxSession) -> SessionOut:
    return SessionOut.of(row, learner_url=links(row))
