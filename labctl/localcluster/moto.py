"""A local stand-in for AWS: moto's server on loopback, for development (``labctl serve --local-aws``) and tests.

moto (a development dependency) emulates EC2, IAM and STS in one HTTP server that boto3 reaches by
``endpoint_url``; it accepts any key pair, so :data:`TEST_KEYS` (moto's documented test values, not credentials of
any account) are what labctl's principal uses against it, and real credentials on the machine are never sent
anywhere. moto checks actions but not IAM condition keys: it shows what the learner can do, not what the policy
would refuse on AWS.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEST_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def executable() -> Path:
    """``moto_server`` beside the running Python (the virtualenv's, from the dev extra)."""
    return Path(sys.executable).with_name("moto_server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(*, port: int | None = None, timeout_s: float = 30) -> Iterator[str]:
    """Start moto's server on 127.0.0.1 (a free port unless ``port``), yield its URL once it answers, stop it."""
    exe = executable()
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: moto comes with labctl's dev extra (make venv installs it)")
    port = port or free_port()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, timeout_s=timeout_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {err[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 (the loopback URL made here)
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {url} within {timeout_s:g} s")
