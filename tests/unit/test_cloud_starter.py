"""A cloud lab's starter (``cloud_starter``) has one shape on AWS and GCP: instances and volumes with a name, a type,
spot or not, a zone, tags (labels on GCP). It is checked against the lab's own placement (zones, and the allowed
types where the lab's guardrails would remove anything else) and, on GCP, against GCP's label rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.support import aws, gcp

FENCE = {"zones": ["us-central1-a"], "machine_types": ["e2-small"]}
DISK = {"name": "d", "size_gib": 1}


@pytest.mark.parametrize(("starter", "message"), [
    ({"volumes": [{**DISK, "zone": "europe-west1-b"}]}, "is in zone europe-west1-b, not one of the lab's zones"),
    ({"volumes": [DISK, DISK]}, "names d more than once"),
    ({"volumes": [{**DISK, "tags": {"Team": "x"}}]}, "labels GCP refuses: key 'Team' must match"),
    ({"volumes": [{**DISK, "tags": {"team": "ML Research"}}]}, "value 'ML Research' of 'team' must match"),
    ({"volumes": [{"name": "d" * 55, "size_gib": 1}]}, "at most 54 characters"),
    ({"buckets": [{"name": "b"}]}, "Extra inputs are not permitted"),
])
def test_a_wrong_gcp_starter_is_named(starter: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        gcp.gcp_lab(gcp={**FENCE, "machine_types": ["e2-small", "n2-standard-4"]}, cloud_starter=starter)


@pytest.mark.parametrize(("starter", "message"), [
    ({"volumes": [{**DISK, "zone": "us-west-2a"}]}, "not an availability zone of the home region us-east-1"),
])
def test_a_wrong_aws_starter_is_named(starter: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        aws.aws_lab(cloud_starter=starter)


def test_a_starter_of_a_type_the_lab_forbids_is_the_lesson_unless_guardrails_would_remove_it() -> None:
    gpu = {"instances": [{"name": "vm", "instance_type": "a2-highgpu-1g"}]}
    assert gcp.gcp_lab(cloud_starter=gpu, guardrails={"on_violation": "warn"}).cloud_starter is not None
    with pytest.raises(ValidationError, match="its guardrails would terminate it at the first sweep"):
        gcp.gcp_lab(cloud_starter=gpu, guardrails={"on_violation": "terminate"})
    with pytest.raises(ValidationError, match=r"which the lab does not allow .* would stop it"):
        aws.aws_lab(cloud_starter={"instances": [{"name": "vm", "instance_type": "p4d.24xlarge"}]},
                    guardrails={"on_violation": "stop"})


def test_one_starter_shape_loads_on_both_clouds() -> None:
    starter = {"instances": [{"name": "vm", "instance_type": "e2-small", "spot": True, "zone": "us-central1-a",
                              "tags": {"team": "ml"}}], "volumes": [{**DISK, "disk_type": "pd-ssd"}]}
    on_gcp = gcp.gcp_lab(gcp=FENCE, cloud_starter=starter).cloud_starter
    assert on_gcp is not None and on_gcp.instances[0].spot and on_gcp.volumes[0].disk_type == "pd-ssd"
    aws_lab = aws.aws_lab()
    assert aws_lab.aws is not None
    on_aws = aws.aws_lab(cloud_starter={"instances": [{"name": "vm", "instance_type": aws_lab.aws.instance_types[0],
                                                       "zone": f"{aws_lab.aws.regions[0]}b", "tags": {"Team": "ML"}}]})
    assert on_aws.cloud_starter is not None and on_aws.cloud_starter.instances[0].tags == {"Team": "ML"}
