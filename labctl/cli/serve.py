"""``labctl serve``: run the API service with uvicorn."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import SecretStr

from labctl.cli.output import stderr
from labctl.settings import Settings


def admin_token(settings: Settings) -> str:
    """The admin token: ``LABCTL_ADMIN_TOKEN``, else (development only) one kept in the data directory."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    _write_private(path, token + "\n")
    return token


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
) -> None:
    """Run the labctl API service."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if not local_cluster:
        _serve(settings)
        return
    from labctl.cli.cluster import local_cluster as make_cluster

    cluster = make_cluster(settings)
    stderr.print("bringing up the local control plane (the first time builds Kubernetes from source) ...")
    result = cluster.up()
    stderr.print(f"local cluster {'created' if result.created else 'reused'} in {result.seconds:.1f}s "
                 f"({result.nodes} nodes); kubeconfig: {result.kubeconfig}")
    try:
        _serve(settings.model_copy(update={"kubeconfig": result.kubeconfig}))
    finally:
        if result.created:
            stderr.print("stopping the local cluster this command started ...")
            cluster.down()


def _serve(settings: Settings) -> None:
    from api.app import create_app

    token = admin_token(settings)
    settings = settings.model_copy(update={"admin_token": SecretStr(token)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}"
    stderr.print(f"labctl listening on [bold]{url}[/] (API docs: {url}/docs)")
    stderr.print(f"admin token: [bold]{token}[/]  (export LABCTL_URL={url} LABCTL_TOKEN=<token>)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", lifespan="on")
