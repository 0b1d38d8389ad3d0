"""Polling for conditions the real cluster reaches asynchronously, and a cluster that is down."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


def eventually(fn: Callable[[], Any], *, timeout: float = 60, interval: float = 0.5) -> Any:
    """Call ``fn`` until it returns a truthy value or stops raising; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (AssertionError, ApiException) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


def dead_kubeconfig(directory: Path) -> Path:
    """A kubeconfig whose apiserver refuses connections (port 1 on loopback): a cluster that is down."""
    path = directory / "dead-kubeconfig.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n")
    return path


def namespace_gone(kube: client.ApiClient, name: str) -> bool:
    """True once the namespace is deleted for good (finalized: a 404), not merely terminating."""
    try:
        client.CoreV1Api(kube).read_namespace(name)
    except ApiException as exc:
        return exc.status == 404
    return False
