"""One SandboxProvider that dispatches each call to the provider its session's lab names (``lab.provider``).

The use cases hold one provider; a catalog mixing Kubernetes and AWS labs gets this router, built from a string
registry of factories (``{"kubernetes": ..., "aws": ...}``). A factory runs on the first call that needs it, so a
cloud SDK is imported only when a session of that cloud is touched. A lab whose provider has no factory is refused
with a message naming what is configured.

A backend that did not answer is not asked again for ``cooldown_s``: every call meanwhile fails at once with the same
:class:`ProviderUnavailable` (a 503 with ``Retry-After``), so an outage costs one timed-out request per cool-down, not
one per session a sweep meters or per command a caller sends. A ping is always sent, and an answer ends the cool-down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Literal, TypeVar

from labctl.grading.snapshot import Snapshot
from labctl.ports import (
    Credentials,
    Listing,
    ProviderError,
    ProviderUnavailable,
    SandboxProvider,
    SandboxSpec,
    Suspension,
    UsageByPod,
)

T = TypeVar("T")


class ProviderRouter:
    """Implements the port by dispatching on ``spec.lab.provider`` (the ``kubernetes`` provider then dispatches on
    ``spec.cluster``); a cool-down is per backend: a provider, or one cluster of the Kubernetes provider."""

    name = "sandbox"

    def __init__(self, factories: Mapping[str, Callable[[], SandboxProvider]], *, in_use: Iterable[str],
                 cooldown_s: float = 5.0) -> None:
        self._factories = dict(factories)
        self.cooldown_s = cooldown_s
        self._down: dict[str, tuple[float, str]] = {}  # provider name -> (monotonic time it may be asked again, why)
        self._built: dict[str, SandboxProvider] = {}
        self._lock = threading.Lock()
        self.in_use = sorted(set(in_use))
        unknown = [n for n in self.in_use if n not in self._factories]
        if unknown:
            raise ValueError(f"labs use provider(s) {', '.join(unknown)}, but only {', '.join(self._factories)} "
                             "can be built")

    def of(self, name: str) -> SandboxProvider:
        """The provider called ``name``, built on first use."""
        with self._lock:
            if name not in self._built:
                factory = self._factories.get(name)
                if factory is None:
                    raise ProviderError(f"no {name} provider is configured (configured: {', '.join(self._factories)})")
                self._built[name] = factory()
            return self._built[name]

    def _call(self, spec: SandboxSpec, fn: Callable[[SandboxProvider], T]) -> T:
        """``fn`` on the session's provider, unless that backend is cooling down after it did not answer."""
        name = spec.lab.provider
        backend = f"{name}/{spec.cluster}" if spec.cluster else name  # one cluster's outage cools only that one
        with self._lock:
            until, why = self._down.get(backend, (0.0, ""))
        left = until - time.monotonic()
        if left > 0:
            raise ProviderUnavailable(f"{why} (not asked again for another {left:.0f}s)")
        try:
            return fn(self.of(name))
        except ProviderUnavailable as exc:
            with self._lock:
                self._down[backend] = (time.monotonic() + self.cooldown_s, str(exc))
            raise

    def ping(self) -> str:
        """Every provider the catalog's labs use answers; their descriptions, joined (an answer ends a cool-down)."""
        answers = []
        for name in self.in_use:
            answers.append(f"{name}: {self.of(name).ping()}")
            with self._lock:
                self._down.pop(name, None)
        return "; ".join(answers)

    def sandboxes(self) -> Listing:
        """Every in-use provider's sandboxes; all or nothing (a partial list would make sandboxes look lost)."""
        found: set[str] = set()
        listed: set[str] = set()
        clusters: set[str] = set()
        for name in self.in_use:
            with self._lock:
                until, why = self._down.get(name, (0.0, ""))
            if until > time.monotonic():
                raise ProviderUnavailable(why)
            listing = self.of(name).sandboxes()
            found |= listing.sessions
            listed |= listing.providers
            clusters |= listing.clusters
        return Listing(sessions=frozenset(found), providers=frozenset(listed), clusters=frozenset(clusters))

    def enforce(self, spec: SandboxSpec, *, resource: str, action: Literal["stop", "terminate"]) -> None:
        self._call(spec, lambda p: p.enforce(spec, resource=resource, action=action))

    def provision(self, spec: SandboxSpec) -> None:
        self._call(spec, lambda p: p.provision(spec))

    def hand_over(self, spec: SandboxSpec, *, previous: SandboxSpec) -> None:
        self._call(spec, lambda p: p.hand_over(spec, previous=previous))

    def credentials(self, spec: SandboxSpec) -> Credentials:
        return self._call(spec, lambda p: p.credentials(spec))

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        self._call(spec, lambda p: p.destroy(spec, wait_s=wait_s))

    def suspend(self, spec: SandboxSpec) -> Suspension:
        return self._call(spec, lambda p: p.suspend(spec))

    def resume(self, spec: SandboxSpec, record: Suspension) -> None:
        self._call(spec, lambda p: p.resume(spec, record))

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        self._call(spec, lambda p: p.freeze(spec, frozen=frozen))

    def snapshot(self, spec: SandboxSpec, *, now: datetime, interim: bool = False) -> Snapshot:
        return self._call(spec, lambda p: p.snapshot(spec, now=now, interim=interim))

    def write_usage(self, spec: SandboxSpec, usage: UsageByPod) -> None:
        self._call(spec, lambda p: p.write_usage(spec, usage))
