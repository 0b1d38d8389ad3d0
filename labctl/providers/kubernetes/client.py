"""Kubernetes API clients built from a kubeconfig file (the local control plane's, kind's, EKS's or GKE's), or, with
no kubeconfig, from the pod's own ServiceAccount (in-cluster: the token and CA Kubernetes mounts in every pod, the
apiserver from ``KUBERNETES_SERVICE_HOST``/``_PORT``; the token file is read again as the kubelet rotates it).

Every request has a deadline: the SDK waits forever by default (no timeout unless a call passes
``_request_timeout``), so an apiserver that stops answering would hang a request, and a sweep, for the whole outage.
:class:`TimedApiClient` gives every call that names none the client's ``(connect, read)`` timeout, and urllib3 retries
a refused connection once but never a read that already timed out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader

# (connect, read) seconds when the caller does not choose: labctl's settings pass theirs.
DEFAULT_TIMEOUT = (3.0, 20.0)
# Where Kubernetes mounts a pod's ServiceAccount token and the cluster's CA.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The SDK's API classes labctl calls. The SDK imports each one (and the pydantic models it names: about 110,000 objects
# the garbage collector tracks, two seconds of import) on first use; :func:`preload` imports them up front.
USED_APIS = ("AppsV1Api", "AutoscalingV2Api", "BatchV1Api", "CoreV1Api", "CustomObjectsApi", "DiscoveryV1Api",
             "PolicyV1Api", "RbacAuthorizationV1Api", "VersionApi")
NO_CLUSTER = ("no kubeconfig and not in a pod: set LABCTL_KUBECONFIG, run `labctl cluster up`, or run labctl in the "
              "cluster with a ServiceAccount (manifests/deploy)")


class TimedApiClient(client.ApiClient):
    """An ``ApiClient`` whose requests all carry a timeout (the SDK's generated calls and the dynamic client's)."""

    def __init__(self, configuration: client.Configuration, *, timeout: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(configuration, **kwargs)
        self.timeout = timeout

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None, post_params: Any = None,
                 _request_timeout: Any = None) -> Any:
        return super().call_api(method, url, header_params=header_params, body=body, post_params=post_params,
                                _request_timeout=_request_timeout or self.timeout)


def preload() -> None:
    """Import the SDK's API classes labctl calls (:data:`USED_APIS`) now, so that a long-running process has them
    among what it freezes at start-up (``gc.freeze``): imported on a first request instead, they would join the heap
    every full collection walks, at about a millisecond per thousand objects with the interpreter lock held."""
    for name in USED_APIS:
        getattr(client, name)


def api_client(kubeconfig: Path | None, *, retries: int | None = None, pool_size: int | None = None,
               timeout: tuple[float, float] = DEFAULT_TIMEOUT, service_account_dir: Path = SERVICE_ACCOUNT_DIR,
               environ: Mapping[str, str] = os.environ) -> client.ApiClient:
    """A client for the kubeconfig's current context, or (``None``) for the pod's ServiceAccount; never reads
    ~/.kube/config implicitly.

    ``timeout`` is every request's (connect, read) deadline; ``retries=0`` makes a probe fail fast instead of letting
    urllib3 retry a refused connection. ``service_account_dir`` and ``environ`` are where a pod's identity is found.
    """
    cfg = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    else:
        load_in_cluster(cfg, service_account_dir=service_account_dir, environ=environ)
    cfg.retries = urllib3.Retry(total=1 if retries is None else retries, read=0, status=0, redirect=0,
                                raise_on_status=False)
    if pool_size is not None:
        cfg.connection_pool_maxsize = pool_size
    return TimedApiClient(cfg, timeout=timeout)


def load_in_cluster(cfg: client.Configuration, *, service_account_dir: Path = SERVICE_ACCOUNT_DIR,
                    environ: Mapping[str, str] = os.environ) -> None:
    """Fill ``cfg`` from the pod's ServiceAccount; raises ``RuntimeError`` saying what to set when not in a pod."""
    loader = InClusterConfigLoader(token_filename=str(service_account_dir / "token"),
                                   cert_filename=str(service_account_dir / "ca.crt"), environ=environ)
    try:
        loader.load_and_set(cfg)
    except ConfigException as exc:
        raise RuntimeError(f"{NO_CLUSTER} (in-cluster configuration: {exc})") from exc


def ping(kubeconfig: Path | None, *, timeout_s: float = 3.0, service_account_dir: Path = SERVICE_ACCOUNT_DIR,
         environ: Mapping[str, str] = os.environ) -> str:
    """The apiserver's version if it answers within ``timeout_s``; raises with a readable reason otherwise.
    ``None``: the pod's ServiceAccount (in-cluster)."""
    if kubeconfig is not None and not kubeconfig.exists():
        raise RuntimeError(f"kubeconfig {kubeconfig} does not exist")
    with api_client(kubeconfig, retries=0, service_account_dir=service_account_dir, environ=environ) as api:
        try:
            info = client.VersionApi(api).get_code(_request_timeout=timeout_s)
        except Exception as exc:  # the SDK raises urllib3, socket and ApiException errors alike
            host = api.configuration.host
            raise RuntimeError(f"Kubernetes API at {host} did not answer: {type(exc).__name__}: {exc}") from exc
    return str(info.git_version)
