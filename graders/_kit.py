"""Shared helpers of the built-in graders (not a grader itself): the contract's I/O and snapshot lookups.

Standard library only, so a grader starts in tens of milliseconds and runs with any Python 3.11. Each built-in grader
is ``main(grade)`` around a pure ``grade(snapshot, params) -> list of checks``; :func:`main` reads
``{"snapshot", "params"}`` from stdin and prints ``{"checks": [...]}``. Invalid parameters (:class:`ParamError`)
become one check with status ``error`` naming the parameter, so a lab author sees the mistake in the grade.

The snapshot is read as plain JSON data in the shape of ``docs/SNAPSHOT.md`` (a missing key means null). The idle
rule here is the one ``labctl.grading.receipt`` applies.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping

# ``typing`` is for the type checker only: importing it would add milliseconds to every grader's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Json: TypeAlias = dict[str, Any]
    Grade: TypeAlias = Callable[[Json, Json], list[Json]]
else:
    Json = dict

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
_QUANTITY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_FACTORS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": 1e-9, "u": 1e-6,
            "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_PRECISION = 6
_NAMES_SHOWN = 4


class ParamError(ValueError):
    """A lab passed a parameter the grader cannot use; the message names it."""


# --- the contract ---------------------------------------------------------------------------------------------------


def main(grade: Grade) -> None:
    """Read the request from stdin, grade it, print the checks on stdout."""
    request = json.load(sys.stdin)
    snapshot, params = request.get("snapshot") or {}, request.get("params") or {}
    try:
        checks = grade(snapshot, params)
    except ParamError as exc:
        checks = [check("params", "Grader parameters are valid", 0, 1, f"The lab's grader parameters are invalid: "
                        f"{exc}.", [{"problem": str(exc)}], status="error")]
    json.dump({"checks": checks}, sys.stdout)
    sys.stdout.write("\n")


def check(check_id: str, title: str, score: float, max_score: float, feedback: str,
          evidence: Iterable[Json] = (), *, passed: bool | None = None, status: str | None = None) -> Json:
    """One check in the contract's shape; ``passed`` defaults to "full marks"."""
    score = round(min(max(score, 0.0), max_score), _PRECISION)
    verdict = score >= max_score if passed is None else passed
    item: Json = {"id": check_id, "title": title, "passed": bool(verdict), "score": score, "max_score": max_score,
                  "feedback": feedback, "evidence": list(evidence)}
    if status is not None:
        item["status"] = status
    return item


def problem(resource: str, text: str, **details: Any) -> Json:
    """An evidence item: which resource, what is wrong, and any figures behind it."""
    return {"resource": resource, "problem": text, **details}


def names(items: Iterable[str], limit: int = _NAMES_SHOWN) -> str:
    """``"A, B and C"``, or ``"A, B, C, D and 3 more"`` past ``limit``."""
    listed = list(dict.fromkeys(items))
    if not listed:
        return "none"
    if len(listed) > limit:
        return ", ".join(listed[:limit]) + f" and {len(listed) - limit} more"
    if len(listed) == 1:
        return listed[0]
    return ", ".join(listed[:-1]) + " and " + listed[-1]


