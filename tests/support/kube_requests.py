"""Counting the requests labctl's Kubernetes clients send: a wrapper around ``TimedApiClient.call_api`` that records
each request's method and path, then sends it (a measurement of real requests, not a mock)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from labctl.providers.kubernetes.client import TimedApiClient

# The collections inventory.collect lists in a namespace, and the namespace's usage.
INVENTORY_RESOURCES = ("pods", "deployments", "statefulsets", "replicasets", "daemonsets", "jobs", "cronjobs",
                       "persistentvolumeclaims", "services", "endpointslices", "poddisruptionbudgets", "configmaps",
                       "horizontalpodautoscalers")


class Counted:
    """Every request the process's Kubernetes clients sent since :meth:`clear`, as (method, path)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def clear(self) -> None:
        self.calls.clear()

    def namespaced(self, namespace: str) -> list[tuple[str, str]]:
        """Requests for objects inside ``namespace``."""
        return [c for c in self.calls if f"/namespaces/{namespace}/" in c[1]]

    def read_resources(self, namespace: str) -> set[str]:
        """Which of the inventory's collections were listed in ``namespace``."""
        return {path.rsplit("/", 1)[-1] for _, path in self.inventory_reads(namespace)}

    def inventory_reads(self, namespace: str) -> list[tuple[str, str]]:
        """GETs of a collection the inventory reads, in ``namespace`` (the per-namespace reads of old)."""
        pattern = re.compile(rf"/namespaces/{re.escape(namespace)}/({'|'.join(INVENTORY_RESOURCES)})$")
        return [c for c in self.calls if c[0] == "GET" and pattern.search(c[1])]


def count_requests(monkeypatch: pytest.MonkeyPatch) -> Counted:
    """Count every request from now until the test ends."""
    seen = Counted()
    original = TimedApiClient.call_api

    def call_api(self: TimedApiClient, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.calls.append((method, urlsplit(url).path))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(TimedApiClient, "call_api", call_api)
    return seen
