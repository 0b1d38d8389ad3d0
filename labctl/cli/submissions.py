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
        sub = _watch(sub)
    _show(sub, output)


def _watch(sub: dict[str, Any]) -> dict[str, Any]:
    """Poll until graded, printing the replay's progress to stderr when it moves (a replay may take minutes, so
    the wait is measured from the last progress seen)."""
    deadline = time.monotonic() + 300
    seen: dict[str, Any] | None = None
    while sub["state"] == "grading" and time.monotonic() < deadline:
        time.sleep(1)
        sub = call("GET", f"/v1/submissions/{sub['id']}")
        if sub.get("progress") and sub["progress"] != seen:
            seen = sub["progress"]
            stderr.print(_progress_line(seen))
            deadline = time.monotonic() + 300
    return sub


def _progress_line(progress: dict[str, Any]) -> str:
    return (f"{progress['phase']}: simulated {progress['simulated_at']}, {progress['done_s']:.0f} of "
            f"{progress['total_s']:.0f} s")


@app.command()
def show(submission_id: Annotated[str, typer.Argument(help="The submission id.")],
         watch: Annotated[bool, typer.Option("--watch", help="Follow a grading submission until it is graded.")]
         = False,
         output: OutputOpt = Format.table) -> None:
    """A submission: grade (or the replay's progress while grading), every check with its feedback, the receipt."""
    sub = call("GET", f"/v1/submissions/{submission_id}")
    _show(_watch(sub) if watch else sub, output)


def _show(sub: dict[str, Any], output: Format) -> None:
    if output is not Format.table:
        render(sub, output)
    else:
        render({k: sub[k] for k in ("id", "session_id", "attempt", "state", "score", "max_score", "error")}, output,
               title="submission")
        if sub.get("progress"):
            stdout.print(_progress_line(sub["progress"]), highlight=False)
        render([{"check": c["id"], "status": c["status"], "score": f"{c['score']:g} / {c['max_score']:g}",
                 "feedback": c["feedback"]} for c in sub["checks"]], output, title="checks")
        if sub.get("receipt"):
            stdout.print(sub["receipt"].get("text", ""), highlight=False)
    if sub["state"] == "error":
        fail(f"grading failed: {sub.get('error')}")
