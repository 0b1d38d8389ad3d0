"""A lab's warm pool, for instructors: ``GET /v1/labs/{lab_id}/pool`` (what it holds and what it cost the course)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api import responses
from api.deps import Authorized, runtime_of
from api.schemas import PoolOut
from labctl.runtime import Runtime

router = APIRouter(prefix="/v1/labs", tags=["labs"], responses=responses.TOKEN)


@router.get("/{lab_id}/pool", summary="The lab's warm pool: sandboxes wanted, warm and being made, its idle cost",
            responses=responses.problems(404))
def pool(lab_id: str, _: Authorized, runtime: Annotated[Runtime, Depends(runtime_of)]) -> PoolOut:
    return PoolOut.of(runtime.pools.view(lab_id))
