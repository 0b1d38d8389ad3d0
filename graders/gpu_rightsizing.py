#!/usr/bin/env python3
"""GPU rightsizing: each workload's GPU request (a whole GPU or a MIG slice) matches what it measurably uses.

A rule of thumb, every threshold a parameter. From the workload's measured use, only ever its running pods'
container ``usage`` (the metrics pipeline's or labctl's simulator's figures, never anything written on the workload):
engine-active as a share of a whole GPU (``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` is reported per GPU or MIG slice, so a
pod's figure is multiplied by its GPU share: 1 per whole GPU, g/7 per ``<g>g`` slice) and framebuffer MiB, the
largest of the pods':

- **idle** (engine-active < ``idle_engine_active``) or **over-provisioned** (engine-active <
  ``overprovisioned_engine_active`` and peak memory < ``overprovisioned_memory_share`` of the device): the right size
  is the smallest MIG profile whose memory >= peak x ``memory_headroom`` and whose compute share (g/7) >= the
  engine-active share; a whole GPU is waste;
- **memory-bound** (peak > 90 % of the device) or busy: a whole GPU is right.

Score, per workload (one check each): 1 for a request of a best profile (``best_profiles`` when given, else the
computed right size); the listed fraction for ``partial_credit_profiles``; without that parameter, an adequate but
larger slice earns the ratio of the right size's cost share to the requested one (a slice costs max(g/7, memory
share) of the GPU); 0 for a whole GPU where a slice fits, a slice too small, or no GPU request. A request for more
than one unit per pod divides the credit by the count. A workload with no running pod scores 0 (nothing measured
to size it by). Pods of the workload that still hold a different GPU request (an unfinished rollout: whole GPUs
kept idle) scale the score by the share of pods already on the template's request.

Parameters (YAML, as in lab.yaml)::

    params:
      workload: Deployment/llm-inference        # or workloads: [..]
      device_memory_mib: 81920                  # default: the nodes' nvidia.com/gpu.memory label, else 81920
      memory_headroom: 1.2
      idle_engine_active: 0.05
      overprovisioned_engine_active: 0.3
      overprovisioned_memory_share: 0.5
      memory_bound_share: 0.9
      profiles: [1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb]   # default: by device memory
      best_profiles: [1g.10gb]                  # default: the computed right size
      partial_credit_profiles: {2g.20gb: 0.5}   # default: cost-share ratio for adequate larger slices
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable

from _kit import (
    Json,
    ParamError,
    check,
    find,
    main,
    node,
    not_running,
    optional_number,
    param_map,
    param_number,
    param_refs,
    param_strings,
    pods_of,
    problem,
    split_ref,
)

WHOLE_GPU = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
_PROFILE = re.compile(r"^(\d+)g\.(\d+)gb$")
PROFILES_BY_MEMORY = {  # the homogeneous MIG profiles of A100 40GB, A100 / H100 80GB and H200 141GB
    40960: ("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
    81920: ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    144384: ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
}
DEFAULT_DEVICE_MIB = 81920


class Profile(namedtuple("Profile", "name compute memory_gb")):  # not a dataclass: its import costs a start 10 ms
    """A MIG profile ``<g>g.<m>gb``: g sevenths of the compute, m GB (taken as m x 1024 MiB) of memory."""

    __slots__ = ()
    name: str
    compute: int
    memory_gb: int

    @property
    def memory_mib(self) -> float:
        return self.memory_gb * 1024.0

    def cost_share(self, device_mib: float) -> float:
        return max(self.compute / 7, self.memory_mib / device_mib)


def parse_profile(name: str) -> Profile:
    match = _PROFILE.match(name)
    if match is None:
        raise ParamError(f"{name!r} is not a MIG profile like '1g.10gb'")
    return Profile(name, int(match[1]), int(match[2]))


class Thresholds(namedtuple("Thresholds", "headroom idle over_engine over_memory memory_bound")):
    __slots__ = ()
    headroom: float
    idle: float
    over_engine: float
    over_memory: float
    memory_bound: float


def grade(snapshot: Json, params: Json) -> list[Json]:
    targets = param_refs(params, "workloads")
    if params.get("workload") is not None:
        targets.insert(0, split_ref(str(params["workload"])))
    if not targets:
        raise ParamError("name the workload(s) to judge: 'workload' or 'workloads'")
    if "usage_annotations" in params:
        raise ParamError("'usage_annotations' is no longer read: use comes only from the pods' measured usage")
    limits = Thresholds(headroom=param_number(params, "memory_headroom", 1.2, low=1),
                        idle=param_number(params, "idle_engine_active", 0.05, low=0, high=1),
                        over_engine=param_number(params, "overprovisioned_engine_active", 0.3, low=0, high=1),
                        over_memory=param_number(params, "overprovisioned_memory_share", 0.5, low=0, high=1),
                        memory_bound=param_number(params, "memory_bound_share", 0.9, low=0, high=1))
    return [_judge(snapshot, kind, name, params, limits) for kind, name in dict.fromkeys(targets)]


def _judge(snapshot: Json, kind: str, name: str, params: Json, limits: Thresholds) -> Json:
    label = f"{kind}/{name}"
    title = f"{label} asks for the GPU size it uses"
    workload = find(snapshot, kind, name)
    if workload is None:
        return check(f"gpu-size:{label}", title, 0, 1, f"{label} is gone; it must keep serving on a right-sized GPU.",
                     [problem(label, "not found")])
    pods = pods_of(snapshot, kind, name)
    if not any(p.get("phase") == "Running" for p in pods):
        return check(f"gpu-size:{label}", title, 0, 1, not_running(label, pods), [problem(label, "no pod running")])
    engine, memory = _usage(pods)
    if engine is None or memory is None:
        return check(f"gpu-size:{label}", title, 0, 1, f"No GPU use was measured for {label}, so its size cannot be "
                     "judged.", [problem(label, "no GPU engine-active or memory figures")], status="error")
    device = _device_memory(snapshot, pods, params)
    profiles = [parse_profile(p) for p in param_strings(params, "profiles", _default_profiles(device))]
    verdict = _verdict(engine, memory, device, profiles, limits)
    request = _gpu_request(workload.get("containers") or [])
    score, text = _score(request, verdict, profiles, device, params,
                         lambda profile: _fits(profile, engine, memory, limits.headroom))
    stale = [p for p in pods if p.get("phase") in ("Running", "Pending")
             and _gpu_request(p.get("containers") or []) != request]
    live = [p for p in pods if p.get("phase") in ("Running", "Pending")]
    figures = {"engine_active": engine, "memory_mib": memory, "needed_mib": round(memory * limits.headroom),
               "device_memory_mib": device, "right_size": verdict, "requested": _request_text(request)}
    evidence = [] if score >= 1 else [problem(label, text, **figures)]
    if stale:
        score *= 1 - len(stale) / len(live)
        evidence += [problem(f"Pod/{p.get('name')}", f"still holds {_pod_request_text(p)}, not the template's "
                             f"{_request_text(request)}") for p in stale]
        text += f"; {len(stale)} of {len(live)} pods still hold the old request"
    return check(f"gpu-size:{label}", title, score, 1, f"{label} {text}.", evidence)


def _usage(pods: list[Json]) -> tuple[float | None, float | None]:
    """The largest engine-active (as a share of a whole GPU) and framebuffer MiB measured on the running pods."""
    engines: list[float] = []
    memories: list[float] = []
    for pod in pods:
        if pod.get("phase") != "Running":
            continue
        share = _gpu_share(_gpu_request(pod.get("containers") or []))
        for container in pod.get("containers") or []:
            usage = container.get("usage") or {}
            if usage.get("gpu_engine_active") is not None:
                engines.append(float(usage["gpu_engine_active"]) * share)
            if usage.get("gpu_memory_mib") is not None:
                memories.append(float(usage["gpu_memory_mib"]))
    return max(engines, default=None), max(memories, default=None)


def _gpu_share(request: dict[str, float]) -> float:
    """Whole GPUs a pod holds: 1 per ``nvidia.com/gpu``, g/7 per ``<g>g`` MIG slice; 1 when it holds none (a
    figure measured without a known request is taken as a whole GPU's)."""
    share = sum(count if key == WHOLE_GPU else parse_profile(key.removeprefix(MIG_PREFIX)).compute / 7 * count
                for key, count in request.items())
    return share or 1.0


def _device_memory(snapshot: Json, pods: list[Json], params: Json) -> float:
    given = optional_number(params, "device_memory_mib", low=1)
    if given is not None:
        return given
    for pod in pods:
        value = ((node(snapshot, pod.get("node")) or {}).get("labels") or {}).get("nvidia.com/gpu.memory")
        if value and str(value).isdigit():
            return float(value)
    return float(DEFAULT_DEVICE_MIB)


def _default_profiles(device_mib: float) -> tuple[str, ...]:
    nearest = min(PROFILES_BY_MEMORY, key=lambda size: abs(size - device_mib))
    return PROFILES_BY_MEMORY[nearest]


def _verdict(engine: float, memory: float, device: float, profiles: list[Profile], limits: Thresholds) -> str:
    """The right size: a profile name, or ``"whole GPU"``."""
    if memory > limits.memory_bound * device:
        return "whole GPU"
    small = engine < limits.idle or (engine < limits.over_engine and memory < limits.over_memory * device)
    fitting = sorted((p for p in profiles if _fits(p, engine, memory, limits.headroom)),
                     key=lambda p: (p.cost_share(device), p.compute, p.memory_gb))
    if small and fitting:
        return fitting[0].name
    return "whole GPU" if not fitting or fitting[0].compute == 7 else fitting[0].name


def _fits(profile: Profile, engine: float, memory: float, headroom: float) -> bool:
    return profile.memory_mib >= memory * headroom and profile.compute / 7 >= engine


def _gpu_request(containers: list[Json]) -> dict[str, float]:
    """GPU resources per pod: whole GPUs and MIG slices, from limits (where extended resources live) or requests."""
    totals: dict[str, float] = {}
    for container in containers:
        asked = {**(container.get("requests") or {}), **(container.get("limits") or {})}
        for key, value in asked.items():
            if (key == WHOLE_GPU or key.startswith(MIG_PREFIX)) and float(value) > 0:
                totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def _pod_request_text(pod: Json) -> str:
    return _request_text(_gpu_request(pod.get("containers") or []))


def _request_text(request: dict[str, float]) -> str:
    if not request:
        return "no GPU"
    return " + ".join(f"{value:g} x {key}" for key, value in sorted(request.items()))


def _score(request: dict[str, float], verdict: str, profiles: list[Profile], device: float, params: Json,
           fits: Callable[[Profile], bool]) -> tuple[float, str]:
    best = set(param_strings(params, "best_profiles")) or {verdict}
    partial = {str(k): float(v) for k, v in param_map(params, "partial_credit_profiles").items()}
    right = f"the right size is {verdict if verdict == 'whole GPU' else 'one ' + verdict + ' MIG slice'}"
    if not request:
        return 0.0, f"asks for no GPU although it uses one; {right}"
    if WHOLE_GPU in request:
        if "whole GPU" in best:
            return 1.0 / request[WHOLE_GPU], f"asks for {_request_text(request)}: {right}"
        return 0.0, f"holds {_request_text(request)} while a MIG slice fits its use; {right}"
    if len(request) > 1:
        return 0.0, f"asks for several MIG profiles at once ({_request_text(request)}); {right}"
    key, count = next(iter(request.items()))
    requested = parse_profile(key.removeprefix(MIG_PREFIX))
    if requested.name in best:
        return 1.0 / count, f"asks for {_request_text(request)}: {right}"
    if requested.name in partial:
        return partial[requested.name] / count, f"asks for {_request_text(request)}, larger than needed; {right}"
    ideal = next((p for p in profiles if p.name == verdict), None)
    if partial or ideal is None or not fits(requested):
        return 0.0, f"asks for {_request_text(request)}, which does not fit its use; {right}"
    ratio = ideal.cost_share(device) / requested.cost_share(device)
    return ratio / count, f"asks for {_request_text(request)}, larger than needed; {right}"


if __name__ == "__main__":
    main(grade)
