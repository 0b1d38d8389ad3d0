#!/usr/bin/env python3
"""Spot placement: restartable work runs on spot capacity, and is ready for the interruptions spot brings.

Two modes, chosen by ``check``.

``placement`` (default) reports up to three checks over the eligible ``workloads``:

- ``spot-share``: the share of the workloads' pod node-hours on spot nodes (each pod weighs its ``running_hours``,
  at least a minute; finished Job pods count where they ran). A node is spot when it carries one of
  ``spot_node_labels`` (values compared without case), or, without that parameter, by the snapshot's
  ``capacity_type``. A listed workload that is gone or has no placed pod lowers the score by its share. Passes at
  ``min_spot_share``.
- ``spot-ready``: each workload's pod template asks for spot (a node selector or a required / preferred node affinity
  on a spot label, when ``require_spot_selector``) and tolerates the spot taint: ``spot_taint`` when given, else
  every taint of the snapshot's spot nodes whose key is a spot label (e.g. ``cloud.google.com/gke-spot``).
  Score = criteria met / criteria. Give ``spot_taint`` when spot nodes are tainted: the snapshot lists only the
  nodes pods run or ran on, so when the missing toleration keeps every pod off spot there is no spot node to read
  the taint from, and the toleration would go unchecked.
- ``replicas`` (only with ``min_replicas``): Deployments and StatefulSets keep at least that many replicas.

``instances`` (cloud sandboxes) reports one check, ``spot-share``: the share of the instance-hours of the running
``Instance`` resources (each weighs its ``running_hours``, at least a minute) whose ``capacity_type`` is spot. Passes
at ``min_spot_share``; no running instance scores 0 (nothing runs on spot).

``interruption_tolerance`` reports one check per listed workload: Deployments / StatefulSets keep ``min_replicas``
and have a PodDisruptionBudget selecting their pods that keeps at least one pod up and still lets one go
(``minAvailable`` resolved against the replicas, between 1 and ``pdb_min_available_at_most``, default replicas - 1);
Jobs retry lost pods (``backoffLimit >= min_backoff_limit``, or, when accepted, a ``podFailurePolicy`` rule that
ignores pods with the ``DisruptionTarget`` condition). Score = criteria met / criteria.

Parameters (YAML, as in lab.yaml)::

    params:                                   # placement
      workloads: [Job/embeddings-backfill, Deployment/thumbnailer]   # default: every workload with pods
      min_spot_share: 1.0                     # default 1.0
      spot_node_labels: {karpenter.sh/capacity-type: spot}           # default: the snapshot's capacity_type
      spot_taint: {key: cloud.google.com/gke-spot, value: "true", effect: NoSchedule}   # default: from spot nodes
      require_spot_selector: true             # default true
      min_replicas: 2                         # optional

    params:                                   # cloud instances
      check: instances
      min_spot_share: 1.0                     # default 1.0

    params:                                   # interruption tolerance
      check: interruption_tolerance
      deployments:                            # also: statefulsets, same options
        thumbnailer: {min_replicas: 2, require_pdb: true, pdb_min_available_at_most: 1}
      jobs:
        embeddings-backfill: {min_backoff_limit: 3, accept_pod_failure_policy_ignore_disruption: true}
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from _kit import (
    SPOT_NODE_LABELS,
    WORKLOAD_KINDS,
    Json,
    ParamError,
    check,
    find,
    is_spot_node,
    labels,
    main,
    names,
    node,
    of_kind,
    param_map,
    param_number,
    param_refs,
    pods_of,
    problem,
    ref,
    selector_matches,
    share_text,
)

MIN_POD_HOURS = 1 / 60
KUBERNETES_DEFAULT_BACKOFF_LIMIT = 6
_PLACED_PHASES = ("Running", "Succeeded", "Failed")


def grade(snapshot: Json, params: Json) -> list[Json]:
    mode = str(params.get("check", "placement"))
    if mode == "placement":
        return placement(snapshot, params)
    if mode == "interruption_tolerance":
        return interruption_tolerance(snapshot, params)
    if mode == "instances":
        return [instances(snapshot, param_number(params, "min_spot_share", 1.0, low=0, high=1))]
    raise ParamError(f"'check' must be 'placement', 'instances' or 'interruption_tolerance', not {mode!r}")


# --- cloud instances ------------------------------------------------------------------------------------------------

_RUNNING_INSTANCE = ("pending", "running", "provisioning", "staging")


def instances(snapshot: Json, min_share: float) -> Json:
    running = [r for r in of_kind(snapshot, "Instance") if str(r.get("phase") or "").lower() in _RUNNING_INSTANCE]
    title = "Instances run on spot capacity"
    if not running:
        return check("spot-share", title, 0, 1, "No instance runs, so nothing runs on spot.",
                     [problem("Instance/*", "no running instance")], passed=False)
    spot_hours = total_hours = 0.0
    evidence: list[Json] = []
    for instance in running:
        hours = max(float(instance.get("running_hours") or 0.0), MIN_POD_HOURS)
        total_hours += hours
        if instance.get("capacity_type") == "spot":
            spot_hours += hours
        else:
            evidence.append(problem(ref(instance), f"runs {instance.get('capacity_type') or 'on-demand'} "
                                    f"({instance.get('instance_type') or 'unknown type'})", hours=round(hours, 4)))
    share = spot_hours / total_hours
    if not evidence:
        return check("spot-share", title, 1, 1, f"Every running instance is spot ({total_hours:.2f} instance-hours).")
    feedback = (f"{share_text(spot_hours, total_hours)} of the instance-hours are on spot (needed {min_share:.0%}); "
                f"not on spot: {names(str(e['resource']) for e in evidence)}.")
    return check("spot-share", title, share, 1, feedback, evidence, passed=share >= min_share - 1e-9)


# --- placement ------------------------------------------------------------------------------------------------------


def placement(snapshot: Json, params: Json) -> list[Json]:
    spot_labels = _spot_labels(params)
    targets = param_refs(params, "workloads") or _workloads_with_pods(snapshot)
    found = {f"{k}/{n}": find(snapshot, k, n) for k, n in targets}
    checks = [_share_check(snapshot, found, spot_labels, param_number(params, "min_spot_share", 1.0, low=0, high=1)),
              _ready_check(snapshot, found, spot_labels, params)]
    if params.get("min_replicas") is not None:
        checks.append(_replicas_check(found, int(param_number(params, "min_replicas", low=0))))
    return checks


def _spot_labels(params: Json) -> dict[str, str] | None:
    if params.get("spot_node_labels") is None:
        return None
    return {str(k): str(v) for k, v in param_map(params, "spot_node_labels").items()}


def _workloads_with_pods(snapshot: Json) -> list[tuple[str, str]]:
    owners = [p.get("controller") or {} for p in of_kind(snapshot, "Pod")]
    return list(dict.fromkeys((str(o["kind"]), str(o["name"])) for o in owners if o.get("kind") in WORKLOAD_KINDS))


def _share_check(snapshot: Json, found: Mapping[str, Json | None], spot_labels: dict[str, str] | None,
                 min_share: float) -> Json:
    spot_hours = total_hours = 0.0
    evidence: list[Json] = []
    judged = 0
    for name, workload in found.items():
        if workload is None:
            evidence.append(problem(name, "not found: it must exist and run on spot"))
            continue
        pods = [p for p in pods_of(snapshot, str(workload["kind"]), str(workload["name"]))
                if p.get("node") and p.get("phase") in _PLACED_PHASES]
        if not pods:
            evidence.append(problem(name, "no pod of it runs (or ran) on a node, so nothing ran on spot"))
            continue
        judged += 1
        for pod in pods:
            hours = max(float(pod.get("running_hours") or 0.0), MIN_POD_HOURS)
            node_data = node(snapshot, pod.get("node")) or {}
            total_hours += hours
            if is_spot_node(node_data, spot_labels):
                spot_hours += hours
            else:
                evidence.append(problem(f"Pod/{pod.get('name')}", f"runs on {_capacity(node_data)} node "
                                        f"{pod.get('node')}", workload=name, hours=round(hours, 4)))
    share = spot_hours / total_hours if total_hours else 0.0
    score = share * judged / len(found) if found else 0.0
    title = "Pods of the workloads run on spot capacity"
    if not evidence:
        return check("spot-share", title, 1, 1, f"All pods of {names(found)} run on spot nodes "
                     f"({total_hours:.2f} node-hours).")
    offenders = names(dict.fromkeys(str(e.get("workload", e["resource"])) for e in evidence))
    feedback = (f"{share_text(spot_hours, total_hours)} of the node-hours of {names(found)} are on spot (needed "
                f"{min_share:.0%}); not on spot: {offenders}.")
    return check("spot-share", title, score, 1, feedback, evidence,
                 passed=judged == len(found) and share >= min_share - 1e-9)


def _capacity(node_data: Json) -> str:
    return str(node_data.get("capacity_type") or "non-spot")


def _ready_check(snapshot: Json, found: Mapping[str, Json | None], spot_labels: dict[str, str] | None,
                 params: Json) -> Json:
    taints = _spot_taints(snapshot, spot_labels, params)
    require_selector = bool(params.get("require_spot_selector", True))
    target_labels = {**SPOT_NODE_LABELS, **(spot_labels or {})}
    met = total = 0
    evidence: list[Json] = []
    for name, workload in found.items():
        criteria = _readiness(workload, target_labels, taints, require_selector)
        total += len(criteria)
        met += sum(1 for ok, _ in criteria if ok)
        evidence += [problem(name, text) for ok, text in criteria if not ok]
    title = "Pod templates ask for spot capacity and tolerate its taint"
    if not evidence:
        verb = "asks" if len(found) == 1 else "ask"
        return check("spot-ready", title, 1, 1, f"{names(found)} {verb} for spot capacity and tolerate"
                     f"{'s' if len(found) == 1 else ''} its taint.")
    listed = "; ".join(f"{e['resource']} {e['problem']}" for e in evidence[:4])
    feedback = f"Not ready for spot: {listed}{'; and more' if len(evidence) > 4 else ''}."
    return check("spot-ready", title, met / total if total else 0.0, 1, feedback, evidence)


def _spot_taints(snapshot: Json, spot_labels: dict[str, str] | None, params: Json) -> list[Json]:
    if params.get("spot_taint") is not None:
        taint = param_map(params, "spot_taint")
        if not taint.get("key"):
            raise ParamError("'spot_taint' needs a 'key'")
        return [taint]
    keys = set(SPOT_NODE_LABELS) | set(spot_labels or {})
    spot_nodes = [n for n in snapshot.get("nodes") or [] if is_spot_node(n, spot_labels)]
    taints = [t for n in spot_nodes for t in n.get("taints") or [] if t.get("key") in keys]
    return list({(t.get("key"), t.get("value"), t.get("effect")): t for t in taints}.values())


def _readiness(workload: Json | None, target_labels: dict[str, str], taints: list[Json],
               require_selector: bool) -> list[tuple[bool, str]]:
    """(met, what is wrong) per criterion; a missing workload fails them all."""
    count = int(require_selector) + len(taints)
    if workload is None:
        return [(False, "not found")] * max(count, 1)
    criteria: list[tuple[bool, str]] = []
    if require_selector:
        criteria.append((_targets_spot(workload, target_labels),
                         "has no node selector or node affinity for spot capacity"))
    for taint in taints:
        criteria.append((any(_tolerates(t, taint) for t in workload.get("tolerations") or []),
                         f"does not tolerate the spot taint {_taint_text(taint)}"))
    return criteria


def _targets_spot(workload: Json, target_labels: dict[str, str]) -> bool:
    wanted = {k: v.lower() for k, v in target_labels.items()}
    if any(wanted.get(k) == str(v).lower() for k, v in (workload.get("node_selector") or {}).items()):
        return True
    node_affinity = (workload.get("affinity") or {}).get("nodeAffinity") or {}
    required = (node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    preferred = [p.get("preference") or {} for p in
                 node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    terms = list(required or []) + preferred
    return any(_expression_targets(e, wanted) for term in terms for e in term.get("matchExpressions") or [])


def _expression_targets(expression: Json, wanted: dict[str, str]) -> bool:
    key = expression.get("key")
    if key not in wanted or expression.get("operator") != "In":
        return False
    return wanted[key] in [str(v).lower() for v in expression.get("values") or []]


def _tolerates(toleration: Json, taint: Json) -> bool:
    """Kubernetes toleration semantics for one taint."""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration.get("key") == taint.get("key")
    return toleration.get("key") == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def _taint_text(taint: Json) -> str:
    return f"{taint.get('key')}={taint.get('value') or ''}:{taint.get('effect') or '*'}"


def _replicas_check(found: Mapping[str, Json | None], minimum: int) -> Json:
    evidence: list[Json] = []
    judged = [name for name, w in found.items() if w is None or w.get("kind") in ("Deployment", "StatefulSet")]
    for name in judged:
        workload = found[name]
        replicas = int((workload or {}).get("replicas") or 0)
        if replicas < minimum:
            evidence.append(problem(name, f"has {replicas} replicas, fewer than {minimum}", replicas=replicas))
    title = f"Services keep at least {minimum} replicas"
    if not evidence:
        return check("replicas", title, 1, 1, f"{names(judged) if judged else 'No service'} keeps at least "
                     f"{minimum} replicas, so one spot reclaim does not stop it.")
    feedback = f"{names(str(e['resource']) for e in evidence)} must keep at least {minimum} replicas on spot."
    return check("replicas", title, 1 - len(evidence) / len(judged), 1, feedback, evidence)


# --- interruption tolerance -----------------------------------------------------------------------------------------


def interruption_tolerance(snapshot: Json, params: Json) -> list[Json]:
    checks = [_service_check(snapshot, kind, name, options)
              for kind, key in (("Deployment", "deployments"), ("StatefulSet", "statefulsets"))
              for name, options in param_map(params, key).items()]
    checks += [_job_check(snapshot, name, options) for name, options in param_map(params, "jobs").items()]
    if not checks:
        raise ParamError("list workloads under 'deployments', 'statefulsets' or 'jobs'")
    return checks


def _service_check(snapshot: Json, kind: str, name: str, options: Json) -> Json:
    options = options or {}
    workload = find(snapshot, kind, name)
    title = f"{kind}/{name} survives losing a spot node"
    check_id = f"{kind}/{name}"
    min_replicas = int(param_number(options, "min_replicas", 2, low=1))
    if workload is None:
        return check(check_id, title, 0, 1, f"{kind}/{name} is gone; it must keep running with {min_replicas} "
                     "replicas.", [problem(f"{kind}/{name}", "not found")])
    replicas = int(workload.get("replicas") or 0)
    criteria = [(replicas >= min_replicas, f"has {replicas} replicas, fewer than {min_replicas}")]
    if options.get("require_pdb", True):
        criteria.append(_pdb_criterion(snapshot, workload, replicas, options))
    evidence = [problem(f"{kind}/{name}", text) for ok, text in criteria if not ok]
    met = sum(1 for ok, _ in criteria if ok)
    if not evidence:
        return check(check_id, title, 1, 1, f"{kind}/{name} keeps {replicas} replicas and a PodDisruptionBudget "
                     "that lets one go at a time.")
    feedback = f"{kind}/{name} {' and '.join(str(e['problem']) for e in evidence)}."
    return check(check_id, title, met / len(criteria), 1, feedback, evidence)


def _pdb_criterion(snapshot: Json, workload: Json, replicas: int, options: Json) -> tuple[bool, str]:
    template = labels(workload, "pod_template_labels")
    pdbs = [p for p in of_kind(snapshot, "PodDisruptionBudget") if selector_matches(p.get("selector"), template)]
    if not pdbs:
        return False, "has no PodDisruptionBudget selecting its pods"
    ceiling = options.get("pdb_min_available_at_most")
    highest = int(ceiling) if ceiling is not None else replicas - 1
    verdicts = [(_resolved_min_available(p, replicas), ref(p)) for p in pdbs]
    if any(value is not None and 1 <= value <= min(highest, replicas - 1) for value, _ in verdicts):
        return True, ""
    shown = ", ".join(f"{name} keeps {'?' if value is None else value} of {replicas} up" for value, name in verdicts)
    return False, (f"has no PodDisruptionBudget that keeps at least 1 pod up and lets one go ({shown}; allowed "
                   f"1 to {min(highest, replicas - 1)})")


def _resolved_min_available(pdb: Json, replicas: int) -> int | None:
    """The pods a PDB keeps up, as Kubernetes resolves it (percentages rounded up)."""
    if pdb.get("min_available") is not None:
        return _scaled(pdb["min_available"], replicas)
    if pdb.get("max_unavailable") is not None:
        return replicas - _scaled(pdb["max_unavailable"], replicas)
    return None


def _scaled(value: int | str, replicas: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * replicas / 100)
    return int(value)


def _job_check(snapshot: Json, name: str, options: Json) -> Json:
    options = options or {}
    job = find(snapshot, "Job", name)
    minimum = int(param_number(options, "min_backoff_limit", 3, low=0))
    accept_policy = bool(options.get("accept_pod_failure_policy_ignore_disruption", True))
    title = f"Job/{name} retries pods lost to spot interruptions"
    if job is None:
        return check(f"Job/{name}", title, 0, 1, f"Job/{name} is gone; re-create it with retries.",
                     [problem(f"Job/{name}", "not found")])
    backoff = int(job.get("backoff_limit", KUBERNETES_DEFAULT_BACKOFF_LIMIT))
    if backoff >= minimum or (accept_policy and _ignores_disruption(job)):
        return check(f"Job/{name}", title, 1, 1, f"Job/{name} retries lost pods (backoffLimit {backoff}"
                     f"{', and ignores disruptions' if _ignores_disruption(job) else ''}).")
    alternative = " or a podFailurePolicy that ignores DisruptionTarget" if accept_policy else ""
    text = f"has backoffLimit {backoff}: one lost pod fails it (needs at least {minimum}{alternative})"
    return check(f"Job/{name}", title, 0, 1, f"Job/{name} {text}.", [problem(f"Job/{name}", text)])


def _ignores_disruption(job: Json) -> bool:
    rules = (job.get("pod_failure_policy") or {}).get("rules") or []
    return any(rule.get("action") == "Ignore" and any(c.get("type") == "DisruptionTarget"
                                                      for c in rule.get("onPodConditions") or [])
               for rule in rules)


if __name__ == "__main__":
    main(grade)
