"""Kubernetes API clients built from a kubeconfig file (the local control plane's, kind's, EKS's or GKE's).

Every request has a deadline: the SDK waits forever by default (no timeout unless a call passes
``_request_timeout``), so an apiserver that stops answering would hang a request, and a sweep, for the whole outage.
:class:`TimedApiClient` gives every call that names none the client's ``(connect, read)`` timeout, and urllib3 retries
a refused connection once but never a read that already timed out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config

# (connect, read) seconds when the caller does not choose: labctl's settings pass theirs.
DEFAULT_TIMEOUT = (3.0, 20.0)


class TimedApiClient(client.ApiClient):
    """An ``ApiClient`` whose requests all carry a timeout (the SDK's generated calls and the dynamic client's)."""

    def __init__(self, configuration: client.Configuration, *, timeout: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(configuration, **kwargs)
        self.timeout = timeout

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None, post_params: Any = None,
                 _request_timeout: Any = None) -> Any:
        return super().call_api(method, url, header_params=header_params, body=body, post_params=post_params,
                                _request_timeout=_request_timeout or self.timeout)


def api_client(kubeconfig: Path, *, retries: int | None = None, pool_size: int | None = None,
               timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> client.ApiClient:
    """A client for the kubeconfig's current context; never reads ~/.kube/config implicitly.

    ``timeout`` is every request's (connect, read) deadline; ``retries=0`` makes a probe fail fast instead of letting
    urllib3 retry a refused connection.
    """
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.retries = urllib3.Retry(total=1 if retries is None else retries, read=0, status=0, redirect=0,
                                raise_on_status=False)
    if pool_size is not None:
        cfg.connection_pool_maxsize = pool_size
    return TimedApiClient(cfg, timeout=timeout)


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
