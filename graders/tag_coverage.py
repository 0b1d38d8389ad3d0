#!/usr/bin/env python3
"""Tag coverage: the share of what costs money that carries every required label with a real value.

FinOps tools allocate cost by labels, and by a pod's labels rather than its Deployment's; a label reading ``tbd`` is
no better than none. A *unit* is one labelled object, judged where the ``scope`` parameter says:

- ``cost_bearing`` (default): every cost-bearing resource: pods (judged by their controller's pod template labels,
  or their own labels when they have no controller), PersistentVolumeClaims, LoadBalancer Services and cloud
  instances (tags). A workload's unit weighs as many pods as it has;
- ``pod_templates``: each workload of ``kinds`` by its pod template's labels;
- ``workloads``: each workload of ``kinds`` by its own labels;
- ``workloads_and_pod_templates``: both at once.

A Job created by a CronJob is judged through its CronJob. A label passes when it is present, is valid for the
platform (Kubernetes label value; AWS tag value; GCP label value) and is not a placeholder (compared without case
when ``case_insensitive``; an empty value never passes). With ``expected``, listed resources must carry exactly
those values. Resources named in ``must_exist`` (or in ``expected``) that are gone count as uncovered units: deleting
a workload does not label it. Score = covered share (by unit count, or by cost with ``weight_by: cost``); the
check passes at ``min_coverage``; fewer than ``min_resources`` units scores 0 (nothing to judge is not coverage).

Parameters (YAML, as in lab.yaml)::

    params:
      required_labels: [team, cost-center, env]   # keys every unit needs (may be left out when `expected` is set)
      scope: pod_templates                        # cost_bearing | pod_templates | workloads
                                                  #   | workloads_and_pod_templates
      kinds: [Deployment, StatefulSet, DaemonSet, Job, CronJob]   # which kinds are units (default per scope)
      placeholders: [tbd, todo, unknown, none, "n/a", x]          # default: a list of common placeholders
      case_insensitive: true                      # compare placeholders without case (default true)
      min_coverage: 1.0                           # the share needed to pass (default 1.0)
      min_resources: 1                            # fewer units than this scores 0 (default 1)
      weight_by: count                            # count | cost
      must_exist: [Deployment/web-frontend]       # these must still exist
      expected:                                   # exact values for listed resources
        Deployment/web-frontend: {team: storefront, cost-center: cc-1001, env: prod}
"""

from __future__ import annotations

import re

from _kit import (
    WORKLOAD_KINDS,
    Json,
    ParamError,
    check,
    find,
    labels,
    main,
    of_kind,
    param_map,
    param_number,
    param_strings,
    problem,
    ref,
    resources,
    share_text,
    split_ref,
)

SCOPES = ("cost_bearing", "pod_templates", "workloads", "workloads_and_pod_templates")
COST_BEARING_KINDS = ("Pod", "PersistentVolumeClaim", "Service", "Instance")
DEFAULT_PLACEHOLDERS = ("tbd", "tba", "todo", "unknown", "none", "null", "nil", "n/a", "na", "changeme", "default",
                        "-", "?", "x", "xx", "xxx", "test", "placeholder")
_K8S_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_AWS_VALUE = re.compile(r"^[\w\s+\-=.:/@]{0,256}$")
_GCP_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_WHERE = {"pod_templates": ("pod template",), "workloads": ("own labels",),
          "workloads_and_pod_templates": ("own labels", "pod template")}


class Rules:
    """What a label value must be, from the parameters and the snapshot's provider."""

    def __init__(self, params: Json, provider: str) -> None:
        self.required = param_strings(params, "required_labels")
        self.placeholders = param_strings(params, "placeholders", DEFAULT_PLACEHOLDERS)
        self.case_insensitive = bool(params.get("case_insensitive", True))
        self.provider = provider
        if self.case_insensitive:
            self.placeholders = [p.lower() for p in self.placeholders]

    def problems(self, where: str, found: dict[str, str], expected: dict[str, str]) -> list[Json]:
        """What is wrong with ``found`` labels at ``where`` (empty when they pass)."""
        wrong = [self._value_problem(where, key, found.get(key)) for key in self.required if key not in expected]
        wrong += [_expected_problem(where, key, value, found.get(key)) for key, value in expected.items()]
        return [w for w in wrong if w is not None]

    def _value_problem(self, where: str, key: str, value: str | None) -> Json | None:
        if value is None:
            return _issue(where, key, "missing", f"missing label {key}")
        compared = value.lower() if self.case_insensitive else value
        if not value.strip() or compared in self.placeholders:
            return _issue(where, key, "placeholder", f"placeholder value {key}={value!r}", value=value)
        if not _valid_value(self.provider, value):
            return _issue(where, key, "invalid", f"{key}={value!r} is not a valid {self.provider} label value",
                          value=value)
        return None


