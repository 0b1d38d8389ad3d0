"""``labctl labs``: the lab catalog for lab authors and instructors: list, show, validate, and the JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.cli.output import Format, OutputOpt, fail, render, stderr
from labctl.settings import Settings

app = typer.Typer(help="The lab catalog: labs/<id>/lab.yaml with starter templates in manifests/.",
                  no_args_is_help=True)


def _catalog(settings: Settings) -> dict[str, Lab]:
    try:
        return loader.load_catalog(settings.labs_dir, settings.manifests_dir, fleet_file=settings.fleet_file)
    except loader.CatalogError as exc:
        _print_problems(exc.problems)
        fail(f"the lab catalog is invalid ({_count(len(exc.problems), 'problem')}); "
             "`labctl labs validate` lists them")


@app.command("list")
def list_labs(output: OutputOpt = Format.table) -> None:
    """List the labs of the catalog."""
    labs = _catalog(Settings())
    rows = [{"id": lab.id, "title": lab.title, "provider": lab.provider, "budget_usd": str(lab.budget.usd),
             "time_limit": lab.time.limit, "max_extension": lab.time.max_extension, "off_hours": lab.time.off_hours,
             "graders": len(lab.graders), "attempts": lab.attempts} for lab in labs.values()]
    render(rows, output, columns=None if output is not Format.table else
           ["id", "title", "provider", "budget_usd", "time_limit", "graders", "attempts"], title="labs")


@app.command()
def show(lab_id: Annotated[str, typer.Argument(help="The lab id (its directory name).")],
         output: OutputOpt = Format.table) -> None:
    """Show one lab: budget, time, quota, labels, starter templates and graders."""
    labs = _catalog(Settings())
    lab = labs.get(lab_id)
    if lab is None:
        fail(escape(f"no lab {lab_id!r}; labs: {', '.join(labs) or '(none)'}"))
    if output is not Format.table:
        render(lab.model_dump(mode="json"), output)
        return
    render(_summary(lab), output, title=f"lab {lab.id}")
    render([{"id": g.id, "script": g.script, "weight": g.weight,
             "params": ", ".join(sorted(g.params)) or None} for g in lab.graders],
           output, columns=["id", "script", "weight", "params"], title="graders")


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="lab.yaml files, lab directories or a labs directory; default: the whole catalog.")] = None,
) -> None:
    """Validate lab definitions and render their templates; every problem names its file, line and field."""
    settings = Settings()
    problems: list[loader.Problem] = []
    valid = 0
    if not paths:
        try:
            valid = len(loader.load_catalog(settings.labs_dir, settings.manifests_dir,
                                            fleet_file=settings.fleet_file))
        except loader.CatalogError as exc:
            problems = exc.problems
    else:
        for file in _lab_files(paths):
            try:
                loader.load_checked_lab(file, manifests_dir=settings.manifests_dir, fleet_file=settings.fleet_file)
                valid += 1
            except loader.CatalogError as exc:
                problems.extend(exc.problems)
    if problems:
        _print_problems(problems)
        fail(f"{_count(len(problems), 'problem')} in {_count(len({p.file for p in problems}), 'file')}")
    typer.echo(f"{_count(valid, 'lab')} valid")


@app.command()
def schema(
    write: Annotated[bool, typer.Option("--write", help="Write labs/lab.schema.json instead of printing.")] = False,
) -> None:
    """Print the JSON Schema of lab.yaml (the one each lab.yaml names for editors)."""
    if write:
        target = Settings().labs_dir / loader.SCHEMA_FILE
        loader.write_schema(target)
        stderr.print(escape(f"wrote {target}"), highlight=False)
        return
    typer.echo(loader.schema_text(), nl=False)


def _lab_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir() and (path / loader.LAB_FILE).is_file():
            files.append(path / loader.LAB_FILE)
        elif path.is_dir():
            files.extend(loader.lab_files(path))
        else:
            files.append(path)  # a missing file is reported by the loader
    return files


def _summary(lab: Lab) -> dict[str, Any]:
    thresholds = ", ".join(f"{t.percent}% {t.action}" for t in lab.budget.thresholds)
    return {
        "title": lab.title,
        "summary": lab.summary,
        "provider": lab.provider,
        "pod security": lab.pod_security,
        "budget": f"${lab.budget.usd} ({thresholds})",
        "time": f"{lab.time.limit} (+{lab.time.max_extension} max), warn {lab.time.warn_before} before",
        "idle timeout": lab.time.idle_timeout,
        "working hours": lab.time.off_hours,
        "quota": lab.quota,
        "cost labels": lab.cost_labels,
        "required labels": ", ".join(lab.required_labels) or None,
        "node pools": ", ".join(lab.node_pools) or None,
        "starter": ", ".join(lab.starter or [s.name for s in lab.cloud_starter.resources] if lab.cloud_starter
                             else lab.starter) or None,
        "attempts": lab.attempts,
        "max score": lab.max_score,
    }


def _print_problems(problems: list[loader.Problem]) -> None:
    for problem in problems:
        stderr.print(escape(str(problem)), highlight=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
