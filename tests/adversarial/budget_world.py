"""The world the budget tests play the learner in: the app in-process over a real store and the real cluster, a
fake clock, learner tokens and kubeconfigs, and one named fault (a meter outage) that the real cluster cannot be
made to produce on demand."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from labctl.localcluster.cluster import LocalCluster
from labctl.ports import ProviderUnavailable, SandboxProvider, SandboxSpec
from labctl.settings import REPO_ROOT, Settings
from tests.support.clock import FakeClock
from tests.support.server import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # inside every lab's working window
QUIET_TIME = {"limit": "30d", "max_extension": "0", "idle_timeout": None, "off_hours": None}  # only the budget acts


class MeterOutage:
    """FAKE (fault injection): the real provider, except that ``snapshot`` fails while ``armed``.

    A real cluster cannot be made to refuse list calls to labctl while still accepting its patches, which is the
    fault "the meter cannot read the sandbox, but the sandbox can still be stopped".
    """

    def __init__(self, real: SandboxProvider) -> None:
        self.real = real
        self.armed = False
        self.name = real.name

    def snapshot(self, spec: SandboxSpec, *, now: datetime, interim: bool = False) -> dict[str, Any]:
        if self.armed:
            raise ProviderUnavailable("fault injected: the sandbox's inventory cannot be listed")
        return self.real.snapshot(spec, now=now, interim=interim)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@dataclass
class World:
    client: TestClient
    clock: FakeClock
    app: Any
    settings: Settings
    cluster: LocalCluster

    @property
    def rt(self) -> Any:
        return self.app.state.parts.runtime

    def sweep(self) -> Any:
        return self.rt.sweeper.run_once()

    def session(self, sid: str) -> dict[str, Any]:
        return dict(self.client.get(f"/v1/sessions/{sid}", headers=ADMIN).json())

    def events(self, sid: str) -> list[dict[str, Any]]:
        return list(self.client.get(f"/v1/sessions/{sid}/events", headers=ADMIN).json())

    def token(self, name: str, role: str, learner: str | None = None) -> dict[str, str]:
        body = {"name": name, "role": role, **({"learner_id": learner} if learner else {})}
        r = self.client.post("/v1/tokens", json=body, headers=ADMIN)
        assert r.status_code in (200, 201), r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def start(self, lab: str, learner: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.client.post("/v1/sessions", json={"lab_id": lab, "learner_id": learner}, headers=headers or ADMIN)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def kubectl_as(self, sid: str, headers: dict[str, str],
                   home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
        """The real kubectl with the kubeconfig the learner downloads, in a bare environment."""
        r = self.client.get(f"/v1/sessions/{sid}/kubeconfig", headers=headers)
        assert r.status_code == 200, r.text
        home.mkdir(parents=True, exist_ok=True)
        config = home / "kubeconfig.yaml"
        config.write_text(r.text)
        kubectl = str(self.cluster.tools.kubectl)

        def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([kubectl, "--kubeconfig", str(config), *args], input=stdin, capture_output=True,
                                  text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
        return run

    def stop_all(self) -> None:
        for s in self.client.get("/v1/sessions", headers=ADMIN).json():
            if s["state"] not in ("terminated", "failed", "terminating"):
                self.client.delete(f"/v1/sessions/{s['id']}", headers=ADMIN)


@contextmanager
def quiet_world(tmp: Path, cluster: LocalCluster, **settings: Any) -> Iterator[World]:
    """tag-for-showback with only its budget acting (no timers): the world, its live sessions stopped after."""
    world = make_world(tmp, cluster, labs_with(tmp, "tag-for-showback", {"time": QUIET_TIME}), **settings)
    with world.client:
        yield world
        world.stop_all()


def labs_with(tmp: Path, lab: str, edit: dict[str, Any]) -> Path:
    """A copy of the shipped labs with ``lab``'s top-level sections updated by ``edit``."""
    labs = tmp / "labs"
    if not labs.exists():
        shutil.copytree(REPO_ROOT / "labs", labs)
    path = labs / lab / "lab.yaml"
    doc = yaml.safe_load(path.read_text())
    for key, value in edit.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return labs


def make_world(tmp: Path, cluster: LocalCluster, labs: Path | None = None, **settings: Any) -> World:
    config = Settings(data_dir=tmp, kubeconfig=cluster.kubeconfig, admin_token=ADMIN_TOKEN,
                      labs_dir=labs or REPO_ROOT / "labs", fleet_file=REPO_ROOT / "labs" / "fleet.yaml",
                      database_url=settings.pop("database_url", f"sqlite:///{tmp / 'labctl.db'}"), **settings)
    app = create_app(config, background=False)
    clock = FakeClock(WEDNESDAY)
    app.state.parts.runtime.sessions.clock = clock
    return World(client=TestClient(app), clock=clock, app=app, settings=config, cluster=cluster)


def restricted_pod_spec(cpu: str = "50m") -> dict[str, Any]:
    """A pod spec the restricted Pod Security level admits, with small requests."""
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        "resources": {"requests": {"cpu": cpu, "memory": "32Mi"},
                                      "limits": {"cpu": cpu, "memory": "32Mi"}}}],
    }


def compute_burn(world: World, sid: str) -> float:
    """The hourly cost of the sandbox's pods in a fresh priced snapshot (volumes and load balancers left out)."""
    snap = world.rt.sweeper.meter(sid, world.rt.sweeper.prices())
    resources = snap["resources"] if isinstance(snap, dict) else snap.resources
    total = 0.0
    for r in resources:
        kind = r["kind"] if isinstance(r, dict) else r.kind
        hourly = r.get("hourly_usd") if isinstance(r, dict) else r.hourly_usd
        if kind == "Pod":
            total += float(hourly or 0)
    return total
