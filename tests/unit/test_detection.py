"""The detective control's pure decision as a table: instances and a lab's guardrails in, violations and findings out.

Each violation is acted on once; a stopped instance that runs again is stopped again; warnings never enforce.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from labctl.catalog.models import Guardrails, Lab, Placement
from labctl.grading.snapshot import BudgetInfo, CostInfo, Resource, SessionInfo, Snapshot
from labctl.ports import Suspension
from labctl.service import detection
from tests.support import aws

T0 = datetime(2026, 7, 20, 10, 0, tzinfo=UTC)
PLACEMENT = Placement(regions=("us-east-1", "us-west-2"), instance_types=("m5.large", "g4dn.xlarge"))
RULES = Guardrails(required_tags=["team", "cost-center"], on_violation="stop")
TAGS = {"team": "ml", "cost-center": "cc-1", "labctl-session": "s-1"}


def _instance(name: str, *, type_: str = "m5.large", region: str = "us-east-1", phase: str = "running",
              tags: dict[str, str] | None = None) -> Resource:
    return Resource(kind="Instance", name=name, instance_type=type_, region=region, phase=phase,
                    labels=TAGS if tags is None else tags, capacity_type="on-demand")


def _snap(*resources: Resource) -> Snapshot:
    return Snapshot(session=SessionInfo(id="s-1", lab_id="l", learner_id="ada", provider="aws", started_at=T0,
                                        taken_at=T0),
                    budget=BudgetInfo(budget_usd=10), cost=CostInfo(accrued_usd=0, burn_rate_usd_per_hour=0,
                                                                    usage_source="requests"),
                    resources=list(resources))


@pytest.mark.parametrize(("instance", "rules"), [
    (_instance("i-ok"), []),
    (_instance("i-gpu", type_="g5.xlarge"), ["instance_type"]),
    (_instance("i-far", region="eu-west-1"), ["region"]),
    (_instance("i-bare", tags={"labctl-session": "s-1"}), ["required_tags"]),
    (_instance("i-blank", tags={"team": " ", "cost-center": "cc-1"}), ["required_tags"]),
    (_instance("i-all", type_="p5.4xlarge", region="eu-west-1", tags={}), ["instance_type", "region",
                                                                          "required_tags"]),
    (_instance("i-gone", type_="g5.xlarge", phase="shutting-down"), []),
])
def test_violations_name_each_rule_broken(instance: Resource, rules: list[str]) -> None:
    found = detection.violations(_snap(instance), guardrails=RULES, placement=PLACEMENT)
    assert [v.rule for v in found] == rules
    assert all(v.resource == instance.ref for v in found)


def test_the_detail_says_what_is_wrong_and_what_is_allowed() -> None:
    found = detection.violations(_snap(_instance("i-1", type_="g5.xlarge", tags={"team": "ml"})), guardrails=RULES,
                                 placement=PLACEMENT)
    assert found[0].detail == "instance type g5.xlarge is not allowed in this lab (allowed: m5.large, g4dn.xlarge)"
    assert found[1].detail == "missing required tag(s) cost-center (required: team, cost-center)"


def test_volumes_and_other_kinds_are_not_judged() -> None:
    volume = Resource(kind="Volume", name="vol-1", region="eu-west-1", labels={})
    assert detection.violations(_snap(volume), guardrails=RULES, placement=PLACEMENT) == []


Case = tuple[str, str, dict[tuple[str, str], str], list[tuple[str, bool, bool]]]


@pytest.mark.parametrize(("on_violation", "phase", "seen", "expected"), [
    ("warn", "running", {}, [("warn", False, False)]),
    ("stop", "running", {}, [("stop", True, False)]),
    ("stop", "stopped", {}, [("stop", False, False)]),  # already stopped: recorded, nothing to do
    ("terminate", "stopped", {}, [("terminate", True, False)]),
    ("warn", "running", {("Instance/i-1", "instance_type"): "warn"}, []),  # warned once
    ("stop", "stopped", {("Instance/i-1", "instance_type"): "stop"}, []),  # stays stopped: nothing again
    ("stop", "running", {("Instance/i-1", "instance_type"): "stop"}, [("stop", True, True)]),  # ran again
    ("stop", "pending", {("Instance/i-1", "instance_type"): "stop"}, [("stop", True, True)]),
    ("terminate", "running", {("Instance/i-1", "instance_type"): "terminate"}, []),
])
def test_each_violation_is_acted_on_once(on_violation: Any, phase: str, seen: dict[tuple[str, str], str],
                                         expected: list[tuple[str, bool, bool]]) -> None:
    snap = _snap(_instance("i-1", type_="g5.xlarge", phase=phase))
    found = detection.violations(snap, guardrails=RULES, placement=PLACEMENT)
    findings = detection.decide(found, snapshot=snap, on_violation=on_violation, seen=seen)
    assert [(f.action, f.enforce, f.again) for f in findings] == expected


def test_one_action_per_resource_however_many_rules_it_breaks() -> None:
    snap = _snap(_instance("i-1", type_="g5.xlarge", region="eu-west-1", tags={}), _instance("i-2"))
    found = detection.violations(snap, guardrails=RULES, placement=PLACEMENT)
    findings = detection.decide(found, snapshot=snap, on_violation="terminate", seen={})
    assert len(findings) == 3
    assert detection.to_enforce(findings) == {"Instance/i-1": "terminate"}
    assert detection.to_enforce(detection.decide(found, snapshot=snap, on_violation="warn", seen={})) == {}


def test_the_guardrails_section_is_checked_where_it_is_written() -> None:
    lab = aws.aws_lab(guardrails={"required_tags": ["team"], "on_violation": "terminate",
                                  "watch_regions": ["eu-west-1"]})
    assert lab.guardrails is not None and lab.guardrails.on_violation == "terminate"
    assert lab.placement == Placement(regions=tuple(aws.REGIONS), instance_types=tuple(aws.INSTANCE_TYPES))
    with pytest.raises(ValidationError, match="watch only regions the lab does not allow"):
        aws.aws_lab(guardrails={"watch_regions": ["us-east-1"]})
    with pytest.raises(ValidationError, match="on_violation"):
        aws.aws_lab(guardrails={"on_violation": "delete"})
    with pytest.raises(ValidationError, match="listed twice"):
        aws.aws_lab(guardrails={"required_tags": ["team", "team"]})


def test_a_kubernetes_lab_cannot_have_guardrails() -> None:
    data = {"id": "k", "title": "k", "summary": "k", "provider": "kubernetes", "budget": {"usd": 1},
            "time": {"limit": "1h", "max_extension": "0"}, "quota": {"cpu": "1", "memory": "1Gi", "pods": "2"},
            "graders": [{"id": "t", "script": "graders/tag_coverage.py", "weight": 1}],
            "guardrails": {"on_violation": "stop"}}
    with pytest.raises(ValidationError, match="a kubernetes lab is fenced by its quota"):
        Lab.model_validate(data)


@pytest.mark.parametrize(("record", "summary"), [
    (Suspension(replicas={"Instance/us-east-1/i-1": 1, "Instance/us-west-2/i-2": 1}),
     "2 instance(s) stopped: i-1, i-2"),
    (Suspension(), "nothing was running"),
    (Suspension(replicas={"Deployment/web": 2}, quota_pods="10"),
     "1 workload(s) scaled to 0; 0 Job/CronJob(s) suspended; 0 DaemonSet(s) parked; quota pods=0"),
])
def test_a_suspension_summary_names_what_its_record_holds(record: Suspension, summary: str) -> None:
    assert record.summary() == summary
