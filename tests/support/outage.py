"""Backends made to stop answering for a while, for the outage tests: the real kube-apiserver of a local cluster
stopped with SIGSTOP (connections are accepted, nothing is answered) and continued with SIGCONT."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from labctl.localcluster.cluster import LocalCluster


def apiserver_pid(cluster: LocalCluster) -> int:
    """The pid of the cluster's kube-apiserver."""
    found = [c.pid for c in cluster._components() if c.name == "kube-apiserver" and c.pid]
    assert found, f"the kube-apiserver of cluster {cluster.name} is not running"
    return found[0]


@contextmanager
def apiserver_stopped(cluster: LocalCluster) -> Iterator[int]:
    """The apiserver stopped while the block runs (continued however the block ends); yields its pid."""
    pid = apiserver_pid(cluster)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)
