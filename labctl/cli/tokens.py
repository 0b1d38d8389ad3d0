"""``labctl tokens``: API tokens for the course site, exam platforms, learners and instructors: create, list, revoke.

A token is printed once, at creation (labctl keeps only its hash). Each expires (learner tokens after 12 hours,
others after 90 days, unless the server's settings say otherwise); ``revoke`` ends one at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.client import call
from labctl.cli.output import Format, OutputOpt, render, stderr

app = typer.Typer(help="API tokens (stored hashed; shown once; they expire).", no_args_is_help=True)

COLUMNS = ["id", "name", "role", "learner_id", "created_at", "expires_at", "last_used_at", "revoked_at"]


@app.command()
def create(
    role: Annotated[str, typer.Option("--role", help="instructor, platform, exam or learner.")],
    name: Annotated[str, typer.Option("--name", help="Who or what uses it, e.g. 'course-site'.")],
    learner: Annotated[str | None, typer.Option("--learner", help="The learner a learner token acts for.")] = None,
    ttl: Annotated[int | None, typer.Option("--ttl", help="Lifetime in seconds (at most the role's setting).")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create a token and print it once."""
    body = call("POST", "/v1/tokens", json={"role": role, "name": name, "learner_id": learner, "ttl_s": ttl})
    render(body, output)
    if output is Format.table:
        stderr.print("store it now: labctl keeps only its hash")


@app.command("list")
def list_(output: OutputOpt = Format.table) -> None:
    """Every token: role, expiry, last use (to the minute), revocation; never the token itself."""
    render(call("GET", "/v1/tokens"), output, columns=COLUMNS)


@app.command()
def revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `labctl tokens list`).")],
    output: OutputOpt = Format.table,
) -> None:
    """Revoke a token now: its next request is refused (401)."""
    render(call("DELETE", f"/v1/tokens/{token_id}"), output)
