"""Webhook delivery throughput: N events through the durable outbox to a local receiver, against plain POST loops.

    .venv/bin/python -m bench.webhook_throughput [--events 2000] [--sessions 0] [--concurrency 4] [--database-url URL]

The outbox run emits N events (one transaction per 500), then times :class:`labctl.outbox.dispatcher.Dispatcher`
sweeps until every delivery is recorded as delivered: claim, sign (Standard Webhooks, HMAC-SHA256), POST, record. The
baselines POST the same bodies with one ``httpx.Client`` and no outbox: one request at a time, and ``--concurrency``
at a time (the dispatcher's per-endpoint cap). The receiver is a keep-alive HTTP server on 127.0.0.1 that answers 204.
With ``--sessions K`` the events belong to K sessions, so per-session ordering limits parallelism to K.
Bounded (at most 50,000 events) and loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from labctl.outbox.dispatcher import Dispatcher
from labctl.outbox.endpoints import Webhooks
from labctl.outbox.events import body, emit
from labctl.outbox.targets import TargetPolicy
from labctl.store.db import Store, open_store
from labctl.store.webhook_models import OutboxEvent, WebhookDelivery

MAX_EVENTS = 50_000
LOOPBACK_RECEIVER = TargetPolicy.from_entries(["127.0.0.1/32"])  # the receiver is on loopback


class _Counter(ThreadingHTTPServer):
    daemon_threads = True
    received = 0
    lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        server: Any = self.server
        with server.lock:
            server.received += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _receiver() -> tuple[_Counter, str]:
    server = _Counter(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


def _emit(store: Store, n: int, sessions: int) -> list[str]:
    now = datetime.now(UTC)
    for start in range(0, n, 500):
        with store.session() as db:
            for i in range(start, min(n, start + 500)):
                session = f"s-{i % sessions}" if sessions else None
                emit(db, type="budget.threshold_crossed", session_id=session, now=now,
                     data={"session_id": session, "percent": 50, "accrued_usd": 2.5, "n": i})
    with store.session() as db:
        return [body(p) for p in db.scalars(select(OutboxEvent.payload).order_by(OutboxEvent.id)).all()]


def _outbox(store: Store, concurrency: int) -> float:
    with Dispatcher(store, targets=LOOPBACK_RECEIVER, per_endpoint_concurrency=concurrency) as dispatcher:
        started = time.perf_counter()
        while True:
            if not dispatcher.run_once():
                with store.session() as db:
                    left = db.scalar(select(func.count()).select_from(WebhookDelivery)
                                     .where(WebhookDelivery.state != "delivered"))
                if not left:
                    break
        return time.perf_counter() - started


def _plain(url: str, bodies: list[str], concurrency: int) -> float:
    with httpx.Client(limits=httpx.Limits(max_connections=concurrency)) as http:
        def post(text: str) -> None:
            http.post(url, content=text.encode(), headers={"content-type": "application/json"}).raise_for_status()

        started = time.perf_counter()
        if concurrency == 1:
            for text in bodies:
                post(text)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(post, bodies))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=0, help="spread events over K sessions (0: no session)")
    parser.add_argument("--concurrency", type=int, default=4, help="the dispatcher's per-endpoint cap")
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary directory")
    args = parser.parse_args()
    n = max(1, min(args.events, MAX_EVENTS))
    server, url = _receiver()
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        store = open_store(args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.migrate()
        Webhooks(store, targets=LOOPBACK_RECEIVER).create(url=url, events="*", description="benchmark receiver")
        started = time.perf_counter()
        bodies = _emit(store, n, args.sessions)
        emitted_s = time.perf_counter() - started
        outbox_s = _outbox(store, args.concurrency)
        delivered = server.received
        sequential_s = _plain(url, bodies, 1)
        concurrent_s = _plain(url, bodies, args.concurrency)
        store.engine.dispose()
    server.shutdown()
    rows = [
        ("emit into the outbox (no HTTP)", emitted_s),
        (f"outbox dispatcher, cap {args.concurrency}/endpoint", outbox_s),
        ("plain httpx POST loop, 1 at a time", sequential_s),
        (f"plain httpx POSTs, {args.concurrency} at a time", concurrent_s),
    ]
    print(f"{n} events, {args.sessions or 'no'} sessions, store {store.engine.dialect.name}, receiver {url}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")
    print(f"{'run':44} {'seconds':>9} {'per second':>11}")
    for name, seconds in rows:
        print(f"{name:44} {seconds:9.2f} {n / seconds:11.0f}")
    assert delivered == n, f"the receiver got {delivered} of {n}"
    print(json.dumps({"events": n, "outbox_per_s": round(n / outbox_s), "plain_sequential_per_s":
                      round(n / sequential_s), "plain_concurrent_per_s": round(n / concurrent_s)}))


if __name__ == "__main__":
    main()
