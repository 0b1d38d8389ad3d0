"""``labctl clusters``: the Kubernetes clusters sandboxes are placed on, with their free capacity and sessions."""

from __future__ import annotations

from typing import Any

from labctl.cli.client import call
from labctl.cli.output import Format, OutputOpt, render

COLUMNS = ["name", "reachable", "nodes", "cpu_free", "memory_free", "gpus_free", "mig_free", "sessions", "starting"]
GIB = 2**30


def clusters(output: OutputOpt = Format.table) -> None:
    """Every cluster: whether it answers, its schedulable nodes' free capacity (of allocatable), its live sessions."""
    rows = call("GET", "/v1/clusters")
    if output is Format.table:
        rows = [_row(c) for c in rows]
    render(rows, output, columns=COLUMNS if output is Format.table else None, title="clusters")


def _row(cluster: dict[str, Any]) -> dict[str, Any]:
    free, allocatable = cluster["free"], cluster["allocatable"]

    def of(resource: str, scale: float = 1, unit: str = "") -> str:
        return f"{free.get(resource, 0) / scale:g}{unit} of {allocatable.get(resource, 0) / scale:g}{unit}"

    mig = ", ".join(f"{name.removeprefix('nvidia.com/mig-')}: {free[name]:g}" for name in sorted(free)
                    if name.startswith("nvidia.com/mig-"))
    return {"name": cluster["name"],
            "reachable": "yes" if cluster["reachable"] else f"no: {cluster['error']}",
            "nodes": f"{cluster['schedulable_nodes']} of {cluster['nodes']}",
            "cpu_free": of("cpu"), "memory_free": of("memory", GIB, "Gi"), "gpus_free": of("nvidia.com/gpu"),
            "mig_free": mig or "-", "sessions": cluster["sessions"], "starting": cluster["starting"]}
