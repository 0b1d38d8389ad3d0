#!/usr/bin/env python3
"""CPU and memory rightsizing: each workload's requests sit within a band of what it uses.

Requests are judged per pod (the sum over the pod template's containers; a template without a request takes its
pods' requests, which include LimitRange defaults). Use is per pod too: the largest measured use among the
workload's running pods (the snapshot's container ``usage``, from the metrics pipeline or labctl's simulator; the
snapshot has point use, taken as the P90). Nothing written on the workload is read as use; a workload with no
running pod is not sized (it fails). A request is right when ``use / request`` lies within the band, i.e.
``use / band.max <= request <= use / band.min``, and a request at or below the floor is never too big (VPA floors:
25m CPU, 250 MiB). Without ``band``, it is VPA's target + margin to Kubecost's target utilisation:
``band.min = target_utilization`` (0.7), ``band.max = 1 / (1 + margin)`` (margin 0.15).

One check per workload; score = resources within the band / resources judged (a resource without measured use is
not judged; none judged makes the check an ``error``).

Parameters (YAML, as in lab.yaml)::

    params:
      workloads: [Deployment/llm-inference]   # default: every workload in the snapshot
      resources: [cpu, memory]                # default both
      band: {min: 0.5, max: 0.95}             # use / request; default from margin and target_utilization
      margin: 0.15
      target_utilization: 0.7
      floors: {cpu: 25m, memory: 250Mi}       # default
"""

from __future__ import annotations

from _kit import (
    WORKLOAD_KINDS,
    Json,
    ParamError,
    check,
    find,
    main,
    not_running,
    of_kind,
    param_map,
    param_number,
    param_refs,
    param_strings,
    pods_of,
    problem,
    quantity,
)

RESOURCES = ("cpu", "memory")
DEFAULT_FLOORS = {"cpu": "25m", "memory": "250Mi"}


def grade(snapshot: Json, params: Json) -> list[Json]:
    wanted = param_strings(params, "resources", RESOURCES)
    unknown = [r for r in wanted if r not in RESOURCES]
    if unknown or not wanted:
        raise ParamError(f"'resources' may hold cpu and memory, not {unknown or wanted}")
    low, high = _band(params)
    floors = {**DEFAULT_FLOORS, **param_map(params, "floors")}
    floor_values = {r: quantity(floors[r]) for r in RESOURCES}
    targets = param_refs(params, "workloads") or [(str(w["kind"]), str(w["name"]))
                                                  for w in of_kind(snapshot, *WORKLOAD_KINDS)
                                                  if not w.get("controller")]
    if "usage_annotations" in params:
        raise ParamError("'usage_annotations' is no longer read: use comes only from the pods' measured usage")
    return [_judge(snapshot, kind, name, wanted, low, high, floor_values) for kind, name in targets]


def _band(params: Json) -> tuple[float, float]:
    band = param_map(params, "band")
    if band:
        low = param_number(band, "min", low=0, high=1)
        high = param_number(band, "max", low=0, high=1)
    else:
        low = param_number(params, "target_utilization", 0.7, low=0.01, high=1)
        high = 1 / (1 + param_number(params, "margin", 0.15, low=0))
    if low >= high:
        raise ParamError(f"the band's min ({low:g}) must be below its max ({high:g})")
    return low, high


def _judge(snapshot: Json, kind: str, name: str, wanted: list[str], low: float, high: float,
           floors: dict[str, float]) -> Json:
    label = f"{kind}/{name}"
    title = f"{label} requests {' and '.join(wanted)} sized from its use"
    workload = find(snapshot, kind, name)
    if workload is None:
        return check(f"right-size:{label}", title, 0, 1, f"{label} is gone; it must keep running with requests "
                     "sized from its use.", [problem(label, "not found")])
    pods = pods_of(snapshot, kind, name)
    if not any(p.get("phase") == "Running" for p in pods):
        return check(f"right-size:{label}", title, 0, 1, not_running(label, pods), [problem(label, "no pod running")])
    evidence: list[Json] = []
    judged = right = 0
    for resource in wanted:
        use = _use(pods, resource)
        request = _request(workload, pods, resource)
        if use is None:
            evidence.append(problem(label, f"no {resource} use was measured, so its request is not judged"))
            continue
        judged += 1
        verdict = _verdict(resource, use, request, low, high, floors[resource])
        if verdict is None:
            right += 1
        else:
            evidence.append(problem(label, verdict, what=resource, use=use, request=request,
                                    ratio=round(use / request, 3) if request else None))
    if not judged:
        return check(f"right-size:{label}", title, 0, 1, f"No use was measured for {label}, so its requests cannot "
                     "be judged.", evidence, status="error")
    wrong = [str(e["problem"]) for e in evidence if "ratio" in e]
    if not wrong:
        return check(f"right-size:{label}", title, right / judged, 1,
                     f"{label} requests {' and '.join(wanted)} within {low:.0%}-{high:.0%} utilisation of its use.",
                     evidence, passed=right == judged)
    return check(f"right-size:{label}", title, right / judged, 1, f"{label}: {'; '.join(wrong)}.", evidence)


def _use(pods: list[Json], resource: str) -> float | None:
    """Use per pod: the largest measured use among the running pods."""
    measured = [_pod_use(p, resource) for p in pods if p.get("phase") == "Running"]
    values = [v for v in measured if v is not None]
    return max(values) if values else None


def _pod_use(pod: Json, resource: str) -> float | None:
    values = [(c.get("usage") or {}).get(resource) for c in pod.get("containers") or []]
    measured = [float(v) for v in values if v is not None]
    return sum(measured) if measured else None


def _request(workload: Json, pods: list[Json], resource: str) -> float:
    """The per-pod request: the template's, else the largest of its pods' (LimitRange defaults applied)."""
    template = _containers_total(workload.get("containers") or [], resource)
    if template > 0:
        return template
    return max((_containers_total(p.get("containers") or [], resource) for p in pods), default=0.0)


def _containers_total(containers: list[Json], resource: str) -> float:
    return sum(float((c.get("requests") or {}).get(resource) or 0.0) for c in containers)


def _verdict(resource: str, use: float, request: float, low: float, high: float, floor: float) -> str | None:
    """None when the request is within the band (or at the floor), else what is wrong with it."""
    shown_use, shown_request = _show(resource, use), _show(resource, request)
    least, most = use / high, max(use / low, floor)
    if request <= 0:
        return f"requests no {resource} while using {shown_use}: request {_show(resource, least)}-" \
               f"{_show(resource, most)}"
    if request < least:
        return (f"{resource} request {shown_request} is below its use {shown_use} plus margin (use/request "
                f"{use / request:.2f} > {high:.2f}); request at least {_show(resource, least)}")
    if request > most:
        return (f"{resource} request {shown_request} is far above its use {shown_use} (use/request "
                f"{use / request:.2f} < {low:.2f}); request at most {_show(resource, most)}")
    return None


def _show(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{value * 1000:.0f}m"
    return f"{value / 2**20:.0f}Mi"


if __name__ == "__main__":
    main(grade)
