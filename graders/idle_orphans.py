#!/usr/bin/env python3
"""Idle and orphans: what bills without doing anything is switched off, and what is used is kept.

Three checks, each item one point (so the score is the share of items in order):

- ``idle-workloads``: every workload in ``idle_workloads`` is scaled to 0 replicas (a CronJob: suspended) or
  deleted; and no other workload runs only idle pods (running pods whose measured CPU use is under
  ``idle_cpu_millicores``, GPUs idle too when measured; bare pods count on their own).
- ``orphans``: every resource in ``orphans`` is deleted, or is no longer an orphan (a claim a pod mounts, a Service
  that is no longer a LoadBalancer or has endpoints); and no other orphan of ``orphan_kinds`` is left:
  ``PersistentVolumeClaim`` (mounted by no pod), ``Service/LoadBalancer`` (no ready endpoints, or, when unknown, a
  selector that matches no running pod), ``Service`` (any Service without endpoints), ``Volume`` (a cloud disk or
  EBS volume attached to no instance: it bills by the GB-month for nothing).
- ``kept-workloads`` (only with ``must_keep``): each listed workload still exists with at least ``min_replicas``.

``checks`` picks which of ``idle-workloads`` and ``orphans`` are reported (default both: a cloud sandbox without
pods reports only ``orphans``, so a check with nothing to judge gives no free points). Evidence names each offending
resource with its figures; feedback names them for the learner.

Parameters (YAML, as in lab.yaml)::

    params:
      idle_cpu_millicores: 5                      # default 5
      idle_workloads: [Deployment/legacy-dashboard]
      orphans: [PersistentVolumeClaim/scratch-data, Service/old-demo]
      orphan_kinds: [PersistentVolumeClaim, Service/LoadBalancer]    # default these two; also Service, Volume
      must_keep:
        Deployment/orders-worker: {min_replicas: 2}
      checks: [idle-workloads, orphans]           # default both
"""

from __future__ import annotations

from _kit import (
    WORKLOAD_KINDS,
    Json,
    ParamError,
    check,
    find,
    is_idle_pod,
    is_load_balancer,
    is_unmounted_claim,
    load_balancer_without_endpoints,
    main,
    names,
    of_kind,
    param_map,
    param_number,
    param_refs,
    param_strings,
    pod_cpu_usage,
    pods_of,
    problem,
    ref,
    split_ref,
)

ORPHAN_KINDS = ("PersistentVolumeClaim", "Service/LoadBalancer", "Service", "Volume")
DEFAULT_ORPHAN_KINDS = ("PersistentVolumeClaim", "Service/LoadBalancer")
REPORTED = ("idle-workloads", "orphans")


def grade(snapshot: Json, params: Json) -> list[Json]:
    idle_cores = param_number(params, "idle_cpu_millicores", 5, low=0) / 1000
    kinds = param_strings(params, "orphan_kinds", DEFAULT_ORPHAN_KINDS)
    unknown = [k for k in kinds if k not in ORPHAN_KINDS]
    if unknown:
        raise ParamError(f"'orphan_kinds' may hold {', '.join(ORPHAN_KINDS)}, not {', '.join(unknown)}")
    reported = param_strings(params, "checks", REPORTED)
    odd = [c for c in reported if c not in REPORTED]
    if odd or not reported:
        raise ParamError(f"'checks' lists some of {', '.join(REPORTED)}, not {', '.join(odd) or 'nothing'}")
    checks = []
    if "idle-workloads" in reported:
        checks.append(_idle_check(snapshot, param_refs(params, "idle_workloads"), idle_cores))
    if "orphans" in reported:
        checks.append(_orphan_check(snapshot, param_refs(params, "orphans"), kinds))
    keep = param_map(params, "must_keep")
    if keep:
        checks.append(_keep_check(snapshot, keep))
    return checks


def _summary(check_id: str, title: str, items: int, evidence: list[Json], done: str, verb: str) -> Json:
    total = max(items, 1)
    if not evidence:
        return check(check_id, title, 1, 1, done)
    listed = "; ".join(f"{e['resource']} {e['problem']}" for e in evidence[:4])
    more = f"; and {len(evidence) - 4} more" if len(evidence) > 4 else ""
    return check(check_id, title, (total - len(evidence)) / total, 1, f"{verb}: {listed}{more}.", evidence)


# --- idle workloads -------------------------------------------------------------------------------------------------


def _idle_check(snapshot: Json, listed: list[tuple[str, str]], idle_cores: float) -> Json:
    evidence = [e for kind, name in listed if (e := _still_running(snapshot, kind, name)) is not None]
    found = _idle_unlisted(snapshot, {f"{k}/{n}" for k, n in listed}, idle_cores)
    evidence += found
    title = "Idle workloads are scaled to zero or deleted"
    done = (f"{names(f'{k}/{n}' for k, n in listed)} no longer run{'s' if len(listed) == 1 else ''}, and nothing "
            "else runs idle." if listed else "No workload runs idle.")
    return _summary("idle-workloads", title, len(listed) + len(found), evidence, done, "Still running idle")


