"""``labctl prices``: the price sheet the cost meter uses (``labs/prices.yaml``): show it, validate it.

The sheet is data, dated per row; instructors edit it when prices move and run ``labctl prices validate`` before the
meter reads it. Every problem names the file, the line and the field, on stderr, with exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from labctl.cli.output import Format, OutputOpt, fail, render, stderr
from labctl.cost.prices import PROVIDERS, InstancePrice, PriceSheet, PriceSheetError, default_sheet_path, load_sheet
from labctl.settings import Settings

app = typer.Typer(help="The price sheet of the cost meter: labs/prices.yaml.", no_args_is_help=True)


def _sheet_path() -> Path:
    return default_sheet_path(Settings().labs_dir)


def _load(path: Path) -> PriceSheet:
    try:
        return load_sheet(path)
    except PriceSheetError as exc:
        for problem in exc.problems:
            stderr.print(escape(str(problem)), highlight=False)
        count = len(exc.problems)
        fail(escape(f"{count} problem{'s' if count != 1 else ''} in {exc.problems[0].file}"))


@app.command()
def show(
    provider: Annotated[str | None, typer.Option(
        "--provider", help=f"Only this provider ({', '.join(PROVIDERS)}).")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Show the price sheet: instance prices (on-demand and spot), attached GPUs, cloud volume types, fallback and
    other rates."""
    if provider is not None and provider.lower() not in PROVIDERS:
        fail(escape(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}"))
    wanted = provider.lower() if provider else None
    sheet = _load(_sheet_path())
    instances = [row for row in sheet.instances if wanted in (None, row.provider)]
    accelerators = [row for row in sheet.accelerators if wanted in (None, row.provider)]
    disks = [row for row in sheet.disks if wanted in (None, row.provider)]
    if output is not Format.table:
        data = sheet.model_dump(mode="json")
        data["instances"] = [row.model_dump(mode="json") for row in instances]
        data["accelerators"] = [row.model_dump(mode="json") for row in accelerators]
        data["disks"] = [row.model_dump(mode="json") for row in disks]
        render(data, output)
        return
    render([_instance_row(row) for row in instances], output, title="instances (USD per hour)",
           columns=["provider", "region", "instance_type", "vcpu", "memory_gib", "gpus", "gpu_product",
                    "on_demand", "spot", "spot_off", "as_of"])
    if accelerators:
        render([{"provider": a.provider, "region": a.region, "gpu_product": a.gpu_product,
                 "on_demand": str(a.on_demand_hourly_usd), "spot": str(a.spot_hourly_usd), "as_of": str(a.as_of)}
                for a in accelerators], output, title="attached GPUs (USD per GPU-hour)")
    if disks:
        render([{"provider": d.provider, "region": d.region, "volume_type": d.volume_type,
                 "per_gb_month": str(d.gb_month_usd), "as_of": str(d.as_of)}
                for d in disks], output, title="cloud volumes (USD per GB-month)")
    fallback = sheet.fallback
    render({
        "fallback per vCPU-hour": str(fallback.vcpu_hourly_usd),
        "fallback per GiB-hour": str(fallback.memory_gib_hourly_usd),
        "fallback per GPU-hour": str(fallback.gpu_hourly_usd),
        "fallback storage per GB-month": str(fallback.storage_gb_month_usd),
        "load balancer per hour": str(sheet.load_balancer_hourly_usd),
        "PVC storage per GB-month": str(sheet.storage_gb_month_usd),
        "MIG overrides": {product: ", ".join(f"{p}={s}" for p, s in shares.items())
                          for product, shares in sheet.mig.items()} or None,
    }, output, title="other rates")


@app.command()
def validate(
    path: Annotated[Path | None, typer.Argument(help="The price sheet; default: labs/prices.yaml.")] = None,
) -> None:
    """Validate a price sheet; every problem names its file, line and field."""
    target = path or _sheet_path()
    sheet = _load(target)
    typer.echo(f"{target}: valid ({_count(len(sheet.instances), 'instance type')}, "
               f"{_count(len(sheet.accelerators), 'attached-GPU price')}, "
               f"{_count(len(sheet.disks), 'volume type')})")


def _instance_row(row: InstancePrice) -> dict[str, Any]:
    off = (1 - row.spot_hourly_usd / row.on_demand_hourly_usd) * 100
    return {"provider": row.provider, "region": row.region, "instance_type": row.instance_type, "vcpu": row.vcpu,
            "memory_gib": str(row.memory_gib), "gpus": row.gpus, "gpu_product": row.gpu_product,
            "on_demand": str(row.on_demand_hourly_usd), "spot": str(row.spot_hourly_usd),
            "spot_off": f"{off:.0f} %", "as_of": str(row.as_of)}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