def _issue(where: str, key: str | None, issue: str, text: str, **figures: str) -> Json:
    return {"where": where, "label": key, "issue": issue, "text": text, **figures}


def _expected_problem(where: str, key: str, expected: str, value: str | None) -> Json | None:
    if value is None:
        return _issue(where, key, "missing", f"missing label {key} (expected {key}={expected})", expected=expected)
    if value == expected:
        return None
    return _issue(where, key, "mismatch", f"{key}={value!r}, expected {expected!r}", value=value, expected=expected)


def _valid_value(provider: str, value: str) -> bool:
    pattern = {"aws": _AWS_VALUE, "gcp": _GCP_VALUE}.get(provider, _K8S_VALUE)
    return len(value) <= (256 if provider == "aws" else 63) and pattern.match(value) is not None


def grade(snapshot: Json, params: Json) -> list[Json]:
    scope = str(params.get("scope", "cost_bearing"))
    if scope not in SCOPES:
        raise ParamError(f"'scope' must be one of {', '.join(SCOPES)}, not {scope!r}")
    rules = Rules(params, str((snapshot.get("session") or {}).get("provider", "kubernetes")))
    expected = _expected(params)
    if not rules.required and not expected:
        raise ParamError("give 'required_labels' or 'expected' (or both)")
    min_coverage = param_number(params, "min_coverage", 1.0, low=0, high=1)
    min_resources = int(param_number(params, "min_resources", 1, low=0))
    by_cost = _weight_by(params) == "cost"
    units = _units(snapshot, scope, params, expected, rules)
    units += _missing_units(snapshot, param_strings(params, "must_exist") + list(expected), units)
    return [_coverage_check(units, scope, rules, min_coverage, min_resources, by_cost)]


def _expected(params: Json) -> dict[str, dict[str, str]]:
    raw = param_map(params, "expected")
    for key, values in raw.items():
        split_ref(key)
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise ParamError(f"'expected.{key}' must map label keys to text values")
    return {key: dict(values) for key, values in raw.items()}


def _weight_by(params: Json) -> str:
    value = str(params.get("weight_by", "count"))
    if value not in ("count", "cost"):
        raise ParamError(f"'weight_by' must be 'count' or 'cost', not {value!r}")
    return value


def _unit(name: str, problems: list[Json], count: float, cost: float) -> Json:
    return {"ref": name, "problems": problems, "count": count, "cost": cost}


def _units(snapshot: Json, scope: str, params: Json, expected: dict[str, dict[str, str]], rules: Rules) -> list[Json]:
    if scope == "cost_bearing":
        return _cost_bearing_units(snapshot, param_strings(params, "kinds", COST_BEARING_KINDS), expected, rules)
    kinds = param_strings(params, "kinds", WORKLOAD_KINDS)
    judged = [w for w in of_kind(snapshot, *kinds) if not _judged_through_owner(w, kinds)]
    if not rules.required:
        judged = [w for w in judged if ref(w) in expected]
    return [_unit(ref(w), _workload_problems(w, scope, expected.get(ref(w), {}), rules), 1, _workload_cost(snapshot, w))
            for w in judged]


def _judged_through_owner(workload: Json, kinds: list[str]) -> bool:
    owners = [workload.get("controller") or {}, workload.get("owner") or {}]
    return any(o.get("kind") in kinds and o.get("name") for o in owners)


def _workload_problems(workload: Json, scope: str, expected: dict[str, str], rules: Rules) -> list[Json]:
    found: list[Json] = []
    for where in _WHERE[scope]:
        key = "pod_template_labels" if where == "pod template" else "labels"
        found += rules.problems(where, labels(workload, key), expected)
    return found


def _workload_cost(snapshot: Json, workload: Json) -> float:
    pods = [p for p in of_kind(snapshot, "Pod") if (p.get("controller") or {}).get("name") == workload.get("name")
            and (p.get("controller") or {}).get("kind") == workload.get("kind")]
    return sum(_cost(p) for p in pods) + _cost(workload)


def _cost(res: Json) -> float:
    return float(res.get("cost_usd") or res.get("hourly_usd") or 0.0)


def _cost_bearing_units(snapshot: Json, kinds: list[str], expected: dict[str, dict[str, str]],
                        rules: Rules) -> list[Json]:
    """Units of cost-bearing resources; a workload's pods form one unit judged by its pod template."""
    units: dict[str, Json] = {}
    for res in resources(snapshot):
        if res.get("kind") not in kinds or not _bears_cost(res):
            continue
        labelled, where, found = _labelled_by(snapshot, res)
        name = ref(labelled)
        if name not in units:
            problems = rules.problems(where, found, expected.get(name, {}))
            units[name] = _unit(name, problems, 0, 0.0)
        units[name]["count"] += 1
        units[name]["cost"] += _cost(res)
    return list(units.values())


