"""What ``make run`` does for the gcp labs: the FAKE Compute API (``python -m tests.support.gce_fake``) as its own
process on loopback, and ``labctl serve`` pointed at it, serving the shipped ``gcp-spot-and-labels`` lab: readiness
per provider, a session started with its declared starter in the fake, and stopped with nothing left."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT
from tests.support.postgres import free_port
from tests.support.server import Server

PROJECT = "labctl-local"


def _instances(endpoint: str) -> list[dict[str, object]]:
    r = httpx.get(f"{endpoint}/compute/v1/projects/{PROJECT}/aggregated/instances", timeout=10)
    r.raise_for_status()
    return [i for scoped in r.json().get("items", {}).values() for i in scoped.get("instances", [])]


def test_make_runs_gcp_lab_is_served_against_the_fake_process(local_cluster: LocalCluster, tmp_path: Path) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    fake = subprocess.Popen([sys.executable, "-m", "tests.support.gce_fake", "--port", str(port)], cwd=REPO_ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{endpoint}/compute/v1/projects/{PROJECT}/aggregated/instances", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and fake.poll() is None, "the fake did not start"
                time.sleep(0.1)
        env = {"LABCTL_PROVIDERS": "kubernetes,gcp", "LABCTL_GCP_ENDPOINT_URL": endpoint,
               "LABCTL_GCP_PROJECT": PROJECT}
        srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig, extra_env=env).start()
        try:
            with srv.client() as http:
                ready = http.get("/readyz").json()
                assert ready["status"] == "ready" and {"store", "cluster", "gcp"} <= set(ready["checks"])
                started = http.post("/v1/sessions", json={"lab_id": "gcp-spot-and-labels", "learner_id": "ada"})
                assert started.status_code == 201, started.text
                session = started.json()
                assert session["state"] == "ready" and session["provider"] == "gcp"
                made = [i for i in _instances(endpoint)
                        if str(i["name"]).startswith("trainer-a100-")]  # the lab's declared starter
                assert len(made) == 1 and str(made[0]["machineType"]).endswith("/a2-highgpu-1g")
                assert http.delete(f"/v1/sessions/{session['id']}").status_code == 202
            srv.stop_all_sessions()
            assert _instances(endpoint) == []
        finally:
            srv.stop()
    finally:
        fake.terminate()
        fake.wait(timeout=20)
    assert fake.returncode == 0
    assert "FAKE Compute Engine API at" in (fake.stderr.read() if fake.stderr else "")
