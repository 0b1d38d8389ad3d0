"""The Kubernetes clusters sandboxes are placed on, for instructors: ``GET /v1/clusters`` (capacity and sessions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api import responses
from api.deps import Authorized, runtime_of
from api.schemas import ClusterOut
from labctl.runtime import Runtime

router = APIRouter(prefix="/v1/clusters", tags=["clusters"], responses=responses.TOKEN)


@router.get("", summary="Every cluster: reachable or not, its free and allocatable capacity, its live sessions")
def clusters(_: Authorized, runtime: Annotated[Runtime, Depends(runtime_of)]) -> list[ClusterOut]:
    return [ClusterOut.of(view) for view in runtime.placement.view()]
