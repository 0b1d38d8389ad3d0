"""Kubernetes API clients built from a kubeconfig file (the local control plane's, kind's, EKS's or GKE's)."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path, *, retries: int | None = None, pool_size: int | None = None) -> client.ApiClient:
    """A client for the kubeconfig's current context; never reads ~/.kube/config implicitly.

    ``retries=0`` makes a probe fail fast instead of letting urllib3 retry a refused connection.
    """
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    if retries is not None:
        cfg.retries = retries
    if pool_size is not None:
        cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


def ping(kubeconfig: Path | None, *, timeout_s: float = 3.0) -> str:
    """The apiserver's version if it answers within ``timeout_s``; raises with a readable reason otherwise."""
    if kubeconfig is None:
        raise RuntimeError("no kubeconfig: set LABCTL_KUBECONFIG or run `labctl cluster up`")
    if not kubeconfig.exists():
        raise RuntimeError(f"kubeconfig {kubeconfig} does not exist")
    with api_client(kubeconfig, retries=0) as api:
        try:
            info = client.VersionApi(api).get_code(_request_timeout=timeout_s)
        except Exception as exc:  # the SDK raises urllib3, socket and ApiException errors alike
            host = api.configuration.host
            raise RuntimeError(f"Kubernetes API at {host} did not answer: {type(exc).__name__}: {exc}") from exc
    return str(info.git_version)
