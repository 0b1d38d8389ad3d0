"""Readiness: run named probes and decide whether the service can take work.

A probe is a callable that returns a short detail (e.g. a version) or raises with a reason. The decision is pure:
ready only if every probe passed, except that of a group of interchangeable backends (``any_of``: the Kubernetes
clusters sandboxes are placed on) one passing is enough: while one cluster answers, starts go there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

Probe = Callable[[], str | None]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, CheckResult] = field(default_factory=dict)
    any_of: frozenset[str] = frozenset()  # checks of which one passing is enough

    @property
    def ready(self) -> bool:
        group = [c.ok for name, c in self.checks.items() if name in self.any_of]
        return bool(self.checks) and all(c.ok for name, c in self.checks.items() if name not in self.any_of) \
            and (not group or any(group))


def check(probes: Mapping[str, Probe], *, any_of: Collection[str] = ()) -> Readiness:
    """Run every probe (all of them, so the answer names each failing dependency)."""
    results: dict[str, CheckResult] = {}
    for name, probe in probes.items():
        started = time.monotonic()
        try:
            detail = probe() or "ok"
            ok = True
        except Exception as exc:  # a probe's failure is its answer, never a crash of the endpoint
            detail, ok = str(exc) or type(exc).__name__, False
        results[name] = CheckResult(ok=ok, detail=detail, seconds=round(time.monotonic() - started, 4))
    return Readiness(results, any_of=frozenset(any_of))
