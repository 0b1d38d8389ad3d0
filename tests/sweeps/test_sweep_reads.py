"""What a sweep asks the apiserver: one list and watch per kind across the cluster, not a dozen lists per sandbox.

Real sessions started through the API (the shipped ``tag-for-showback`` lab, with its simulated demand), swept by the
runtime's ``Sweeper``, the requests counted by a wrapper around ``call_api`` (``tests/support/kube_requests.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import cache
from labctl.settings import REPO_ROOT, Settings
from tests.support.kube_requests import INVENTORY_RESOURCES, count_requests
from tests.support.server import ADMIN_TOKEN

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SESSIONS = 3


def test_a_sweep_reads_no_collection_per_sandbox(tmp_path: Path, local_cluster: LocalCluster,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig, admin_token=ADMIN_TOKEN,
                        labs_dir=REPO_ROOT / "labs", fleet_file=REPO_ROOT / "labs" / "fleet.yaml",
                        database_url=f"sqlite:///{tmp_path / 'labctl.db'}")
    app = create_app(settings, background=False)
    with TestClient(app) as http:
        runtime = app.state.parts.runtime
        try:
            started = [http.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": f"reads-{i}"},
                                 headers=HEADERS).json() for i in range(SESSIONS)]
            namespaces = [s["namespace"] for s in started]
            assert runtime.sweeper.run_once().metered == SESSIONS  # the first sweep starts the cache
            watched = runtime.provider.watch_cache()
            deadline = time.monotonic() + 30
            while not (watched.ready and set(namespaces) <= watched.namespaces()):
                assert time.monotonic() < deadline, "the cache never synced with every sandbox"
                time.sleep(0.2)

            counted = count_requests(monkeypatch)
            for _ in range(2):
                report = runtime.sweeper.run_once()
                assert report.metered == SESSIONS and not report.errors, report.errors
            for ns in namespaces:
                assert counted.inventory_reads(ns) == [], counted.inventory_reads(ns)
            assert ("GET", "/api/v1/nodes") not in counted.calls  # nodes come from the cache, not once per session
            usage = [path for _, path in counted.calls if path.startswith("/apis/metrics.k8s.io/")]
            assert all(path == "/apis/metrics.k8s.io/v1beta1/pods" for path in usage), usage  # one list, shared
            assert all(count == 1 for count in watched.relists.values()), watched.relists  # one list per kind
            assert len(watched.relists) == len(cache.KINDS)

            # The same sandbox read the old way (a frozen one is): every collection listed in its namespace.
            counted.clear()
            runtime.provider.freeze(runtime.sessions.spec_of(runtime.sessions.row_of(started[0]["id"])))
            counted.clear()
            runtime.sweeper.run_once()
            assert counted.read_resources(namespaces[0]) == set(INVENTORY_RESOURCES)
            assert all(counted.inventory_reads(ns) == [] for ns in namespaces[1:])
        finally:
            for s in http.get("/v1/sessions", headers=HEADERS).json():
                if s["state"] not in ("terminated", "failed"):
                    http.delete(f"/v1/sessions/{s['id']}", headers=HEADERS)
