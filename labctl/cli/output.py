"""The one output sink of the CLI: commands return data, this renders it as a table, JSON or YAML.

Results go to stdout; errors go to stderr through :func:`fail`, with a non-zero exit code.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.table import Table

# A terminal sets its own width; piped output (files, CI logs) gets room for the tables instead of 80 columns.
stdout = Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160")))
stderr = Console(stderr=True, soft_wrap=True)


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)]


def render(data: Any, fmt: Format, *, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Print ``data`` (a mapping or a list of mappings) in ``fmt``."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
    elif isinstance(data, Mapping):
        table = Table(title=title, show_header=False, box=None)
        for key, value in data.items():
            table.add_row(f"[bold]{key}[/]", _cell(value))
        stdout.print(table)
    else:
        rows = list(data)
        cols = list(columns or (rows[0].keys() if rows else []))
        table = Table(title=title)
        for col in cols:
            table.add_column(col)
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in cols))
        stdout.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def fail(message: str, code: int = 1) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
