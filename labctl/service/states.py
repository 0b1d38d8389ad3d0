"""The session state machine, as data: which transitions are allowed, and which states are live.

``provisioning -> ready <-> suspended -> submitted -> graded -> terminating -> terminated``, ``failed`` from
provisioning, any live state -> ``terminating`` on stop. ``ready -> provisioning`` is a reset (the sandbox is made
again from scratch). A warm pool's sandbox is made ``provisioning -> pooled`` for no learner; a start claims it
(``pooled -> provisioning``, now the learner's, converged to the learner and ``ready``), a drain stops it.
"""

from __future__ import annotations

from labctl.errors import Conflict

LIVE = frozenset({"provisioning", "ready", "suspended", "submitted", "graded"})
FINAL = frozenset({"terminated", "failed"})
POOLED = "pooled"  # provisioned, unclaimed: of a warm pool, of no learner

ALLOWED: dict[str, frozenset[str]] = {
    "provisioning": frozenset({"ready", "failed", "terminating", POOLED}),
    POOLED: frozenset({"provisioning", "terminating"}),
    "ready": frozenset({"suspended", "submitted", "terminating", "provisioning"}),
    "suspended": frozenset({"ready", "submitted", "terminating", "provisioning"}),
    "submitted": frozenset({"graded", "terminating"}),
    "graded": frozenset({"terminating", "ready"}),
    "terminating": frozenset({"terminated"}),
    "terminated": frozenset(),
    "failed": frozenset(),
}


def check(current: str, target: str) -> None:
    """Raise Conflict with a readable reason when ``current -> target`` is not allowed."""
    if target not in ALLOWED.get(current, frozenset()):
        allowed = ", ".join(sorted(ALLOWED.get(current, frozenset()))) or "nothing (it is over)"
        raise Conflict(f"a session that is {current} cannot become {target}; from {current} it can become: {allowed}")
