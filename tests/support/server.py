"""A real `labctl serve` process for tests: its own data dir and port, the local cluster, a known admin token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.postgres import free_port

LABCTL = str(Path(sys.executable).parent / "labctl")
ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"


@dataclass
class Server:
    data_dir: Path
    kubeconfig: Path | None  # None: the clusters come from extra_env (LABCTL_CLUSTERS)
    extra_env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # more `labctl serve` options, e.g. --local-aws
    port: int = field(default_factory=free_port)
    ready_timeout_s: float = 60.0  # several replicas starting at once on a busy machine need longer
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        # Sweeps run once at start (reconcile) and then rarely: tests of timers drive them with a fake clock.
        cluster = {"LABCTL_KUBECONFIG": str(self.kubeconfig)} if self.kubeconfig is not None else {}
        return {**os.environ, "LABCTL_DATA_DIR": str(self.data_dir), **cluster,
                "LABCTL_ADMIN_TOKEN": ADMIN_TOKEN, "LABCTL_SWEEP_INTERVAL_S": "3600", **self.extra_env}

    def start(self, *, wait_ready: bool = True) -> Server:
        log = (self.data_dir / "serve.log").open("a")
        self.proc = subprocess.Popen([LABCTL, "serve", "--port", str(self.port), *self.args], env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"labctl serve exited with {self.proc.returncode}; see {self.data_dir}/serve.log")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=5)
                if r.status_code == 200 or (r.status_code == 503 and not wait_ready):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()  # a server that never became ready must not outlive the fixture that failed on it
        raise RuntimeError(f"labctl serve did not become ready in {self.ready_timeout_s:g}s; see "
                           f"{self.data_dir}/serve.log")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash or an OOM kill."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def stop_all_sessions(self, timeout_s: float = 300) -> None:
        """Stop every live session this server made, so the shared cluster does not fill up across tests. A stop
        whose namespace is slow to go is finished by the server's reconcile job (every 30 s)."""
        with self.client() as c:
            for session in every_session(c):
                if session["state"] not in ("terminated", "failed", "terminating"):
                    c.delete(f"/v1/sessions/{session['id']}")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                left = [s["id"] for s in every_session(c) if s["state"] not in ("terminated", "failed")]
                if not left:
                    return
                time.sleep(1)
            why = {sid: [e["detail"] for e in c.get(f"/v1/sessions/{sid}/events").json()
                         if e["kind"] == "cleanup_failed"][-1:] for sid in left}
        raise RuntimeError(f"sessions still not terminated after {timeout_s:.0f}s: {why}")

    def close(self, *, timeout_s: float = 300) -> None:
        """The end of a fixture: stop every live session this server made (if it still runs), then the server."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.stop_all_sessions(timeout_s=timeout_s)
        finally:
            self.stop()

    def client(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)


def every_session(c: httpx.Client) -> list[dict[str, Any]]:
    """Every session the client's token may see, following the pages' ``Link`` headers."""
    rows: list[dict[str, Any]] = []
    url: str | None = "/v1/sessions?limit=1000"
    while url is not None:
        response = c.get(url)
        response.raise_for_status()
        rows.extend(response.json())
        url = response.links.get("next", {}).get("url")
    return rows
