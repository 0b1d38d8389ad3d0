"""The learner against the watch cache's memory bound: objects the quota does not count, each as large as the
apiserver allows, made with the learner's own kubeconfig and the real kubectl. The sandbox leaves the cache (so the
cache's memory stays bounded per sandbox) and is read directly from then on: its objects are still metered and graded.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import cache
from tests.support.kube_requests import count_requests
from tests.support.sandbox import learner_sandbox, shipped_lab

PADDING = "x" * 250_000  # an annotation near the apiserver's 256 KiB limit for all of an object's annotations


def budget(name: str) -> dict[str, object]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "annotations": {"padding": PADDING}},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}}}


def test_a_sandbox_grown_past_its_bytes_is_read_directly(local_cluster: LocalCluster, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with learner_sandbox(local_cluster, shipped_lab("tag-for-showback"), tmp_path) as box:
        provider = box.provider
        watched = provider.watch_cache()
        deadline = time.monotonic() + 20
        while watched.inventory(box.namespace) is None:  # the new sandbox reaches the cache
            assert time.monotonic() < deadline, "the cache never served the new sandbox"
            time.sleep(0.2)
        made = cache.MAX_SANDBOX_BYTES // len(PADDING) + 1
        for i in range(made):
            result = box.create(budget(f"big-{i}"))
            assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 20
        while watched.inventory(box.namespace) is not None:
            assert time.monotonic() < deadline, "the sandbox stayed in the cache past its byte bound"
            time.sleep(0.2)
        with watched._lock:
            assert all(box.namespace not in shelf for shelf in watched._objects.values())
            assert box.namespace not in watched._bytes
        counted = count_requests(monkeypatch)
        snap = provider.snapshot(box.spec, now=datetime.now(UTC))
        assert counted.namespaced(box.namespace)  # read from the apiserver
        assert {r.name for r in snap.of_kind("PodDisruptionBudget")} == {f"big-{i}" for i in range(made)}