def _still_running(snapshot: Json, kind: str, name: str) -> Json | None:
    workload = find(snapshot, kind, name)
    if workload is None:
        return None
    if kind == "CronJob":
        return None if workload.get("suspend") else problem(f"{kind}/{name}", "is not suspended")
    replicas = workload.get("replicas")
    if replicas is not None and int(replicas) == 0:
        return None
    running = [p for p in pods_of(snapshot, kind, name) if p.get("phase") == "Running"]
    if replicas is None and not running:
        return None
    usage = [u for p in running if (u := pod_cpu_usage(p)) is not None]
    shown = f" using {max(usage) * 1000:g}m CPU per pod" if usage else ""
    count = int(replicas) if replicas is not None else len(running)
    return problem(f"{kind}/{name}", f"still runs {count} replica{'s' if count != 1 else ''}{shown}",
                   replicas=count)


def _idle_unlisted(snapshot: Json, listed: set[str], idle_cores: float) -> list[Json]:
    """Workloads (or bare pods) not listed whose running pods are all idle."""
    groups: dict[str, list[Json]] = {}
    for pod in of_kind(snapshot, "Pod"):
        if pod.get("phase") != "Running":
            continue
        controller = pod.get("controller") or {}
        owner = f"{controller['kind']}/{controller['name']}" if controller.get("kind") in WORKLOAD_KINDS else ref(pod)
        groups.setdefault(owner, []).append(pod)
    found: list[Json] = []
    for owner, pods in groups.items():
        if owner in listed or not all(is_idle_pod(p, idle_cores) for p in pods):
            continue
        usage = max(pod_cpu_usage(p) or 0.0 for p in pods)
        found.append(problem(owner, f"runs {len(pods)} pod{'s' if len(pods) != 1 else ''} using "
                             f"{usage * 1000:g}m CPU (idle under {idle_cores * 1000:g}m)", pods=len(pods)))
    return found


# --- orphans --------------------------------------------------------------------------------------------------------


def _orphan_check(snapshot: Json, listed: list[tuple[str, str]], kinds: list[str]) -> Json:
    evidence: list[Json] = []
    for kind, name in listed:
        res = find(snapshot, kind, name)
        reason = None if res is None else _orphan_reason(snapshot, res, [*DEFAULT_ORPHAN_KINDS, "Volume"])
        if reason is not None:
            evidence.append(problem(f"{kind}/{name}", f"still exists and {reason}"))
    listed_refs = {f"{k}/{n}" for k, n in listed}
    found = [problem(ref(r), str(reason)) for r in snapshot.get("resources") or []
             if ref(r) not in listed_refs and (reason := _orphan_reason(snapshot, r, kinds)) is not None]
    evidence += found
    title = "Orphaned volumes and load balancers are deleted"
    done = (f"{names(f'{k}/{n}' for k, n in listed)} are gone, and no other orphan is left." if listed
            else "No orphaned volume or load balancer is left.")
    return _summary("orphans", title, len(listed) + len(found), evidence, done, "Orphans left")


def _orphan_reason(snapshot: Json, res: Json, kinds: list[str]) -> str | None:
    if "PersistentVolumeClaim" in kinds and is_unmounted_claim(res):
        return "is mounted by no pod"
    if "Volume" in kinds and res.get("kind") == "Volume" and not res.get("mounted_by"):
        return "is attached to no instance (billed by the GB-month for nothing)"
    if res.get("kind") != "Service":
        return None
    if is_load_balancer(res) and "Service/LoadBalancer" in kinds and load_balancer_without_endpoints(snapshot, res):
        return "is a LoadBalancer with no pods behind it (billed hourly for nothing)"
    if "Service" in kinds and res.get("endpoints") is not None and int(res["endpoints"]) == 0:
        return "has no endpoints"
    return None


# --- workloads to keep ----------------------------------------------------------------------------------------------


def _keep_check(snapshot: Json, keep: Json) -> Json:
    evidence: list[Json] = []
    for name, options in keep.items():
        kind, res_name = split_ref(name)
        minimum = int(param_number(options or {}, "min_replicas", 1, low=0))
        workload = find(snapshot, kind, res_name)
        if workload is None:
            evidence.append(problem(name, "was deleted, but it is in use and must keep running"))
            continue
        replicas = workload.get("replicas")
        if replicas is not None and int(replicas) < minimum:
            evidence.append(problem(name, f"has {replicas} replicas; it is busy and must keep {minimum}",
                                    replicas=replicas))
    title = "Busy workloads keep running"
    done = f"{names(keep)} still {'runs' if len(keep) == 1 else 'run'} with the replicas needed."
    return _summary("kept-workloads", title, len(keep), evidence, done, "Switched off although in use")


if __name__ == "__main__":
    main(grade)
