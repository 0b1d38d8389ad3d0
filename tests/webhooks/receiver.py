"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that verifies with the ``standardwebhooks`` package.

It never uses labctl's code to check a message: ``Webhook(secret).verify(body, headers)`` from the reference package
decides, and a message that fails is answered 401 and recorded as unverified. Every arrival is kept (duplicates
included); :meth:`Receiver.unique`, the first accepted (2xx) arrival of each id, is what a receiver that
de-duplicates on ``webhook-id`` would act on. ``stop()``
closes the listening socket, so connections are refused until ``start()`` listens on the same port again.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Arrival:
    msg_id: str
    body: bytes
    headers: dict[str, str]
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    status: Callable[[Arrival], int] | None = None  # answer for a verified arrival; default 200
    delay_s: float = 0.0
    keep_alive: bool = False
    verify: bool = True
    arrivals: list[Arrival] = field(default_factory=list)
    accepted: list[Arrival] = field(default_factory=list)  # the arrivals answered 2xx
    port: int = 0
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if receiver.keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                code = receiver._handle(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)

    def refuses(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) != 0

    def _handle(self, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            verified = self._verified(body, headers)
            arrival = Arrival(msg_id=headers.get("webhook-id", ""), body=body, headers=headers, verified=verified)
            with self._lock:
                self.arrivals.append(arrival)
            if not verified:
                return 401
            code = self.status(arrival) if self.status else 200
            if 200 <= code < 300:
                with self._lock:
                    self.accepted.append(arrival)
            return code
        finally:
            with self._lock:
                self._in_flight -= 1

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        if not self.verify:
            return True
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def unique(self) -> list[Arrival]:
        """First accepted arrival of each ``webhook-id``, in order (what a de-duplicating receiver acts on)."""
        seen: set[str] = set()
        out = []
        with self._lock:
            for a in self.accepted:
                if a.msg_id not in seen:
                    seen.add(a.msg_id)
                    out.append(a)
        return out
