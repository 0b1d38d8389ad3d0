"""A learner's sandbox for metering tests: a real session, the kubeconfig labctl issued, the real kubectl, sweeps.

:func:`learner_sandbox` starts a session of a lab through the API of an in-process app (its own SQLite store, a fixed
clock, no background loops), writes the learner's kubeconfig (a TokenRequest token for the sandbox's ServiceAccount)
and yields a :class:`Sandbox` whose ``kubectl`` runs the built kubectl with that kubeconfig only, in a bare
environment, as on a learner's laptop. ``meter()`` runs the product's sweeper on the session and returns the priced
snapshot, the same one the ledger accrues and the graders read.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from labctl.grading.snapshot import Resource, Snapshot
from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT, Settings
from tests.support.server import ADMIN_TOKEN

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # inside every lab's working window
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@dataclass
class Sandbox:
    app: Any
    client: TestClient
    session: dict[str, Any]
    kubeconfig: Path
    cluster: LocalCluster
    home: Path

    @property
    def namespace(self) -> str:
        return str(self.session["namespace"])

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real kubectl with the learner's kubeconfig, nothing else (no admin credentials in reach)."""
        return subprocess.run([str(self.cluster.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, timeout=90,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)})

    def apply(self, *docs: dict[str, Any]) -> None:
        proc = self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        assert proc.returncode == 0, proc.stderr

    def meter(self) -> Snapshot:
        """One metering of the session by the product's sweeper: the priced snapshot."""
        rt = self.app.state.parts.runtime
        return rt.sweeper.meter(self.session["id"], rt.sweeper.prices())  # type: ignore[no-any-return]

    def sweep_errors(self) -> list[tuple[str, str]]:
        """A whole sweep pass, as the scheduler runs it: what it reported as failed for this session."""
        report = self.app.state.parts.runtime.sweeper.run_once()
        return [e for e in report.errors if e[0] == self.session["id"]]

    def cost(self) -> dict[str, Any]:
        got: dict[str, Any] = self.client.get(f"/v1/sessions/{self.session['id']}", headers=HEADERS).json()["cost"]
        return got


def pod(name: str, *, containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None,
        **spec: Any) -> dict[str, Any]:
    """A bare pod that passes the restricted Pod Security level (every container locked down)."""
    def locked(c: dict[str, Any]) -> dict[str, Any]:
        return {"image": "registry.k8s.io/pause:3.10", "securityContext": RESTRICTED_CONTAINER, **c}
    body: dict[str, Any] = {"securityContext": RESTRICTED_POD, "containers": [locked(c) for c in containers], **spec}
    if init:
        body["initContainers"] = [locked(c) for c in init]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def resources(cpu: str, memory: str = "64Mi") -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def resource(snap: Snapshot, kind: str, name: str) -> Resource:
    found = snap.resource(kind, name)
    assert found is not None, f"{kind}/{name} is not in the snapshot"
    return found


@contextmanager
def learner_sandbox(tmp_path: Path, cluster: LocalCluster, lab_id: str, learner: str) -> Iterator[Sandbox]:
    settings = Settings(data_dir=tmp_path, kubeconfig=cluster.kubeconfig, admin_token=ADMIN_TOKEN,
                        labs_dir=REPO_ROOT / "labs", fleet_file=REPO_ROOT / "labs" / "fleet.yaml",
                        database_url=f"sqlite:///{tmp_path / 'labctl.db'}")
    app = create_app(settings, background=False)
    app.state.parts.runtime.sessions.clock = lambda: WEDNESDAY
    with TestClient(app) as http:
        r = http.post("/v1/sessions", json={"lab_id": lab_id, "learner_id": learner}, headers=HEADERS)
        assert r.status_code == 201, r.text
        session = r.json()
        try:
            kc = http.get(f"/v1/sessions/{session['id']}/kubeconfig", headers=HEADERS)
            assert kc.status_code == 200, kc.text
            path = tmp_path / "learner-kubeconfig.yaml"
            path.write_text(kc.text)
            home = tmp_path / "home"
            home.mkdir()
            yield Sandbox(app=app, client=http, session=session, kubeconfig=path, cluster=cluster, home=home)
        finally:
            http.delete(f"/v1/sessions/{session['id']}", headers=HEADERS)
