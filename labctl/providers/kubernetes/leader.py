"""The leader lock as a Kubernetes ``Lease`` (``coordination.k8s.io/v1``), for labctl run in a cluster.

The Lease names its holder (``holderIdentity``), when it was last renewed (``renewTime``) and for how long
(``leaseDurationSeconds``). A replica takes it when it is free (no holder, or renewed longer ago than its duration)
or its own, by replacing the object read with the same ``resourceVersion``: the apiserver refuses a write over a
newer version (409 Conflict), so of two replicas that read the same free Lease only one wins, and the loser is
simply "not leader" this time. Creating a missing Lease races the same way (409 AlreadyExists). Release clears the
holder, so another replica takes over at once.

Expiry compares ``renewTime`` with this replica's clock (as the store's lease does): the replicas' clocks must agree
within a small part of the lease time (NTP).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client

from labctl.providers.kubernetes.client import DEFAULT_TIMEOUT, api_client

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JSON = "application/json"


class LeaseError(RuntimeError):
    """The apiserver refused a Lease request for a reason other than a lost race (RBAC, a bad request)."""


def default_namespace() -> str:
    """The pod's own namespace when labctl runs in a cluster, else ``default``."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def micro_time(value: datetime) -> str:
    """A ``MicroTime`` as the apiserver reads it: RFC 3339 in UTC with exactly six fractional digits."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_free(spec: dict[str, Any], *, holder: str, now: datetime) -> bool:
    """Whether ``holder`` may take (or renew) a Lease with this ``spec`` at ``now``: it holds it, nobody does, or
    the holder's last renewal is older than the lease's duration."""
    current = spec.get("holderIdentity")
    if not current or current == holder:
        return True
    renewed, seconds = spec.get("renewTime"), spec.get("leaseDurationSeconds")
    if not renewed or seconds is None:
        return True
    return datetime.fromisoformat(renewed) + timedelta(seconds=int(seconds)) < now


class KubernetesLeader:
    """The :class:`labctl.service.leader.Leader` over one Lease object.

    Requests go out as plain JSON through the SDK's authenticated client: its typed Lease model would turn the
    ``MicroTime`` strings back into datetimes it writes without the six fractional digits the apiserver requires.
    """

    def __init__(self, kubeconfig: Path, *, name: str, namespace: str, holder: str,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.kubeconfig = kubeconfig
        self.name = name
        self.namespace = namespace
        self.holder = holder
        self.timeout = timeout
        self._api: client.ApiClient | None = None

    def describe(self) -> str:
        return f"the Lease {self.namespace}/{self.name}"

    def acquire(self, *, ttl: timedelta, now: datetime) -> bool:
        seconds = max(1, round(ttl.total_seconds()))
        status, lease = self._request("GET", self._path(self.name))
        if status == 404:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "labctl"}},
                    "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": seconds,
                             "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0}}
            return self._write("POST", self._path(), body)
        spec: dict[str, Any] = lease.get("spec") or {}
        if not is_free(spec, holder=self.holder, now=now):
            return False
        ours = spec.get("holderIdentity") == self.holder
        transitions = int(spec.get("leaseTransitions") or 0)
        lease["spec"] = {"holderIdentity": self.holder, "leaseDurationSeconds": seconds,
                         "acquireTime": spec.get("acquireTime") if ours and spec.get("acquireTime")
                         else micro_time(now),
                         "renewTime": micro_time(now), "leaseTransitions": transitions if ours else transitions + 1}
        return self._write("PUT", self._path(self.name), lease)  # carries the resourceVersion it was read with

    def release(self, *, now: datetime) -> None:
        status, lease = self._request("GET", self._path(self.name))
        spec: dict[str, Any] = lease.get("spec") or {}
        if status == 404 or spec.get("holderIdentity") != self.holder:
            return
        lease["spec"] = {"leaseDurationSeconds": 1, "renewTime": micro_time(now),
                         "leaseTransitions": int(spec.get("leaseTransitions") or 0)}
        self._write("PUT", self._path(self.name), lease)

    # -- requests --------------------------------------------------------------------------------------------------

    def _path(self, name: str | None = None) -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return f"{base}/{name}" if name else base

    def _write(self, method: str, path: str, body: dict[str, Any]) -> bool:
        """One write; a conflict (a newer ``resourceVersion``, or a Lease created meanwhile) means another replica
        won this round."""
        status, _ = self._request(method, path, body)
        return status != 409

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        if self._api is None:
            self._api = api_client(self.kubeconfig, timeout=self.timeout)
        api = self._api
        headers = {"Accept": JSON, **({"Content-Type": JSON} if body is not None else {})}
        _, url, headers, data, _ = api.param_serialize(method=method, resource_path=path, header_params=headers,
                                                       body=body, auth_settings=["BearerToken"])
        response = api.call_api(method, url, header_params=headers, body=data)
        raw = response.read()
        parsed: dict[str, Any] = json.loads(raw) if raw else {}
        if response.status in (404, 409) or 200 <= response.status < 300:
            return response.status, parsed
        raise LeaseError(f"Kubernetes refused {method} {path} ({response.status}): "
                         f"{parsed.get('message', raw[:300])}")
