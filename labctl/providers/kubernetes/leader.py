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

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labctl.providers.kubernetes.client import DEFAULT_TIMEOUT, api_client

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace() -> str:
    """The pod's own namespace when labctl runs in a cluster, else ``default``."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def micro_time(value: datetime) -> str:
    """A ``MicroTime`` as the apiserver writes it: RFC 3339 in UTC with exactly six fractional digits."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_free(spec: Any, *, holder: str, now: datetime) -> bool:
    """Whether ``holder`` may take (or renew) a Lease with this spec at ``now``."""
    if not spec or not spec.holder_identity or spec.holder_identity == holder:
        return True
    if spec.renew_time is None or spec.lease_duration_seconds is None:
        return True
    renewed: datetime = spec.renew_time
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=UTC)
    return renewed + timedelta(seconds=int(spec.lease_duration_seconds)) < now


class KubernetesLeader:
    """The :class:`labctl.service.leader.Leader` over one Lease object."""

    def __init__(self, kubeconfig: Path, *, name: str, namespace: str, holder: str,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.kubeconfig = kubeconfig
        self.name = name
        self.namespace = namespace
        self.holder = holder
        self.timeout = timeout
        self._api: client.CoordinationV1Api | None = None

    def _leases(self) -> client.CoordinationV1Api:
        if self._api is None:
            self._api = client.CoordinationV1Api(api_client(self.kubeconfig, timeout=self.timeout))
        return self._api

    def describe(self) -> str:
        return f"the Lease {self.namespace}/{self.name}"

    def acquire(self, *, ttl: timedelta, now: datetime) -> bool:
        api = self._leases()
        seconds = max(1, round(ttl.total_seconds()))
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "labctl"}},
                    "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": seconds,
                             "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0}}
            return self._write(lambda: api.create_namespaced_lease(self.namespace, body))
        spec = lease.spec
        if not is_free(spec, holder=self.holder, now=now):
            return False
        ours = spec is not None and spec.holder_identity == self.holder
        transitions = int(spec.lease_transitions or 0) if spec is not None else 0
        acquired = spec.acquire_time if ours and spec is not None and spec.acquire_time is not None else now
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": lease.metadata.resource_version,
                             "labels": lease.metadata.labels or {}},
                "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": seconds,
                         "acquireTime": micro_time(acquired), "renewTime": micro_time(now),
                         "leaseTransitions": transitions if ours else transitions + 1}}
        return self._write(lambda: api.replace_namespaced_lease(self.name, self.namespace, body))

    def release(self, *, now: datetime) -> None:
        api = self._leases()
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if lease.spec is None or lease.spec.holder_identity != self.holder:
            return
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": lease.metadata.resource_version,
                             "labels": lease.metadata.labels or {}},
                "spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_time(now),
                         "leaseTransitions": int(lease.spec.lease_transitions or 0)}}
        self._write(lambda: api.replace_namespaced_lease(self.name, self.namespace, body))

    @staticmethod
    def _write(write: Any) -> bool:
        """Send one write; a conflict (a newer ``resourceVersion``, or a Lease created meanwhile) means another
        replica won this round."""
        try:
            write()
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True