def share_text(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "n/a"


# --- parameters -------------------------------------------------------------------------------------------------------


def param_number(params: Json, key: str, default: float | None = None, *, low: float | None = None,
                 high: float | None = None) -> float:
    """A number parameter, within [low, high] when given."""
    value = params.get(key, default)
    if value is None:
        raise ParamError(f"'{key}' is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(f"'{key}' must be a number, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ParamError(f"'{key}' must be between {low} and {high}, not {value!r}")
    return float(value)


def optional_number(params: Json, key: str, *, low: float | None = None, high: float | None = None) -> float | None:
    return param_number(params, key, low=low, high=high) if params.get(key) is not None else None


def param_strings(params: Json, key: str, default: Iterable[str] = ()) -> list[str]:
    """A list-of-text parameter (a single text is taken as a one-item list)."""
    value = params.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ParamError(f"'{key}' must be a list of text, not {value!r}")
    return list(value)


def param_map(params: Json, key: str) -> Json:
    value = params.get(key) or {}
    if not isinstance(value, dict):
        raise ParamError(f"'{key}' must be a mapping, not {value!r}")
    return value


def split_ref(ref: str) -> tuple[str, str]:
    """``"Deployment/web"`` -> ("Deployment", "web")."""
    kind, slash, name = ref.partition("/")
    if not slash or not kind or not name or "/" in name:
        raise ParamError(f"{ref!r} must name a resource as Kind/name, e.g. 'Deployment/web'")
    return kind, name


def param_refs(params: Json, key: str) -> list[tuple[str, str]]:
    return [split_ref(ref) for ref in param_strings(params, key)]


# --- the snapshot -----------------------------------------------------------------------------------------------------


def resources(snapshot: Json) -> list[Json]:
    return list(snapshot.get("resources") or [])


def ref(res: Mapping[str, Any]) -> str:
    return f"{res.get('kind')}/{res.get('name')}"


def find(snapshot: Json, kind: str, name: str) -> Json | None:
    return next((r for r in resources(snapshot) if r.get("kind") == kind and r.get("name") == name), None)


def of_kind(snapshot: Json, *kinds: str) -> list[Json]:
    return [r for r in resources(snapshot) if r.get("kind") in kinds]


def node(snapshot: Json, name: str | None) -> Json | None:
    if not name:
        return None
    return next((n for n in snapshot.get("nodes") or [] if n.get("name") == name), None)


def pods_of(snapshot: Json, kind: str, name: str) -> list[Json]:
    """The pods whose top-level controller is ``kind/name``."""
    return [r for r in of_kind(snapshot, "Pod")
            if (r.get("controller") or {}).get("kind") == kind and (r.get("controller") or {}).get("name") == name]


def labels(res: Json, key: str = "labels") -> dict[str, str]:
    return dict(res.get(key) or {})


def selector_matches(selector: Json | None, target: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; a missing selector matches nothing, an empty one everything.

    A plain ``{label: value}`` map (a Service's selector, as a producer may pass it) is read as ``matchLabels``.
    """
    if selector is None:
        return False
    if not {"matchLabels", "matchExpressions"} & selector.keys():
        selector = {"matchLabels": selector}
    if any(target.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for req in selector.get("matchExpressions") or []:
        key, operator, values = req.get("key"), req.get("operator"), req.get("values") or []
        present = key in target
        holds = {"Exists": present, "DoesNotExist": not present, "In": present and target.get(key) in values,
                 "NotIn": target.get(key) not in values}.get(operator, False)
        if not holds:
            return False
    return True


def quantity(value: Any) -> float:
    """A Kubernetes quantity (``"25m"``, ``"250Mi"``, ``2``) as a number (cores, bytes, count)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ParamError(f"{value!r} is not a Kubernetes quantity (e.g. '25m', '250Mi', '2')")
    return float(match[1]) * _FACTORS[match[2] or ""]


# --- use and idleness (the rule of labctl.grading.receipt) ----------------------------------------------------------


def pod_cpu_usage(pod: Json) -> float | None:
    """The pod's measured CPU use in cores (sum over containers), or None when nothing was measured."""
    cpus = [(c.get("usage") or {}).get("cpu") for c in pod.get("containers") or []]
    measured = [float(v) for v in cpus if v is not None]
    return sum(measured) if measured else None


def pod_gpu_engine_active(pod: Json) -> float | None:
    values = [(c.get("usage") or {}).get("gpu_engine_active") for c in pod.get("containers") or []]
    measured = [float(v) for v in values if v is not None]
    return max(measured) if measured else None


def is_idle_pod(pod: Json, idle_cpu_cores: float, idle_gpu_engine_active: float = 0.05) -> bool:
    """A running pod whose measured CPU use is under the threshold (and whose GPUs, if measured, are idle too)."""
    if pod.get("phase") != "Running":
        return False
    cpu = pod_cpu_usage(pod)
    if cpu is None or cpu >= idle_cpu_cores:
        return False
    engine = pod_gpu_engine_active(pod)
    return engine is None or engine < idle_gpu_engine_active


def not_running(label: str, pods: list[Json]) -> str:
    """Feedback for a workload none of whose pods runs: nothing serves, so no use is measured to size it by."""
    pending = sum(p.get("phase") == "Pending" for p in pods)
    held = f" ({pending} Pending)" if pending else ""
    return (f"No pod of {label} is running{held}: it serves nothing and no use is measured to size it by; get its "
            "pods running (kubectl describe pod shows why they wait).")


def is_load_balancer(res: Json) -> bool:
    return res.get("kind") == "Service" and res.get("service_type") == "LoadBalancer"


def load_balancer_without_endpoints(snapshot: Json, service: Json) -> bool:
    """No ready endpoints; when the count is unknown, a selector that matches no running pod."""
    if service.get("endpoints") is not None:
        return int(service["endpoints"]) == 0
    if service.get("selector") is None:
        return False
    return not any(p.get("phase") == "Running" and selector_matches(service["selector"], labels(p))
                   for p in of_kind(snapshot, "Pod"))


def is_unmounted_claim(res: Json) -> bool:
    return res.get("kind") == "PersistentVolumeClaim" and not res.get("mounted_by")


# --- spot capacity (docs/FINOPS.md section 1) -------------------------------------------------------------------------

#: Node labels that mark spot / preemptible capacity, per platform; values compared case-insensitively.
SPOT_NODE_LABELS: dict[str, str] = {
    "eks.amazonaws.com/capacityType": "spot",
    "karpenter.sh/capacity-type": "spot",
    "cloud.google.com/gke-spot": "true",
    "cloud.google.com/gke-provisioning": "spot",
    "cloud.google.com/gke-preemptible": "true",
    "kubernetes.azure.com/scalesetpriority": "spot",
    "node.kubernetes.io/lifecycle": "spot",
}


def is_spot_node(node_data: Json, spot_labels: Mapping[str, str] | None) -> bool:
    """With ``spot_labels``, whether any of them is on the node; without, the snapshot's ``capacity_type``."""
    if spot_labels is None:
        return node_data.get("capacity_type") == "spot"
    node_labels = {k: str(v).lower() for k, v in (node_data.get("labels") or {}).items()}
    return any(node_labels.get(k) == str(v).lower() for k, v in spot_labels.items())
