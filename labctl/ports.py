"""Ports: what the use cases need from the outside world, as interfaces the adapters implement.

A :class:`SandboxProvider` makes and unmakes one learner's sandbox (a Kubernetes namespace, an AWS or GCP sandbox).
Every operation is idempotent and converges, so a retried or resumed start finishes the job instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from labctl.catalog.models import Lab
from labctl.grading.snapshot import Snapshot


class ProviderError(RuntimeError):
    """The provider could not do what was asked; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProviderUnavailable(ProviderError):
    """The cloud or cluster did not answer (network, apiserver down): nothing can be done right now."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a provider needs to know to make one session's sandbox."""

    session_id: str
    lab: Lab
    learner_id: str
    namespace: str
    expires_at: datetime
    budget_usd: float
    started_at: datetime
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Credentials:
    """What the learner uses to reach the sandbox: a kubeconfig, or cloud credentials."""

    kind: str  # "kubeconfig" | "aws" | "gcp"
    content: str
    expires_at: datetime


class SandboxProvider(Protocol):
    name: str

    def provision(self, spec: SandboxSpec) -> None:
        """Create or converge the sandbox; returns when the learner can use it."""

    def credentials(self, spec: SandboxSpec) -> Credentials:
        """Fresh credentials for the learner that stop working when the session expires."""

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        """Remove everything the sandbox holds; returns when it is gone (or raises after ``wait_s``)."""

    def ping(self) -> str:
        """A short description of the backend if it answers; raises :class:`ProviderUnavailable` otherwise."""

    def suspend(self, spec: SandboxSpec) -> dict[str, int]:
        """Stop everything that costs money but keep the learner's work; nothing new may start."""

    def resume(self, spec: SandboxSpec) -> dict[str, int]:
        """Undo :meth:`suspend` exactly."""

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        """Make the learner's access read-only (a submission), or writable again."""

    def snapshot(self, spec: SandboxSpec, *, now: datetime) -> Snapshot:
        """The sandbox's inventory at ``now``, unpriced (the meter prices it): see docs/SNAPSHOT.md."""
