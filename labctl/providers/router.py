"""One SandboxProvider that dispatches each call to the provider its session's lab names (``lab.provider``).

The use cases hold one provider; a catalog mixing Kubernetes and AWS labs gets this router, built from a string
registry of factories (``{"kubernetes": ..., "aws": ...}``). A factory runs on the first call that needs it, so a
cloud SDK is imported only when a session of that cloud is touched. A lab whose provider has no factory is refused
with a message naming what is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Literal

from labctl.grading.snapshot import Snapshot
from labctl.ports import Credentials, ProviderError, SandboxProvider, SandboxSpec, Suspension, UsageByPod


class ProviderRouter:
    """Implements the port by dispatching on ``spec.lab.provider``."""

    name = "sandbox"

    def __init__(self, factories: Mapping[str, Callable[[], SandboxProvider]], *, in_use: Iterable[str]) -> None:
        self._factories = dict(factories)
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

    def _for(self, spec: SandboxSpec) -> SandboxProvider:
        return self.of(spec.lab.provider)

    def ping(self) -> str:
        """Every provider the catalog's labs use answers; their descriptions, joined."""
        return "; ".join(f"{name}: {self.of(name).ping()}" for name in self.in_use)

    def enforce(self, spec: SandboxSpec, *, resource: str, action: Literal["stop", "terminate"]) -> None:
        self._for(spec).enforce(spec, resource=resource, action=action)

    def provision(self, spec: SandboxSpec) -> None:
        self._for(spec).provision(spec)

    def credentials(self, spec: SandboxSpec) -> Credentials:
        return self._for(spec).credentials(spec)

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        self._for(spec).destroy(spec, wait_s=wait_s)

    def suspend(self, spec: SandboxSpec) -> Suspension:
        return self._for(spec).suspend(spec)

    def resume(self, spec: SandboxSpec, record: Suspension) -> None:
        self._for(spec).resume(spec, record)

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        self._for(spec).freeze(spec, frozen=frozen)

    def snapshot(self, spec: SandboxSpec, *, now: datetime) -> Snapshot:
        return self._for(spec).snapshot(spec, now=now)

    def write_usage(self, spec: SandboxSpec, usage: UsageByPod) -> None:
        self._for(spec).write_usage(spec, usage)
