"""``labctl serve``: run the API service with uvicorn.

It prints the admin token only when it has just generated it (development, first run); a token from
``LABCTL_ADMIN_TOKEN`` or kept from an earlier run is never printed (the start-up line says where it comes from), so
a token the operator set never lands in a terminal scroll-back or a process log.

``--local-cluster`` and ``--local-aws`` bring up the local stand-ins first (the kwok control plane, moto's server)
and take down on exit what this command started: ``make run`` uses both.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import SecretStr

from labctl.cli.output import fail, stderr
from labctl.settings import Settings


@dataclass(frozen=True)
class AdminToken:
    token: str
    origin: str  # where it comes from, for the start-up line
    generated: bool  # made by this run: the only case in which it is printed


def admin_token(settings: Settings) -> AdminToken:
    """The admin token: ``LABCTL_ADMIN_TOKEN``, else (development only) one kept in the data directory."""
    if settings.admin_token is not None:
        return AdminToken(settings.admin_token.get_secret_value(), "from LABCTL_ADMIN_TOKEN", generated=False)
    path = settings.data_dir / "admin-token"
    if path.exists():
        return AdminToken(path.read_text().strip(), f"kept in {path}", generated=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    _write_private(path, token + "\n")
    return AdminToken(token, f"generated, kept in {path}", generated=True)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default LABCTL_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default LABCTL_PORT, 8080).")] = None,
    local_cluster: Annotated[bool, typer.Option(
        "--local-cluster", help="Bring the local control plane up first (reusing a healthy one); on exit, take it "
                                "down again if this command started it.")] = False,
    local_aws: Annotated[bool, typer.Option(
        "--local-aws", help="When LABCTL_PROVIDERS names aws and LABCTL_AWS_ENDPOINT_URL is unset, start moto's "
                            "server on loopback for the aws labs, point labctl at it, and stop it on exit.")] = False,
) -> None:
    """Run the labctl API service."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    with contextlib.ExitStack() as stack:
        if local_aws and "aws" in settings.providers and settings.aws_endpoint_url is None:
            settings = stack.enter_context(_local_aws(settings))
        if local_cluster:
            settings = stack.enter_context(_local_cluster(settings))
        _serve(settings)


@contextlib.contextmanager
def _local_aws(settings: Settings) -> Iterator[Settings]:
    """moto on loopback for the aws labs; labctl's principal uses moto's test keys against it (never real ones)."""
    from labctl.localcluster import moto

    stderr.print("starting a local AWS stand-in (moto) for the aws labs ...")
    stack = contextlib.ExitStack()
    stack.callback(stderr.print, "stopped the local AWS stand-in")  # runs last: after moto stopped
    try:
        url = stack.enter_context(moto.moto_server())
    except RuntimeError as exc:
        fail(f"the local AWS stand-in did not start: {exc}")
    with stack:
        os.environ.update(moto.TEST_KEYS)  # boto3's default chain, in this process only
        os.environ.pop("AWS_PROFILE", None)
        stderr.print(f"moto listening on {url} (LABCTL_AWS_ENDPOINT_URL); it stops when labctl does")
        yield settings.model_copy(update={"aws_endpoint_url": url, "aws_profile": None})


@contextlib.contextmanager
def _local_cluster(settings: Settings) -> Iterator[Settings]:
    from labctl.cli.cluster import local_cluster as make_cluster

    cluster = make_cluster(settings)
    stderr.print("bringing up the local control plane (the first time builds Kubernetes from source) ...")
    result = cluster.up()
    stderr.print(f"local cluster {'created' if result.created else 'reused'} in {result.seconds:.1f}s "
                 f"({result.nodes} nodes); kubeconfig: {result.kubeconfig}")
    try:
        yield settings.model_copy(update={"kubeconfig": result.kubeconfig})
    finally:
        if result.created:
            stderr.print("stopping the local cluster this command started ...")
            cluster.down()


def _serve(settings: Settings) -> None:
    from api.app import create_app
    from labctl.providers.kubernetes import client as kubernetes_client

    admin = admin_token(settings)
    settings = settings.model_copy(update={"admin_token": SecretStr(admin.token)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}"
    stderr.print(f"labctl listening on [bold]{url}[/] (API docs: {url}/docs)")
    if admin.generated:
        stderr.print(f"admin token: [bold]{admin.token}[/]  ({admin.origin}; export LABCTL_URL={url} "
                     "LABCTL_TOKEN=<token>)")
    else:
        stderr.print(f"admin token: {admin.origin}  (export LABCTL_URL={url} LABCTL_TOKEN=<token>)")
    # What start-up made (modules, the catalog, the app, the clients) lives as long as the process: frozen out of
    # the collector's reach, so a full collection (which holds the interpreter lock throughout, the event loop and
    # /healthz included) walks only what the requests since made, not the whole heap. The Kubernetes SDK's API
    # modules, which it would import on first use, are imported first to be among it.
    kubernetes_client.preload()
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", lifespan="on")
