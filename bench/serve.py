"""A real ``labctl serve`` for the benchmarks: a free loopback port, a data dir of its own, its log in that dir.

The benchmarks drive the service as a client would (over HTTP), so each run starts the real process with the settings
it measures (given as environment), waits until ``/readyz`` answers 200, and stops it afterwards. A server that exits
or never becomes ready is stopped and named with the end of its log. :class:`HealthProbe` times ``/healthz`` from a
process of its own while a benchmark loads the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LABCTL = str(Path(sys.executable).parent / "labctl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServer:
    """``labctl serve`` with ``env`` over this process's environment, ready when constructed."""

    def __init__(self, directory: Path, env: Mapping[str, str], *, ready_timeout_s: float = 300) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        self.log = (directory / "serve.log").open("a")
        self.proc = subprocess.Popen([LABCTL, "serve", "--port", str(self.port)],
                                     env={**os.environ, "LABCTL_DATA_DIR": str(directory), **env},
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + ready_timeout_s  # a loaded machine starts it slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._failed(f"exited ({self.proc.returncode})")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self._failed(f"did not become ready in {ready_timeout_s:g} s")

    def _failed(self, what: str) -> None:
        self.stop()
        tail = "".join((self.directory / "serve.log").read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"labctl serve {what}; the end of its log:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# The prober's own process: timed in the benchmark's process, beside its client threads and its garbage collections,
# a probe would wait for the benchmark's interpreter lock and count that as the server's.
_PROBE = """
import sys, threading, time, httpx
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
with httpx.Client(base_url=sys.argv[1], timeout=120) as c:
    while not done.is_set():
        t = time.perf_counter()
        try:
            code = c.get("/healthz").status_code
        except httpx.TransportError:
            code = 0
        print(f"{code} {(time.perf_counter() - t) * 1000:.1f}", flush=True)
        done.wait(float(sys.argv[2]))
"""


@dataclass
class HealthProbe:
    """``GET /healthz`` every ``every_s`` on a connection of its own, from its own process, while the ``with`` block
    runs: each call's milliseconds and the count of each status (0: no answer)."""

    url: str
    every_s: float = 0.05
    samples: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> HealthProbe:
        self._proc = subprocess.Popen([sys.executable, "-c", _PROBE, self.url, str(self.every_s)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._proc is not None
        out, _err = self._proc.communicate("", timeout=300)
        for line in out.split("\n"):
            if line.strip():
                code, ms = line.split()
                self.statuses[int(code)] = self.statuses.get(int(code), 0) + 1
                self.samples.append(float(ms))
