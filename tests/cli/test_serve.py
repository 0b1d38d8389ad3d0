"""`labctl serve` as a user runs it: it prints where it listens and the admin token it generated (never one it was
given), answers ready, stops cleanly, and refuses weak secrets outside development."""

from __future__ import annotations

import base64
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


def test_serve_never_prints_a_token_it_did_not_generate(local_cluster: LocalCluster, tmp_path: Path) -> None:
    """A token from LABCTL_ADMIN_TOKEN, or kept from an earlier run, is named by where it comes from, not shown."""
    set_token = "operator-chosen-admin-token-0123456789abcdef"
    for env_token in (set_token, None):
        port = free_port()
        env = {**os.environ, "LABCTL_DATA_DIR": str(tmp_path), "LABCTL_KUBECONFIG": str(local_cluster.kubeconfig)}
        env.pop("LABCTL_ADMIN_TOKEN", None)
        if env_token:
            env["LABCTL_ADMIN_TOKEN"] = env_token
        else:
            (tmp_path / "admin-token").write_text("kept-from-an-earlier-run-0123456789abcdef\n")
        proc = subprocess.Popen([LABCTL, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    token = env_token or "kept-from-an-earlier-run-0123456789abcdef"
                    if httpx.get(f"http://127.0.0.1:{port}/v1/labs", timeout=5,
                                 headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert set_token not in out + err and "kept-from-an-earlier-run" not in out + err
        expected = "admin token: from LABCTL_ADMIN_TOKEN" if env_token else "admin token: kept in"
        assert expected in err, err


def test_serve_refuses_production_without_secrets(tmp_path: Path) -> None:
    env = {**os.environ, "LABCTL_ENV": "production", "LABCTL_DATA_DIR": str(tmp_path)}
    env.pop("LABCTL_ADMIN_TOKEN", None)
    proc = subprocess.run([LABCTL, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "LABCTL_ADMIN_TOKEN must be set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_refuses_a_weak_exam_secret_outside_development(tmp_path: Path) -> None:
    env = {**os.environ, "LABCTL_ENV": "production", "LABCTL_DATA_DIR": str(tmp_path),
           "LABCTL_ADMIN_TOKEN": "production-admin-token-0123456789abcdef", "LABCTL_KUBECONFIG": str(tmp_path / "k"),
           "LABCTL_EXAM_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"sixteen bytes!!!").decode()}
    proc = subprocess.run([LABCTL, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "LABCTL_EXAM_WEBHOOK_SECRET is too short: 16 random bytes, at least 24" in proc.stderr
    assert "Traceback" not in proc.stderr and "sixteen" not in proc.stderr
