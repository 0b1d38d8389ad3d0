"""Polling for conditions the real cluster reaches asynchronously."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException


def eventually(fn: Callable[[], Any], *, timeout: float = 60, interval: float = 0.5) -> Any:
    """Call ``fn`` until it returns a truthy value or stops raising; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (AssertionError, ApiException) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")
