"""Pure: a session's sandbox as Kubernetes objects, rendered from the Jinja2 templates in ``manifests/``.

``manifests/sandbox/*.yaml.j2`` hold the namespace, the admission policy, quota, limits, network policies and RBAC;
the lab's starter templates follow. Templates render with ``StrictUndefined`` so a missing value is an error, never
an empty string. Every object of one session carries ``labctl.dev/session`` so sweeps can find strays; the objects all
sandboxes share (the admission policy and its binding, the node-reader ClusterRole) carry only labctl's
``managed-by`` label.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from labctl.catalog import loader
from labctl.catalog.models import Lab, metadata_exceptions
from labctl.catalog.yamldoc import load_all
from labctl.ports import SandboxSpec

SESSION_LABEL = "labctl.dev/session"
LAB_LABEL = "labctl.dev/lab"
LEARNER_LABEL = "labctl.dev/learner"
MANAGED_BY = {"app.kubernetes.io/managed-by": "labctl"}
ADMISSION_POLICY = "labctl-sandbox"  # the ValidatingAdmissionPolicy and its binding
LEARNER = "learner"  # the sandbox's ServiceAccount, its Role and RoleBinding


def session_labels(spec: SandboxSpec) -> dict[str, str]:
    """Every object of the sandbox carries these; the learner is named on the namespace only (its cost tag), so a
    warm pool's sandbox becomes a learner's by relabelling one object."""
    return {SESSION_LABEL: spec.session_id, LAB_LABEL: spec.lab.id, **MANAGED_BY}


def node_binding_name(namespace: str) -> str:
    return f"labctl-nodes-{namespace}"


def egress_rules(lab: Lab) -> list[dict[str, Any]]:
    """The lab's declared egress as NetworkPolicy egress peers and ports, cloud metadata addresses cut out."""
    rules: list[dict[str, Any]] = []
    for rule in lab.network.egress:
        block: dict[str, Any] = {"cidr": rule.cidr}
        if cut := metadata_exceptions(rule.cidr):
            block["except"] = cut
        rules.append({"ip_block": block, "ports": [p.model_dump() for p in rule.ports]})
    return rules


def sandbox_objects(spec: SandboxSpec, manifests_dir: Path, *, frozen: bool = False) -> list[dict[str, Any]]:
    """The sandbox's own objects, in apply order (namespace first)."""
    env = loader.environment(manifests_dir)
    context = sandbox_context(spec, frozen=frozen)
    objects: list[dict[str, Any]] = []
    for name in sandbox_templates(manifests_dir):
        objects.extend(load_all(env.get_template(name).render(context)))
    return objects


def sandbox_context(spec: SandboxSpec, *, frozen: bool = False) -> dict[str, Any]:
    """What the sandbox templates are rendered with."""
    labels = session_labels(spec)
    lab = spec.lab
    if lab.limit_range.max is None:  # the catalog fills it in from the quota for every kubernetes lab
        raise ValueError(f"lab {lab.id} has no limit_range.max and no cpu/memory quota to take it from")
    return {
        "namespace": spec.namespace,
        "labels": labels,
        "namespace_labels": {
            **lab.cost_labels,
            **labels,
            LEARNER_LABEL: spec.learner_id,
            "pod-security.kubernetes.io/enforce": lab.pod_security,
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": lab.pod_security,
        },
        "expires_at": spec.expires_at.isoformat(),
        "budget_usd": f"{spec.budget_usd:.2f}",
        "quota": dict(lab.quota),
        "default_request": lab.limit_range.default_request.model_dump(),
        "default_limit": lab.limit_range.default_limit.model_dump(),
        "limit_min": lab.limit_range.min.model_dump(),
        "limit_max": lab.limit_range.max.model_dump(),
        "egress": egress_rules(lab),
        "service_types": lab.network.service_types,
        "priority_classes": lab.priority_classes,
        "policy_name": ADMISSION_POLICY,
        "shared_labels": MANAGED_BY,
        "session_label": SESSION_LABEL,
        "frozen": frozen,
    }


@functools.cache
def sandbox_templates(manifests_dir: Path) -> tuple[str, ...]:
    """The sandbox templates' names under ``manifests_dir``, in apply order (listed once per process)."""
    return tuple(f"sandbox/{t.name}" for t in sorted((manifests_dir / "sandbox").glob("*.yaml.j2")))


def policy_probe(namespace: str) -> dict[str, Any]:
    """A Secret the admission policy refuses the learner, created with dry-run to see that the policy holds."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "labctl-policy-probe", "namespace": namespace,
                         "annotations": {"kubernetes.io/service-account.name": LEARNER}}}


def handed_over(spec: SandboxSpec, previous: SandboxSpec, manifests_dir: Path) -> list[dict[str, Any]]:
    """The objects of a sandbox made for ``previous`` (a warm pool's) that render differently for ``spec`` (its
    learner: the namespace's learner label, expiry and budget), sandbox objects then starters, in apply order. A
    template whose text renders the same for both is not parsed: parsing the YAML is most of a render's cost."""
    env = loader.environment(manifests_dir)
    now, before = sandbox_context(spec), sandbox_context(previous)
    changed: list[dict[str, Any]] = []
    for name in sandbox_templates(manifests_dir):
        template = env.get_template(name)
        text, old = template.render(now), template.render(before)
        if text != old:
            was = load_all(old)
            changed.extend(obj for obj in load_all(text) if obj not in was)
    starter_now, starter_before = _starter_context(spec), _starter_context(previous)
    if any(env.get_template(name).render(starter_now) != env.get_template(name).render(starter_before)
           for name in spec.lab.starter):
        was = starter_objects(previous, manifests_dir)
        changed.extend(obj for obj in starter_objects(spec, manifests_dir) if obj not in was)
    return changed


def _starter_context(spec: SandboxSpec) -> dict[str, Any]:
    return {"namespace": spec.namespace, "session_id": spec.session_id, "lab_id": spec.lab.id,
            "learner_id": spec.learner_id}


def starter_objects(spec: SandboxSpec, manifests_dir: Path) -> list[dict[str, Any]]:
    """The lab's starter workloads, labelled with the session on top of their own labels."""
    docs = loader.render_starter(spec.lab, manifests_dir, _starter_context(spec))
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        meta["namespace"] = spec.namespace
        meta["labels"] = {**(meta.get("labels") or {}), SESSION_LABEL: spec.session_id}
    return docs
