"""``labctl webhooks``: the exam platform's receivers (endpoints) and the delivery log, through the API.

``endpoints add`` and ``endpoints rotate`` print the ``whsec_`` secret; it is shown this once, so hand it to the
receiver straight away. ``deliveries redeliver`` sends a message again with the same ``webhook-id``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.client import call
from labctl.cli.output import Format, OutputOpt, render, stderr

app = typer.Typer(help="Signed webhooks to the exam platform: endpoints and deliveries.", no_args_is_help=True)
endpoints = typer.Typer(help="Receivers: add, list, rotate, disable, enable.", no_args_is_help=True)
deliveries = typer.Typer(help="The delivery log: list, redeliver.", no_args_is_help=True)
app.add_typer(endpoints, name="endpoints")
app.add_typer(deliveries, name="deliveries")

EndpointId = Annotated[str, typer.Argument(help="The endpoint id (see `labctl webhooks endpoints list`).")]
ENDPOINT_COLUMNS = ["id", "url", "events", "disabled_at", "consecutive_failures", "description"]
DELIVERY_COLUMNS = ["id", "event_type", "event_id", "endpoint_id", "session_id", "state", "attempts",
                    "next_attempt_at", "last_status", "last_error"]


def _show_secret(row: dict[str, object], output: Format, what: str) -> None:
    render(row, output, title=what)
    if output is Format.table:
        stderr.print("the secret is shown only now: configure the receiver with it "
                     "(Webhook(secret).verify(body, headers) with the standardwebhooks package)")


def _events_cell(row: dict[str, object]) -> dict[str, object]:
    events = row.get("events")
    return {**row, "events": ", ".join(events) if isinstance(events, list) else events}


@endpoints.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where to POST events (http or https).")],
    event: Annotated[list[str] | None, typer.Option("--event", "-e",
                                                    help="An event type to send (repeat); default: all ('*').")] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="What this receiver is.")] = "",
    output: OutputOpt = Format.table,
) -> None:
    """Subscribe a receiver; prints its signing secret once."""
    events: list[str] | str = event if event else "*"
    row = call("POST", "/v1/webhooks/endpoints", json={"url": url, "events": events, "description": description})
    _show_secret(row, output, f"endpoint {row['id']}")


@endpoints.command("list")
def list_endpoints(output: OutputOpt = Format.table) -> None:
    """List receivers (secrets are never listed)."""
    rows = call("GET", "/v1/webhooks/endpoints")
    if output is Format.table:
        render([_events_cell(r) for r in rows], output, columns=ENDPOINT_COLUMNS, title="webhook endpoints")
    else:
        render(rows, output)


@endpoints.command()
def rotate(endpoint_id: EndpointId, output: OutputOpt = Format.table) -> None:
    """New secret for a receiver; the old one keeps signing (a second signature) for 24 hours."""
    row = call("POST", f"/v1/webhooks/endpoints/{endpoint_id}/rotate")
    _show_secret(row, output, f"endpoint {endpoint_id}")


@endpoints.command()
def disable(endpoint_id: EndpointId, output: OutputOpt = Format.table) -> None:
    """Stop sending to a receiver; its undelivered messages wait until it is enabled."""
    render(call("POST", f"/v1/webhooks/endpoints/{endpoint_id}/disable"), output, title=f"endpoint {endpoint_id}")


@endpoints.command()
def enable(endpoint_id: EndpointId, output: OutputOpt = Format.table) -> None:
    """Send to a receiver again, starting with the messages that waited."""
    render(call("POST", f"/v1/webhooks/endpoints/{endpoint_id}/enable"), output, title=f"endpoint {endpoint_id}")


@deliveries.command("list")
def list_deliveries(
    output: OutputOpt = Format.table,
    state: Annotated[str | None, typer.Option("--state", help="pending, failed, delivered or dead.")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")] = 100,
) -> None:
    """The delivery log, newest first."""
    rows = call("GET", "/v1/webhooks/deliveries", params={"state": state, "endpoint_id": endpoint, "limit": limit})
    render(rows, output, columns=DELIVERY_COLUMNS if output is Format.table else None, title="deliveries")


@deliveries.command()
def redeliver(delivery_id: Annotated[int, typer.Argument(help="The delivery id (see `deliveries list`).")],
              output: OutputOpt = Format.table) -> None:
    """Send a delivery again now, with a fresh retry schedule and the same webhook-id."""
    row = call("POST", f"/v1/webhooks/deliveries/{delivery_id}/redeliver")
    render(row, output, title=f"delivery {delivery_id}")
