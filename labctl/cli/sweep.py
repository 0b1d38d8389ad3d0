"""``labctl sweep``: run the meter, timers and budget policy outside the API process (or once, by hand)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from labctl.cli.output import Format, OutputOpt, render, stderr
from labctl.settings import Settings


def sweep(
    once: Annotated[bool, typer.Option("--once", help="One pass, print what it did, exit.")] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Meter every live session and act on its timers and budget (leader-elected: safe beside `labctl serve`)."""
    from labctl import runtime as runtime_mod  # heavy (SDKs, SQLAlchemy): only for this command

    settings = Settings()
    rt = runtime_mod.build(settings)
    rt.store.migrate()
    if once:
        report = rt.sweeper.run_once()
        rt.close()
        render({"metered": report.metered, "actions": [f"{s}: {k} ({r})" for s, k, r in report.actions] or None,
                "errors": [f"{s}: {e}" for s, e in report.errors] or None}, output)
        if report.errors:
            raise typer.Exit(1)
        return
    loops = runtime_mod.Loops(rt, jobs=rt.jobs())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    loops.start()
    stderr.print(f"sweeping every {settings.sweep_interval_s:g}s; Ctrl-C stops")
    stop.wait()
    loops.stop()
    rt.close()