def _bears_cost(res: Json) -> bool:
    if res.get("kind") == "Service":
        return res.get("service_type") == "LoadBalancer"
    return res.get("kind") in ("Pod", "PersistentVolumeClaim", "Instance") or _cost(res) > 0


def _labelled_by(snapshot: Json, res: Json) -> tuple[Json, str, dict[str, str]]:
    """The object whose labels count for ``res``: a pod's controller's template, else ``res`` itself."""
    controller = res.get("controller") or {}
    if res.get("kind") == "Pod" and controller:
        workload = find(snapshot, str(controller.get("kind")), str(controller.get("name")))
        if workload is not None and workload.get("pod_template_labels") is not None:
            return workload, "pod template", labels(workload, "pod_template_labels")
    return res, "own labels", labels(res)


def _missing_units(snapshot: Json, refs: list[str], units: list[Json]) -> list[Json]:
    present = {u["ref"] for u in units}
    missing: list[Json] = []
    for name in dict.fromkeys(refs):
        kind, res_name = split_ref(name)
        if name not in present and find(snapshot, kind, res_name) is None:
            gone = _issue("object", None, "gone", "not found: it must still exist (deleting a workload does not "
                          "label it)")
            missing.append(_unit(name, [gone], 1, 0.0))
    return missing


def _coverage_check(units: list[Json], scope: str, rules: Rules, min_coverage: float, min_resources: int,
                    by_cost: bool) -> Json:
    what = {"cost_bearing": "cost-bearing resources", "pod_templates": "pod templates",
            "workloads": "workload objects", "workloads_and_pod_templates": "workloads and their pod templates"}[scope]
    labels_text = ", ".join(rules.required) or "the expected owner labels"
    title = f"{what[0].upper()}{what[1:]} carry {labels_text} with real values"
    if len(units) < min_resources:
        return check("label-coverage", title, 0, 1, f"Found {len(units) or 'no'} {what} to judge, fewer than "
                     f"{min_resources}: labelling needs the resources to still exist.",
                     [problem("(none)", f"{len(units)} {what} found, at least {min_resources} expected")])
    if not units:
        return check("label-coverage", title, 1, 1, f"There are no {what} to label.")
    weight = "cost" if by_cost and sum(u["cost"] for u in units) > 0 else "count"
    total = sum(u[weight] for u in units)
    covered = sum(u[weight] for u in units if not u["problems"])
    coverage = covered / total if total else 0.0
    bad = [u for u in units if u["problems"]]
    evidence = [problem(u["ref"], f"{p['where']}: {p['text']}" if p["issue"] != "gone" else p["text"],
                        **{k: v for k, v in p.items() if k in ("label", "value", "expected") and v is not None})
                for u in bad for p in u["problems"]]
    if not bad:
        feedback = f"All {len(units)} {what} carry {labels_text} with real values."
    else:
        detail = "; ".join(f"{u['ref']} ({_summary(u['problems'])})" for u in bad[:4])
        more = f"; and {len(bad) - 4} more" if len(bad) > 4 else ""
        feedback = (f"{len(bad)} of {len(units)} {what} are not fully labelled: {detail}{more}. Coverage "
                    f"{share_text(covered, total)}{' of cost' if weight == 'cost' else ''}, needed "
                    f"{min_coverage:.0%}.")
    return check("label-coverage", title, coverage, 1, feedback, evidence, passed=coverage >= min_coverage - 1e-9)


def _summary(problems: list[Json]) -> str:
    """One unit's problems in few words: ``"pod template lacks team, env; own labels have team=tbd"``."""
    parts: list[str] = []
    for where in dict.fromkeys(p["where"] for p in problems):
        here = [p for p in problems if p["where"] == where]
        if any(p["issue"] == "gone" for p in here):
            parts.append("deleted: it must still exist")
            continue
        verb = "lack" if where == "own labels" else "lacks"
        missing = [_wanted(p) for p in here if p["issue"] == "missing"]
        other = [_found(p) for p in here if p["issue"] != "missing"]
        texts = ([f"{verb} {', '.join(missing)}"] if missing else []) + \
            ([f"{'have' if verb == 'lack' else 'has'} {', '.join(other)}"] if other else [])
        parts.append(f"{where} {' and '.join(texts)}")
    return "; ".join(parts)


def _found(issue: Json) -> str:
    shown = f"{issue['label']}={issue['value']!r}"
    if issue["issue"] == "mismatch":
        return f"{shown} (expected {issue['expected']})"
    return f"{issue['issue']} {shown}"


def _wanted(issue: Json) -> str:
    return f"{issue['label']}={issue['expected']}" if issue.get("expected") else str(issue["label"])


if __name__ == "__main__":
    main(grade)
