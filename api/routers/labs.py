"""The lab catalog: ``GET /v1/labs`` and ``GET /v1/labs/{lab_id}``."""

from __future__ import annotations

from fastapi import APIRouter

from api import responses
from api.deps import Authorized, SessionsDep
from api.schemas import LabOut

router = APIRouter(prefix="/v1/labs", tags=["labs"], responses=responses.TOKEN)


@router.get("", summary="List the labs")
def list_labs(_: Authorized, sessions: SessionsDep) -> list[LabOut]:
    return [LabOut.of(lab) for _, lab in sorted(sessions.catalog.items())]


@router.get("/{lab_id}", summary="One lab", responses=responses.problems(404))
def get_lab(lab_id: str, _: Authorized, sessions: SessionsDep) -> LabOut:
    return LabOut.of(sessions.lab(lab_id))
