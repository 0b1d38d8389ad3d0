"""`labctl serve` as a user runs it: it prints where it listens and the admin token, answers ready, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from labctl.localcluster.cluster import LocalCluster
from tests.support.postgres import free_port

LABCTL = str(Path(sys.executable).parent / "labctl")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_serve_answers_ready_and_stops_without_leftovers(local_cluster: LocalCluster, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LABCTL_DATA_DIR": str(tmp_path), "LABCTL_KUBECONFIG": str(local_cluster.kubeconfig)}
    env.pop("LABCTL_ADMIN_TOKEN", None)
    proc = subprocess.Popen([LABCTL, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                status = r.status_code
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert status == 200, f"not ready (last status {status}); exit {proc.poll()}"
        children = _children(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C on `make run` sends
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    token = (tmp_path / "admin-token").read_text().strip()
    assert f"labctl listening on http://127.0.0.1:{port}" in err
    assert f"admin token: {token}" in err
    assert (tmp_path / "admin-token").stat().st_mode & 0o777 == 0o600
    for child in children:
        assert not Path(f"/proc/{child}").exists()


def test_serve_refuses_production_without_secrets(tmp_path: Path) -> None:
    env = {**os.environ, "LABCTL_ENV": "production", "LABCTL_DATA_DIR": str(tmp_path)}
    env.pop("LABCTL_ADMIN_TOKEN", None)
    proc = subprocess.run([LABCTL, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "LABCTL_ADMIN_TOKEN must be set" in proc.stderr
    assert "Traceback" not in proc.stderr
