"""``labctl tokens``: API tokens for the course site, exam platforms, learners and instructors."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.client import call
from labctl.cli.output import Format, OutputOpt, render, stderr

app = typer.Typer(help="API tokens (stored hashed; shown once).", no_args_is_help=True)


@app.command()
def create(
    role: Annotated[str, typer.Option("--role", help="instructor, platform, exam or learner.")],
    name: Annotated[str, typer.Option("--name", help="Who or what uses it, e.g. 'course-site'.")],
    learner: Annotated[str | None, typer.Option("--learner", help="The learner a learner token acts for.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create a token and print it once."""
    body = call("POST", "/v1/tokens", json={"role": role, "name": name, "learner_id": learner})
    render(body, output)
    if output is Format.table:
        stderr.print("store it now: labctl keeps only its hash")
