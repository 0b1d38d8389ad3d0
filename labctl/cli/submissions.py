"""``labctl submit`` and ``labctl submissions``: submit a session for grading and read the grade."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from labctl.cli.client import call
from labctl.cli.output import Format, OutputOpt, fail, render, stderr, stdout

app = typer.Typer(help="Submissions: grades, checks and cost receipts.", no_args_is_help=True)


def submit(
    session_id: Annotated[str, typer.Argument(help="The session to submit.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the grade.")] = True,
    output: OutputOpt = Format.table,
) -> None:
    """Freeze the session's sandbox, snapshot it and grade it."""
    sub = call("POST", f"/v1/sessions/{session_id}/submissions")
    stderr.print(f"submission {sub['id']} (attempt {sub['attempt']}) is grading")
    if wait:
        deadline = time.monotonic() + 300
        while sub["state"] == "grading" and time.monotonic() < deadline:
            time.sleep(1)
            sub = call("GET", f"/v1/submissions/{sub['id']}")
    _show(sub, output)


@app.command()
def show(submission_id: Annotated[str, typer.Argument(help="The submission id.")],
         output: OutputOpt = Format.table) -> None:
    """A submission: grade, every check with its feedback, and the cost receipt."""
    _show(call("GET", f"/v1/submissions/{submission_id}"), output)


def _show(sub: dict[str, Any], output: Format) -> None:
    if output is not Format.table:
        render(sub, output)
    else:
        render({k: sub[k] for k in ("id", "session_id", "attempt", "state", "score", "max_score", "error")}, output,
               title="submission")
        render([{"check": c["id"], "status": c["status"], "score": f"{c['score']:g} / {c['max_score']:g}",
                 "feedback": c["feedback"]} for c in sub["checks"]], output, title="checks")
        if sub.get("receipt"):
            stdout.print(sub["receipt"].get("text", ""), highlight=False)
    if sub["state"] == "error":
        fail(f"grading failed: {sub.get('error')}")
