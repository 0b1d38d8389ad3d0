"""``labctl sessions``: inspect, reset and stop learners' sandboxes through the API."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.client import call, call_pages
from labctl.cli.output import Format, OutputOpt, render, stderr

app = typer.Typer(help="Learners' sandboxes: list, show, metrics, kubeconfig, extend, suspend, resume, reset, delete, "
                       "budget, grant.", no_args_is_help=True)
budget = typer.Typer(help="A learner's request for more budget: approve or deny it.", no_args_is_help=True)
app.add_typer(budget, name="budget")

SessionId = Annotated[str, typer.Argument(help="The session id (see `labctl sessions list`).")]
COLUMNS = ["id", "lab_id", "learner_id", "state", "expires_at", "namespace", "cluster"]


@app.command("list")
def list_sessions(
    output: OutputOpt = Format.table,
    lab: Annotated[str | None, typer.Option("--lab", help="Only this lab.")] = None,
    learner: Annotated[str | None, typer.Option("--learner", help="Only this learner.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="Only sessions in this state.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the newest N (default: all).")] = None,
) -> None:
    """List sessions, newest first (every page, or the newest --limit)."""
    rows = call_pages("/v1/sessions", params={"lab_id": lab, "learner_id": learner, "state": state}, limit=limit)
    render(rows, output, columns=COLUMNS if output is Format.table else None, title="sessions")


@app.command()
def show(session_id: SessionId, output: OutputOpt = Format.table,
         events: Annotated[bool, typer.Option("--events", help="Also print the timeline.")] = False) -> None:
    """One session (and its timeline with --events)."""
    row = call("GET", f"/v1/sessions/{session_id}")
    if events:
        row["events"] = call("GET", f"/v1/sessions/{session_id}/events")
    if output is Format.table:
        timeline = row.pop("events", None)
        render(row, output, title=f"session {session_id}")
        if timeline is not None:
            render([{"at": e["at"], "kind": e["kind"], "actor": e["actor"], "detail": e["detail"]}
                    for e in timeline], output, title="events")
    else:
        render(row, output)


@app.command()
def metrics(session_id: SessionId, output: OutputOpt = Format.table) -> None:
    """What the sandbox's pods use now (CPU, memory, GPU in DCGM terms) and what its workloads served."""
    data = call("GET", f"/v1/sessions/{session_id}/metrics")
    if output is not Format.table:
        render(data, output)
        return
    render([{"pod": p["name"], "workload": p["workload"], "phase": p["phase"],
             "cpu": _figure(p["cpu_cores"], 3), "memory_mib": _figure(_mib(p["memory_bytes"]), 0),
             "gpu_engine_active": _figure(p["DCGM_FI_PROF_GR_ENGINE_ACTIVE"], 3),
             "gpu_fb_used_mib": _figure(p["DCGM_FI_DEV_FB_USED"], 0), "status": p["status"] or "-"}
            for p in data["pods"]], output, title=f"pods of {session_id} ({data['usage_source']})")
    render([{"workload": w["workload"], "offered": _figure(w["requests_offered"], 0),
             "served": _figure(w["requests_served"], 0), "dropped": _figure(w["requests_dropped"], 0),
             "served_share": _figure(w["served_share"], 4)} for w in data["workloads"]], output, title="service")


def _mib(value: float | None) -> float | None:
    return None if value is None else value / 2**20


def _figure(value: float | None, places: int) -> str:
    return "-" if value is None else f"{value:.{places}f}"


@app.command()
def kubeconfig(session_id: SessionId) -> None:
    """Print the learner's kubeconfig (YAML) for a Kubernetes session."""
    typer.echo(call("GET", f"/v1/sessions/{session_id}/kubeconfig", raw=True), nl=False)


@app.command()
def extend(session_id: SessionId,
           minutes: Annotated[int, typer.Option("--minutes", "-m", min=1, help="How much more time.")] = 30,
           output: OutputOpt = Format.table) -> None:
    """More time, up to the lab's deadline."""
    row = call("POST", f"/v1/sessions/{session_id}/extend", json={"seconds": minutes * 60})
    render({k: row[k] for k in ("id", "state", "expires_at", "deadline_at")}, output)


@app.command()
def suspend(session_id: SessionId, output: OutputOpt = Format.table) -> None:
    """Scale the sandbox to zero, keeping the learner's work."""
    row = call("POST", f"/v1/sessions/{session_id}/suspend")
    render({k: row[k] for k in ("id", "state", "suspend_reason")}, output)


@app.command()
def resume(session_id: SessionId, output: OutputOpt = Format.table) -> None:
    """Restore exactly what suspend stopped."""
    row = call("POST", f"/v1/sessions/{session_id}/resume")
    render({k: row[k] for k in ("id", "state")}, output)


RequestOpt = Annotated[str | None, typer.Option("--request", help="The request's id (budget_request_id).")]
UsdOpt = Annotated[float | None, typer.Option("--usd", help="The request's amount, as you saw it.")]


def _decision(request: str | None, usd: float | None) -> dict[str, object]:
    return {k: v for k, v in (("request_id", request), ("usd", usd)) if v is not None}


@budget.command("approve")
def budget_approve(session_id: SessionId, request: RequestOpt = None, usd: UsdOpt = None,
                   output: OutputOpt = Format.table) -> None:
    """Approve the pending request you saw (name it by --request or --usd): the budget grows by its amount, and a
    budget suspension lifts once spending is below the suspend level. A request changed since is refused."""
    row = call("POST", f"/v1/sessions/{session_id}/budget-requests/approve", json=_decision(request, usd))
    render({"id": row["id"], "state": row["state"], "budget_usd": row["budget_usd"]}, output)


@budget.command("deny")
def budget_deny(session_id: SessionId, request: RequestOpt = None, usd: UsdOpt = None,
                output: OutputOpt = Format.table) -> None:
    """Refuse the pending request (optionally named, as for approve)."""
    row = call("POST", f"/v1/sessions/{session_id}/budget-requests/deny", json=_decision(request, usd))
    render({"id": row["id"], "state": row["state"], "budget_usd": row["budget_usd"]}, output)


@app.command()
def grant(
    lab: Annotated[str, typer.Option("--lab", help="The lab.")],
    learner: Annotated[str, typer.Option("--learner", help="The learner.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the grant).")],
    attempts: Annotated[int, typer.Option("--attempts", min=0, help="More submissions.")] = 0,
    usd: Annotated[float, typer.Option("--usd", min=0, help="More money, in US dollars.")] = 0.0,
    output: OutputOpt = Format.table,
) -> None:
    """Give a learner more attempts or money in a lab, over all its sessions (the live one gets it at once)."""
    row = call("POST", "/v1/sessions/grants", json={"lab_id": lab, "learner_id": learner, "attempts": attempts,
                                                    "usd": usd, "reason": reason})
    render(row, output, title=f"{learner} in {lab}")


@app.command()
def reset(session_id: SessionId, output: OutputOpt = Format.table) -> None:
    """Remove the sandbox and make it again from scratch."""
    render(call("POST", f"/v1/sessions/{session_id}/reset"), output)


@app.command()
def delete(session_id: SessionId, output: OutputOpt = Format.table) -> None:
    """Stop the session: its sandbox is removed (terminating, then terminated)."""
    row = call("DELETE", f"/v1/sessions/{session_id}")
    render(row, output)
    stderr.print(f"session {session_id} is {row['state']}; `labctl sessions show {session_id}` follows it")
