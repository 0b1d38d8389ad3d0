"""API read throughput of ``labctl serve``: a page of sessions, one session, and the health check beside them.

    .venv/bin/python -m bench.api_reads [--sessions 500] [--seconds 5] [--clients 1,8]

A real ``labctl serve`` (uvicorn, SQLite in a temporary data directory, background sweeps made rare, a cluster
address that refuses connections: reads touch only the store) with ``--sessions`` terminated sessions written into
its store first. ``--clients`` threads, each with its own keep-alive connection, call one URL for ``--seconds``; each
line gives requests/s, the median and the 95th percentile of the answer time. The baselines in the same run:
``/healthz`` (the cheapest route: the service's own overhead) and the whole list in one answer (``limit=1000``, what
``GET /v1/sessions`` answered before it was paged). ``--clients 1,8`` (the default) runs every URL with one client,
then with eight: one interpreter serves them all, so the one-client figures are what a request costs and the
eight-client ones how it queues. Bounded: at most 5,000 sessions, 30 s a URL, 32 clients.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from labctl.store.db import open_store
from labctl.store.models import SandboxSession

TOKEN = "bench-admin-token-0123456789abcdef0123456789"  # noqa: S105 - a throwaway server's token
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def seed(data_dir: Path, sessions: int) -> None:
    store = open_store(f"sqlite:///{data_dir / 'labctl.db'}")
    store.migrate()
    with store.session() as db:
        for i in range(sessions):
            db.add(SandboxSession(id=f"s-bench-{i:05d}", lab_id="tag-for-showback", learner_id=f"learner-{i % 97}",
                                  provider="kubernetes", state="terminated", budget_usd=5,
                                  created_at=T0 + timedelta(seconds=i)))
    store.engine.dispose()


def load(url: str, *, seconds: float, clients: int) -> tuple[float, float, float]:
    """(requests/s, median s, p95 s) of ``clients`` threads calling ``url`` for ``seconds``."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    stop_at = time.monotonic() + seconds

    def work(mine: list[float]) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                r = c.get(url)
                mine.append(time.perf_counter() - started)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=work, args=(s,)) for s in samples]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    every = sorted(x for s in samples for x in s)
    return len(every) / elapsed, statistics.median(every), every[int(len(every) * 0.95) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", default="1,8", help="comma-separated numbers of clients, each run in turn")
    args = parser.parse_args()
    sessions, seconds = min(args.sessions, 5000), min(args.seconds, 30)
    counts = [min(int(c), 32) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        data = Path(tmp)
        seed(data, sessions)
        kubeconfig = data / "dead-kubeconfig.yaml"
        kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "
                              "'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, "
                              "context: {cluster: c, user: u}}]\ncurrent-context: x\n")
        port = free_port()
        env = {**os.environ, "LABCTL_DATA_DIR": str(data), "LABCTL_KUBECONFIG": str(kubeconfig),
               "LABCTL_ADMIN_TOKEN": TOKEN, "LABCTL_SWEEP_INTERVAL_S": "3600"}
        labctl = str(Path(sys.executable).parent / "labctl")
        with (data / "serve.log").open("w") as log:
            proc = subprocess.Popen([labctl, "serve", "--port", str(port)], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    print((data / "serve.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.2)
            urls = [("GET /healthz (baseline)", "/healthz"),
                    ("GET /v1/sessions/{id}", f"/v1/sessions/s-bench-{sessions // 2:05d}"),
                    ("GET /v1/sessions?limit=100 (a page)", "/v1/sessions?limit=100"),
                    (f"GET /v1/sessions?limit=1000 (all {sessions}: baseline)", "/v1/sessions?limit=1000")]
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
                  f"{sessions} sessions in SQLite, {seconds:.0f} s a URL")
            for clients in counts:
                print(f"  {f'{clients} client(s)':52}{'req/s':>8}{'median ms':>11}{'p95 ms':>9}")
                for title, path in urls:
                    rate, median, p95 = load(base + path, seconds=seconds, clients=clients)
                    print(f"  {title:52}{rate:8.0f}{median * 1000:11.1f}{p95 * 1000:9.1f}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
