"""A lab with demand and an autoscaled workload, for the replay tests: idle-hunter's ``legacy-dashboard`` (3 replicas,
250m CPU requested, 500m limit) given a daily demand that is low at night, 80 requests/s from 05:00 to 11:00 and low
again from 13:00, 0.01 core-seconds a request; the learner's HPA keeps it at 50 % of its request (125m a pod):
1 replica at night, the maximum of 5 at the peak (80/s x 0.01 = 0.8 cores).

The world is a FastAPI app driven by hand (no background loops) over SQLite or the test session's PostgreSQL; its
sessions' clock is a fake one that the replay's sleep moves by the real seconds slept, so the money ledger and the
real controller-manager see the same time pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from labctl.localcluster.cluster import LocalCluster
from labctl.service.auth import Principal
from labctl.settings import REPO_ROOT, Settings
from tests.support.clock import FakeClock
from tests.support.server import ADMIN_TOKEN
from tests.support.stores import clean_store
from tests.sweeps.test_meter_and_timers import HEADERS, WEDNESDAY, _labs_with

LAB = "idle-hunter"
WORKLOAD = "Deployment/legacy-dashboard"
INSTRUCTOR = Principal(name="admin", role="instructor")


def demand(*, seconds_per_day: int) -> dict[str, Any]:
    return {
        "time_scale": 86400 // seconds_per_day, "start": "Mon 00:00", "grading_window": "1d",
        "workloads": [{"workload": WORKLOAD,
                       "daily": {"00:00": 1, "03:00": 1, "05:00": 80, "11:00": 80, "13:00": 1},
                       "per_request": {"cpu_core_seconds": 0.01}}],
    }


HPA = yaml.safe_dump({
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "legacy-dashboard"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy-dashboard"},
        "minReplicas": 1, "maxReplicas": 5,
        "metrics": [{"type": "Resource",
                     "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        # No stabilisation: a day lasts 90 real seconds here (the controller-manager syncs every 5 s).
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}]},
            "scaleDown": {"stabilizationWindowSeconds": 0,
                          "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}]},
        },
    }})


@dataclass
class World:
    client: TestClient
    clock: FakeClock
    app: Any
    settings: Settings

    @property
    def rt(self) -> Any:
        return self.app.state.parts.runtime

    def start(self, learner: str) -> dict[str, Any]:
        r = self.client.post("/v1/sessions", json={"lab_id": LAB, "learner_id": learner}, headers=HEADERS)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def submission(self, sub_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/submissions/{sub_id}", headers=HEADERS)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def stop_all(self) -> None:
        for s in self.client.get("/v1/sessions", headers=HEADERS).json():
            if s["state"] not in ("terminated", "failed"):
                self.client.delete(f"/v1/sessions/{s['id']}", headers=HEADERS)


def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``request.param`` "sqlite" or "postgresql": an empty database (the app migrates it)."""
    store = clean_store(request, tmp_path / "labctl.db", migrate=False)
    url = store.engine.url.render_as_string(hide_password=False)
    store.engine.dispose()
    return url


def make_world(tmp_path: Path, cluster: LocalCluster, *, seconds_per_day: int, url: str | None = None) -> World:
    labs = _labs_with(tmp_path, LAB, {"demand": demand(seconds_per_day=seconds_per_day)})
    settings = Settings(data_dir=tmp_path, kubeconfig=cluster.kubeconfig, admin_token=ADMIN_TOKEN, labs_dir=labs,
                        fleet_file=REPO_ROOT / "labs" / "fleet.yaml",
                        database_url=url or f"sqlite:///{tmp_path / 'labctl.db'}", replay_step_s=5.0, replay_max_s=300)
    app = create_app(settings, background=False)
    clock = FakeClock(WEDNESDAY)
    app.state.parts.runtime.sessions.clock = clock

    def sleep(seconds: float) -> None:
        time.sleep(seconds)
        clock.advance(seconds=seconds)

    app.state.parts.runtime.submissions.replayer.sleep = sleep
    return World(client=TestClient(app), clock=clock, app=app, settings=settings)


def running_world(world: World) -> Iterator[World]:
    with world.client:
        yield world
        world.stop_all()
