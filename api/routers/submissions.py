"""Submissions: ``POST /v1/sessions/{id}/submissions`` (202, graded in the background) and
``GET /v1/submissions/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request

from api import responses
from api.deps import Authorized
from api.schemas import SubmissionOut
from labctl.service import background as tasks
from labctl.service.submissions import Submissions

router = APIRouter(tags=["submissions"], responses=responses.TOKEN)


def _service(request: Request) -> Submissions:
    service: Submissions = request.app.state.runtime.submissions
    return service


@router.post("/v1/sessions/{session_id}/submissions", status_code=202,
             summary="Submit: freeze, snapshot and grade (poll the submission for the grade)",
             responses=responses.problems(404, 409))
def submit(session_id: str, principal: Authorized, request: Request,
           background: BackgroundTasks) -> SubmissionOut:
    service = _service(request)
    sub = service.submit(session_id, principal=principal)
    background.add_task(tasks.run, f"grading {sub.id}", service.grade, sub.id)
    return SubmissionOut.of(sub)


@router.get("/v1/submissions/{submission_id}", summary="A submission: its state, grade, checks and receipt",
            responses=responses.problems(404))
def get_submission(submission_id: str, principal: Authorized, request: Request) -> SubmissionOut:
    return SubmissionOut.of(_service(request).get(submission_id, principal=principal))


@router.get("/v1/sessions/{session_id}/submissions", summary="A session's submissions, oldest first",
            responses=responses.problems(404))
def list_submissions(session_id: str, principal: Authorized, request: Request) -> list[SubmissionOut]:
    return [SubmissionOut.of(s) for s in _service(request).list_for(session_id, principal=principal)]
