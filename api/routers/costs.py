"""The instructor's cost report: ``GET /v1/costs?group_by=lab|learner``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api import responses
from api.deps import Authorized, StoreDep
from api.schemas import CostRowOut
from labctl.service import costs

router = APIRouter(prefix="/v1/costs", tags=["costs"], responses=responses.TOKEN)


@router.get("", summary="Spend, budget, spot share and idle share per lab or per learner")
def cost_report(_: Authorized, store: StoreDep,
                group_by: Annotated[Literal["lab", "learner"], Query()] = "lab") -> list[CostRowOut]:
    return [CostRowOut.of(r) for r in costs.report(store, group_by=group_by)]
