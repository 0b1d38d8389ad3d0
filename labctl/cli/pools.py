"""``labctl pool``: a lab's warm pool for instructors: sandboxes wanted now, warm, being made, and their idle cost."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.client import call
from labctl.cli.output import Format, OutputOpt, render

app = typer.Typer(help="Warm pools: sandboxes kept ready for a lab's starts to claim.", no_args_is_help=True)


@app.command()
def show(lab_id: Annotated[str, typer.Argument(help="The lab id.")], output: OutputOpt = Format.table) -> None:
    """The lab's pool now and what its unclaimed sandboxes have cost the course (never charged to a learner)."""
    view = call("GET", f"/v1/labs/{lab_id}/pool")
    if output is Format.table:
        view = {**view, "idle_cost_usd": f"${view['idle_cost_usd']:.4f}",
                "sandbox_hours": f"{view['sandbox_hours']:.2f}"}
    render(view, output, title=f"pool of {lab_id}")
