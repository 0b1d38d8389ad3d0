"""Pure decisions of the detective control: a cloud sandbox's snapshot and its lab's guardrails -> what to do now.

The preventive control (the session role's policy) can miss: a launch by someone else with the session tag, a rule
the cloud does not evaluate, a policy bug. So every sweep looks at what the sandbox holds and judges each instance
against the lab's rules: its instance type among the allowed ones, its region among the allowed ones, and every
required tag present with a non-empty value (:func:`violations`). Only the snapshot is read, so one control serves
AWS and GCP alike.

Each violation (resource and rule) is acted on once (:func:`decide`): the lab's ``on_violation`` (``warn``: an
event and a webhook only; ``stop``; ``terminate``) the first time it is seen, nothing while it stays as it was. What
was seen is remembered by the caller in the store (``seen``: (resource, rule) -> the action taken), never on the
resource, where the learner could write it. One exception repeats an action: an instance stopped for a violation
that runs again is stopped again. Nothing here does I/O; the caller enforces the returned findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from labctl.catalog.models import Guardrails, Placement
from labctl.grading.snapshot import Resource, Snapshot

Rule = Literal["instance_type", "region", "required_tags"]
Action = Literal["warn", "stop", "terminate"]

# Instance phases in which a stopped instance costs compute again (EC2 and GCE spellings, compared without case).
RUNNING_PHASES = frozenset({"pending", "running", "provisioning", "staging"})
GONE_PHASES = frozenset({"shutting-down", "terminated", "terminating", "deleted"})


@dataclass(frozen=True)
class Violation:
    """One rule one resource breaks now."""

    resource: str  # as the snapshot names it: Instance/<id>
    rule: Rule
    detail: str  # what is wrong, for the learner and the instructor


@dataclass(frozen=True)
class Finding:
    """What to do about one violation now: record it (with an event) and, when ``enforce``, carry out ``action``."""

    violation: Violation
    action: Action
    enforce: bool  # the provider must stop or terminate the resource
    again: bool = False  # seen before: a stopped instance that runs again


def violations(snapshot: Snapshot, *, guardrails: Guardrails, placement: Placement) -> list[Violation]:
    """Every rule every instance of ``snapshot`` breaks, in snapshot order (type, region, tags per instance)."""
    found: list[Violation] = []
    for instance in snapshot.of_kind("Instance"):
        if _phase(instance) in GONE_PHASES:
            continue
        found += _broken(instance, guardrails=guardrails, placement=placement)
    return found


def _broken(instance: Resource, *, guardrails: Guardrails, placement: Placement) -> list[Violation]:
    out: list[Violation] = []
    if instance.instance_type not in placement.instance_types:
        out.append(Violation(instance.ref, "instance_type",
                             f"instance type {instance.instance_type or '(unknown)'} is not allowed in this lab "
                             f"(allowed: {', '.join(placement.instance_types)})"))
    if instance.region not in placement.regions:
        out.append(Violation(instance.ref, "region", f"region {instance.region or '(unknown)'} is not allowed in "
                                                     f"this lab (allowed: {', '.join(placement.regions)})"))
    missing = [key for key in guardrails.required_tags if not (instance.labels.get(key) or "").strip()]
    if missing:
        out.append(Violation(instance.ref, "required_tags",
                             f"missing required tag(s) {', '.join(missing)} (required: "
                             f"{', '.join(guardrails.required_tags)})"))
    return out


def decide(found: list[Violation], *, snapshot: Snapshot, on_violation: Action,
           seen: Mapping[tuple[str, str], str]) -> list[Finding]:
    """The findings due now: each violation not ``seen`` before gets ``on_violation``; a seen one gets nothing,
    except a ``stop`` whose instance runs again, which is stopped again. ``enforce`` is set where the resource still
    has to be acted on (a warning never; a stop only while the instance runs; a terminate unless it is going)."""
    phases = {r.ref: _phase(r) for r in snapshot.resources}
    findings: list[Finding] = []
    for violation in found:
        phase = phases.get(violation.resource, "")
        before = seen.get((violation.resource, violation.rule))
        if before is None:
            findings.append(Finding(violation, on_violation, enforce=_needs(on_violation, phase)))
        elif before == "stop" and phase in RUNNING_PHASES:
            findings.append(Finding(violation, "stop", enforce=True, again=True))
    return findings


def to_enforce(findings: list[Finding]) -> dict[str, Literal["stop", "terminate"]]:
    """Resource -> the one action to carry out on it (terminate wins over stop when rules disagree)."""
    out: dict[str, Literal["stop", "terminate"]] = {}
    for finding in findings:
        if finding.enforce and finding.action != "warn":
            out[finding.violation.resource] = "terminate" if "terminate" in (
                out.get(finding.violation.resource), finding.action) else "stop"
    return out


def _needs(action: Action, phase: str) -> bool:
    if action == "stop":
        return phase in RUNNING_PHASES
    if action == "terminate":
        return phase not in GONE_PHASES
    return False


def _phase(resource: Resource) -> str:
    return (resource.phase or "").lower()
