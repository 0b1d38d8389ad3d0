"""The ``aws`` section of a lab: an aws lab must say where it runs and what it may launch; others may not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.support import aws


def test_an_aws_lab_carries_its_fence() -> None:
    lab = aws.aws_lab()
    assert lab.aws is not None and lab.aws.regions == aws.REGIONS and lab.aws.instance_types == aws.INSTANCE_TYPES


@pytest.mark.parametrize(("changes", "message"), [
    ({"aws": None}, "an aws lab needs an `aws` section with its regions and instance_types"),
    ({"aws": {"regions": [], "instance_types": ["m5.large"]}}, "List should have at least 1 item"),
    ({"aws": {"regions": ["mars-1"], "instance_types": ["m5.large"]}}, "String should match pattern"),
    ({"aws": {"regions": ["us-east-1"], "instance_types": ["m5 large"]}}, "String should match pattern"),
    ({"aws": {"regions": ["us-east-1", "us-east-1"], "instance_types": ["m5.large"]}},
     "'us-east-1' is listed twice in regions"),
    ({"aws": {"regions": ["us-east-1"], "instance_types": ["m5.large"], "account_id": "12"}}, "String should match"),
    ({"provider": "kubernetes", "quota": {"cpu": "1", "memory": "1Gi", "pods": "1"}},
     "the `aws` section applies only to aws labs, not to a kubernetes lab"),
])
def test_a_wrong_aws_section_is_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        aws.aws_lab(**changes)
