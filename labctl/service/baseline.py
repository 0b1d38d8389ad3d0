"""The starter's baseline: its burn rate and what it would serve over the grading window, taken before anyone else
can reach the sandbox.

Graders compare the learner's sandbox with the starter (``burn-rate``: at most a share of the starter's burn rate;
the receipt and ``unit-cost``: the starter's served share and cost per 1,000 requests). Those figures must describe
the sandbox as labctl made it, so they are taken while provisioning, after labctl applied the lab's objects and
before the session turns ``ready`` (or ``pooled``): no learner credential exists yet, so nothing the learner does can
move them (taken at the first sweep instead, a learner who scaled the starter up in the seconds after the start made
every later saving look larger).

The objects are applied when provisioning returns, but their pods come a moment later (the workload controllers make
them, the scheduler binds them). :func:`unsettled` says what is still missing, so provisioning waits for the starter
to settle, bounded (a full cluster leaves pods Pending), and logs when it took the baseline of one that did not.
Pure: snapshots in, lists of text out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from labctl.grading.snapshot import Resource, ServiceFigures, Snapshot

REPLICATED = ("ReplicaSet", "StatefulSet")  # the controllers that own their pods directly, with a replica count


def unsettled(snapshot: Snapshot) -> list[str]:
    """What keeps the starter from its shape: a Deployment without its ReplicaSet yet, a ReplicaSet or StatefulSet
    with fewer pods bound to a node than its replicas, a Job with fewer than it runs at once (each pod counted for
    the workload that owns it directly: its ``owner``). Empty: settled (every pod it starts with holds its node)."""
    bound = Counter(str(pod.owner) for pod in snapshot.of_kind("Pod") if pod.node and pod.owner)
    owned = {str(r.owner) for r in snapshot.of_kind("ReplicaSet") if r.owner is not None}
    missing = [f"Deployment/{d.name}: no ReplicaSet yet" for d in snapshot.of_kind("Deployment")
               if (d.replicas or 0) > 0 and f"Deployment/{d.name}" not in owned]
    wanted = [(w, w.replicas or 0) for w in snapshot.of_kind(*REPLICATED)]
    wanted += [(job, _active(job)) for job in snapshot.of_kind("Job")]
    for workload, want in wanted:
        have = bound[f"{workload.kind}/{workload.name}"]
        if have < want:
            missing.append(f"{workload.kind}/{workload.name}: {have} of {want} pods on a node")
    return missing


def _active(job: Resource) -> int:
    """The pods a Job runs at once when it starts: its parallelism (1 by default), at most its completions; none
    while suspended."""
    if job.suspend:
        return 0
    parallelism = 1 if job.parallelism is None else job.parallelism
    return parallelism if job.completions is None else min(parallelism, job.completions)


@dataclass(frozen=True)
class Baseline:
    """The starter's figures as provisioning took them (the session row keeps them for the graders and receipt)."""

    burn_rate_usd_per_hour: Decimal  # at the ledger's precision
    service: list[ServiceFigures] | None  # each declared workload over the grading window; None: the lab has no demand
    unsettled: tuple[str, ...] = ()  # what was still missing when the wait ended (empty: the starter had settled)
