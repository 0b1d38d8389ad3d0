"""``labctl costs``: what each lab or learner spent, against budget, with spot and idle shares."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.client import call
from labctl.cli.output import Format, OutputOpt, render


def costs(
    group_by: Annotated[str, typer.Option("--by", help="lab or learner.")] = "lab",
    output: OutputOpt = Format.table,
) -> None:
    """The cost report: spend, budget, burn rate, spot share of pod-hours, idle share of spend."""
    rows = call("GET", "/v1/costs", params={"group_by": group_by})
    if output is Format.table:
        rows = [{group_by: r["key"], "sessions": r["sessions"], "live": r["live"],
                 "spend": f"${r['spend_usd']:.2f}", "budget": f"${r['budget_usd']:.2f}",
                 "used": f"{r['budget_share']:.0%}", "burn $/h": f"{r['burn_rate_usd_per_hour']:.3f}",
                 "spot": f"{r['spot_share']:.0%}", "idle": f"{r['idle_share']:.0%}"} for r in rows]
    render(rows, output, title=f"costs by {group_by}")
