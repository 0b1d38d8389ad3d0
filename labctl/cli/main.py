"""The ``labctl`` entry point: mounts the command groups and turns known errors into a message and exit 1."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from labctl.cli import (
    cluster,
    clusters,
    costs,
    labs,
    pools,
    prices,
    serve,
    sessions,
    submissions,
    sweep,
    tokens,
    webhooks,
)
from labctl.cli.output import stderr
from labctl.grading.jail import JailUnavailable
from labctl.localcluster.build import BuildError
from labctl.localcluster.cluster import ClusterError
from labctl.localcluster.fleet import FleetError

app = typer.Typer(name="labctl", help="Hands-on FinOps lab controller.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(cluster.app, name="cluster")
app.add_typer(labs.app, name="labs")
app.add_typer(pools.app, name="pool")
app.add_typer(sessions.app, name="sessions")
app.add_typer(tokens.app, name="tokens")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(prices.app, name="prices")
app.add_typer(submissions.app, name="submissions")
app.command()(submissions.submit)
app.command()(serve.serve)
app.command()(sweep.sweep)
app.command()(costs.costs)
app.command()(clusters.clusters)

KNOWN_ERRORS = (BuildError, ClusterError, FleetError, JailUnavailable)


def main() -> None:
    try:
        app()
    except KNOWN_ERRORS as exc:
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except ValidationError as exc:  # settings from the environment
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        stderr.print(f"[bold red]error:[/] invalid configuration: {problems}", highlight=False)
        sys.exit(1)
