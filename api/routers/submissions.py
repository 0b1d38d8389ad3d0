"""Submissions: ``POST /v1/sessions/{id}/submissions`` (202, graded in the background) and
``GET /v1/submissions/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from api import responses
from api.deps import Authorized, SubmissionsDep
from api.schemas import SubmissionOut
from labctl.service import background as tasks

router = APIRouter(tags=["submissions"], responses=responses.TOKEN)


@router.post("/v1/sessions/{session_id}/submissions", status_code=202,
             summary="Submit: freeze, snapshot and grade (poll the submission for the grade)",
             responses=responses.problems(404, 409))
def submit(session_id: str, principal: Authorized, service: SubmissionsDep,
           background: BackgroundTasks) -> SubmissionOut:
    sub = service.submit(session_id, principal=principal)
    # Graded on the grading workers; the answer's task awaits it on the event loop, holding no request thread.
    background.add_task(tasks.wait, service.grade_later(sub.id))
    return SubmissionOut.of(sub)


@router.get("/v1/submissions/{submission_id}", summary="A submission: its state, grade, checks and receipt",
            responses=responses.problems(404))
def get_submission(submission_id: str, principal: Authorized, service: SubmissionsDep) -> SubmissionOut:
    return SubmissionOut.of(service.get(submission_id, principal=principal))


@router.get("/v1/sessions/{session_id}/submissions", summary="A session's submissions, oldest first",
            responses=responses.problems(404))
def list_submissions(session_id: str, principal: Authorized, service: SubmissionsDep) -> list[SubmissionOut]:
    return [SubmissionOut.of(s) for s in service.list_for(session_id, principal=principal)]
