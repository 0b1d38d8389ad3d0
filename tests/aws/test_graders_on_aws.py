"""The existing graders, unchanged, on snapshots the AWS provider takes on moto and the meter prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from labctl.cost import meter
from labctl.cost.prices import load_sheet
from labctl.grading.runner import run_grader
from labctl.grading.snapshot import snapshot_dict
from labctl.providers.aws.sandbox import AwsSandboxes
from labctl.settings import REPO_ROOT
from tests.support import aws

TAGS = {"team": "ml-platform", "cost-center": "cc-2040", "env": "dev"}
PARAMS = {"required_labels": ["team", "cost-center", "env"], "min_coverage": 1.0}


def _graded(provider: AwsSandboxes, spec: Any, script: str, params: dict[str, Any]) -> list[Any]:
    snap = provider.snapshot(spec, now=datetime.now(UTC) + timedelta(hours=1))
    priced = meter.price(snap, load_sheet(REPO_ROOT / "labs" / "prices.yaml")).snapshot
    return run_grader(REPO_ROOT / "graders" / script, snapshot_dict(priced), params,
                      grader_id=script.removesuffix(".py"))


def test_tag_coverage_passes_when_every_instance_carries_the_tags(provider: AwsSandboxes) -> None:
    spec = aws.spec()
    provider.provision(spec)
    ec2 = aws.learner_ec2(provider.credentials(spec))
    aws.launch(ec2, spec.session_id, instance_type="g4dn.xlarge", spot=True, **TAGS)
    aws.launch(ec2, spec.session_id, instance_type="m5.large", **TAGS)
    (check,) = _graded(provider, spec, "tag_coverage.py", PARAMS)
    assert check.passed and check.score == check.max_score, check.feedback


def test_tag_coverage_names_the_untagged_and_placeholder_instances(provider: AwsSandboxes) -> None:
    spec = aws.spec()
    provider.provision(spec)
    ec2 = aws.learner_ec2(provider.credentials(spec))
    aws.launch(ec2, spec.session_id, **TAGS)
    bare = aws.launch(ec2, spec.session_id)  # only the session tag labctl requires
    placeholder = aws.launch(ec2, spec.session_id, **{**TAGS, "team": "tbd"})
    (check,) = _graded(provider, spec, "tag_coverage.py", PARAMS)
    assert not check.passed and check.score < check.max_score
    flagged = {str(e.get("resource")) for e in check.evidence}
    assert {f"Instance/{bare}", f"Instance/{placeholder}"} <= flagged, check.evidence


def test_the_budget_grader_reads_the_aws_snapshot(provider: AwsSandboxes) -> None:
    spec = aws.spec()
    provider.provision(spec)
    aws.launch(aws.learner_ec2(provider.credentials(spec)), spec.session_id, instance_type="g4dn.xlarge")
    checks = _graded(provider, spec, "budget.py", {"max_spend_percent": 100})
    assert checks and all(c.status != "error" and c.passed for c in checks), [c.feedback for c in checks]
