"""The leader lock as a Kubernetes Lease (``LABCTL_LEADER=kubernetes``) against the real local apiserver.

Two holders (and a crowd of racers), one wins; the winner renews; another takes over once the lease expires; a
write over a newer ``resourceVersion`` (a real 409 from the apiserver) is "not leader", never an error; release hands
the lock over at once. The Lease is read back with the real kubectl. Times are passed in (the adapter takes ``now``),
so expiry needs no waiting.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from labctl import runtime
from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes.leader import KubernetesLeader
from labctl.service import leader
from labctl.settings import Settings
from labctl.store.db import open_store
from tests.support.clock import FakeClock

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _lease(kubectl: Kubectl, namespace: str, name: str = "labctl-sweeps") -> dict[str, Any]:
    got = kubectl("get", "lease", name, "-n", namespace, "-o", "json", check=True)
    spec: dict[str, Any] = json.loads(got.stdout)["spec"]
    return spec


def _holder(cluster: LocalCluster, namespace: str, name: str) -> KubernetesLeader:
    return KubernetesLeader(cluster.kubeconfig, name="labctl-sweeps", namespace=namespace, holder=name)


def test_one_holder_renewal_takeover_and_release(local_cluster: LocalCluster, namespace: str,
                                                 kubectl: Kubectl) -> None:
    a, b = _holder(local_cluster, namespace, "replica-a"), _holder(local_cluster, namespace, "replica-b")
    assert a.acquire(ttl=TTL, now=T0)  # creates the Lease
    assert not b.acquire(ttl=TTL, now=T0 + timedelta(seconds=1))
    first = _lease(kubectl, namespace)
    assert (first["holderIdentity"], first["leaseDurationSeconds"], first["leaseTransitions"]) == ("replica-a", 15, 0)

    assert a.acquire(ttl=TTL, now=T0 + timedelta(seconds=10))  # renewal
    renewed = _lease(kubectl, namespace)
    assert renewed["holderIdentity"] == "replica-a" and renewed["leaseTransitions"] == 0
    assert renewed["renewTime"] > first["renewTime"] and renewed["acquireTime"] == first["acquireTime"]
    assert not b.acquire(ttl=TTL, now=T0 + timedelta(seconds=24))  # 14 s after the renewal: still a's

    assert b.acquire(ttl=TTL, now=T0 + timedelta(seconds=26))  # a stopped renewing: b takes over
    taken = _lease(kubectl, namespace)
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("replica-b", 1)
    assert not a.acquire(ttl=TTL, now=T0 + timedelta(seconds=27))

    a.release(now=T0 + timedelta(seconds=28))  # not a's: nothing changes
    assert _lease(kubectl, namespace)["holderIdentity"] == "replica-b"
    b.release(now=T0 + timedelta(seconds=28))
    assert "holderIdentity" not in _lease(kubectl, namespace)
    assert a.acquire(ttl=TTL, now=T0 + timedelta(seconds=29))  # at once, no expiry to wait for
    assert _lease(kubectl, namespace)["holderIdentity"] == "replica-a"


class _WriteInBetween(KubernetesLeader):
    """A replica whose read of the Lease is followed by another replica's write (a real one) before its own: the
    order a race takes on a busy machine, made certain."""

    def __init__(self, cluster: LocalCluster, namespace: str, holder: str, meanwhile: Callable[[], object]) -> None:
        super().__init__(cluster.kubeconfig, name="labctl-sweeps", namespace=namespace, holder=holder)
        self.meanwhile = meanwhile
        self.answers: list[tuple[str, int]] = []

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        answer = super()._request(method, path, body)
        self.answers.append((method, answer[0]))
        if method == "GET":
            self.meanwhile()
        return answer


def test_a_resource_version_conflict_is_not_leader(local_cluster: LocalCluster, namespace: str,
                                                   kubectl: Kubectl) -> None:
    a = _holder(local_cluster, namespace, "replica-a")
    assert a.acquire(ttl=TTL, now=T0)
    expired = T0 + timedelta(seconds=60)
    # b reads the expired Lease, a renews it meanwhile, b's write carries the old resourceVersion: 409.
    b = _WriteInBetween(local_cluster, namespace, "replica-b", lambda: a.acquire(ttl=TTL, now=expired))
    assert not b.acquire(ttl=TTL, now=expired)
    assert b.answers == [("GET", 200), ("PUT", 409)]
    assert _lease(kubectl, namespace)["holderIdentity"] == "replica-a"

    # Racers on one expired Lease: every one reads it free, exactly one write wins.
    racers = [_holder(local_cluster, namespace, f"racer-{i}") for i in range(6)]
    later = expired + timedelta(seconds=60)
    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        won = list(pool.map(lambda r: r.acquire(ttl=TTL, now=later), racers))
    assert sum(won) == 1
    winner = next(r.holder for r, w in zip(racers, won, strict=True) if w)
    assert _lease(kubectl, namespace)["holderIdentity"] == winner


def test_the_setting_picks_the_lease_and_the_tenure_holds_it(local_cluster: LocalCluster, namespace: str,
                                                             kubectl: Kubectl, tmp_path: Path) -> None:
    settings = Settings(leader="kubernetes", leader_namespace=namespace, kubeconfig=local_cluster.kubeconfig,
                        replica_id="replica-k", data_dir=tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'labctl.db'}")
    lock = runtime.leader_lock(settings, store=store)
    assert isinstance(lock, KubernetesLeader) and lock.describe() == f"the Lease {namespace}/labctl-sweeps"
    assert isinstance(runtime.leader_lock(Settings(data_dir=tmp_path), store=store), leader.StoreLeader)
    clock = FakeClock(datetime.now(UTC))
    tenure = leader.Tenure(lock, ttl=TTL, clock=clock)
    other = _holder(local_cluster, namespace, "replica-other")
    assert tenure.held()
    clock.advance(seconds=6)  # past a third of the lease: renewed
    assert tenure.held()
    assert not other.acquire(ttl=TTL, now=clock() + timedelta(seconds=14))
    assert other.acquire(ttl=TTL, now=clock() + timedelta(seconds=16))
    clock.advance(seconds=6)
    assert not tenure.held()  # lost: the jobs stop
    tenure.release()
    assert _lease(kubectl, namespace)["holderIdentity"] == "replica-other"
    store.engine.dispose()
