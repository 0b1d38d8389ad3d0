"""Shared fixtures: the real local control plane (session scoped), admin clients, kubectl, settings."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes.client import api_client
from labctl.settings import Settings
from tests.support import two_clusters
from tests.support.moto import moto_server
from tests.support.postgres import postgres_server
from tests.support.server import Server
from tests.support.two_clusters import Pair


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


# A submission of a lab with demand replays its grading window on the live sandbox, for up to LABCTL_REPLAY_MAX_S
# real seconds (5 minutes by default): tests that submit the shipped labs replay theirs in 10 s (a test that
# studies the replay sets its own in Settings). Servers the tests start inherit it.
os.environ.setdefault("LABCTL_REPLAY_MAX_S", "10")

# LABCTL_TEST_CLUSTER lets two checkouts on one machine test side by side, each on a cluster of its own.
TEST_CLUSTER = os.environ.get("LABCTL_TEST_CLUSTER", "labctl-test")


@pytest.fixture(scope="session")
def local_cluster(settings: Settings) -> LocalCluster:
    """The tests' own local control plane (not `make run`'s), brought up once per test session or reused.

    It is left running afterwards so the next `make test` starts fast (`.ci/run` removes it). Sandboxes that an
    interrupted earlier run left behind are removed first, so they cannot fill the simulated fleet.
    """
    cluster = LocalCluster(workdir=settings.local_cluster_workdir, fleet_file=settings.fleet_file, name=TEST_CLUSTER)
    cluster.up()
    _remove_leftovers(cluster)
    return cluster


def _remove_leftovers(cluster: LocalCluster) -> None:
    selector = "app.kubernetes.io/managed-by=labctl"
    cluster.kubectl(["delete", "clusterrolebinding", "-l", selector, "--ignore-not-found"], timeout=60)
    for labels in (selector, "labctl.dev/test=1"):
        cluster.kubectl(["delete", "namespace", "-l", labels, "--ignore-not-found", "--timeout=170s"], check=False,
                        timeout=180)


@pytest.fixture(scope="session")
def cluster_pair(settings: Settings) -> Pair:
    """Two more local clusters, ``<LABCTL_TEST_CLUSTER>-a`` (small, spot) and ``-b`` (larger, on-demand, one GPU), for
    the placement tests (:mod:`tests.support.two_clusters`); left running like the suite's own."""
    return two_clusters.bring_up(settings.local_cluster_workdir, prefix=TEST_CLUSTER)


@pytest.fixture(scope="session")
def kube(local_cluster: LocalCluster) -> Iterator[client.ApiClient]:
    """An admin API client for the local cluster."""
    with api_client(local_cluster.kubeconfig) as api:
        yield api


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"labctl.dev/test": "1"})))
    yield name
    core.delete_namespace(name, _request_timeout=30)


@pytest.fixture(scope="session")
def kubectl(local_cluster: LocalCluster):  # type: ignore[no-untyped-def]
    """Run the built kubectl (not whatever kubectl is on PATH) with any kubeconfig."""

    def run(*args: str, kubeconfig: Path | None = None, stdin: str | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        cfg = kubeconfig or local_cluster.kubeconfig
        return subprocess.run([str(local_cluster.tools.kubectl), "--kubeconfig", str(cfg), *args], input=stdin,
                              capture_output=True, text=True, check=check, timeout=60,
                              env={**os.environ, "KUBECONFIG": ""})

    return run


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """The URL of a private moto server (EC2, IAM, STS) for one test module: boto3 reaches it by endpoint_url. One
    server for the whole session, used by every AWS module in turn, stopped answering for minutes late in long runs
    (reads timed out after 60 s, its reset endpoint too); a fresh one per module costs a second or two."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def server(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running `labctl serve` against the local cluster, shared by a test module."""
    srv = Server(data_dir=tmp_path_factory.mktemp("serve"), kubeconfig=local_cluster.kubeconfig).start()
    yield srv
    srv.stop_all_sessions()
    srv.stop()
