"""``labctl cluster``: the local Kubernetes control plane for development and tests."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from labctl.cli.output import Format, OutputOpt, fail, render, stderr
from labctl.localcluster import build as build_mod
from labctl.localcluster import cluster as cluster_mod
from labctl.localcluster import fleet as fleet_mod
from labctl.settings import LOCAL_CLUSTER_NAME, Settings

app = typer.Typer(help="The local control plane: real etcd, kube-apiserver, controller-manager and scheduler, "
                       "with kwok-simulated nodes from labs/fleet.yaml.", no_args_is_help=True)


NameOpt = Annotated[str, typer.Option("--name", help="Which local cluster (the tests keep their own: labctl-test).")]


def local_cluster(settings: Settings | None = None, name: str = LOCAL_CLUSTER_NAME) -> cluster_mod.LocalCluster:
    settings = settings or Settings()
    return cluster_mod.LocalCluster(workdir=settings.local_cluster_workdir, fleet_file=settings.fleet_file, name=name)


@app.command()
def build() -> None:
    """Build (or find in the cache) the Kubernetes, etcd and kwok binaries."""
    started = time.monotonic()
    tools = build_mod.build()
    stderr.print(f"binaries ready in {tools.root} ({time.monotonic() - started:.0f}s)")


@app.command()
def up(output: OutputOpt = Format.table, name: NameOpt = LOCAL_CLUSTER_NAME) -> None:
    """Start the local cluster, or reuse it when it is already healthy."""
    cluster = local_cluster(name=name)
    result = cluster.up()
    verb = "created" if result.created else "reused"
    render({"cluster": verb, "seconds": round(result.seconds, 1), "nodes": result.nodes,
            "kubeconfig": str(result.kubeconfig)}, output)


@app.command()
def down(name: NameOpt = LOCAL_CLUSTER_NAME) -> None:
    """Stop every process of the local cluster and remove its files."""
    local_cluster(name=name).down()
    stderr.print(f"local cluster {name} removed")


@app.command()
def status(output: OutputOpt = Format.table, name: NameOpt = LOCAL_CLUSTER_NAME) -> None:
    """Report the components and nodes of the local cluster (exit 1 when it is not healthy)."""
    st = local_cluster(name=name).status()
    if output is not Format.table:
        render(st.to_dict(), output)
    else:
        render({"healthy": st.healthy, "server": st.server, "version": st.version,
                "apiserver ready": st.apiserver_ready}, output, title="local cluster")
        render([c.__dict__ for c in st.components], output, columns=["name", "pid", "running"], title="components")
        if st.nodes:
            render([n.__dict__ for n in st.nodes], output,
                   columns=["name", "ready", "pool", "instance_type", "capacity_type", "extended"], title="nodes")
    if not st.healthy:
        raise typer.Exit(1)


@app.command()
def kubeconfig(name: NameOpt = LOCAL_CLUSTER_NAME) -> None:
    """Print the path of the local cluster's admin kubeconfig."""
    cluster = local_cluster(name=name)
    if not cluster.kubeconfig.exists():
        fail("the local cluster is not running: start it with `labctl cluster up`")
    typer.echo(str(cluster.kubeconfig))


@app.command()
def fleet(
    output: OutputOpt = Format.table,
    check: Annotated[bool, typer.Option("--check", help="Only validate the fleet file.")] = False,
) -> None:
    """Show (or validate) the simulated node fleet."""
    settings = Settings()
    parsed = fleet_mod.load(settings.fleet_file)
    if check:
        stderr.print(f"{settings.fleet_file}: {len(parsed.pools)} pools, valid")
        return
    rows = [{"pool": p.name, "count": p.count, "instance_type": p.instance_type, "capacity_type": p.capacity_type,
             "zone": p.zone, "gpu": (f"{p.gpu.count}x {p.gpu.product}" + (" (MIG)" if p.gpu.mig else ""))
             if p.gpu else None, "taints": ", ".join(f"{t.key}={t.value}:{t.effect}" for t in p.taints) or None}
            for p in parsed.pools]
    render(rows, output, title=str(settings.fleet_file))
