"""The ``gcp`` section of a lab: a gcp lab must say where it runs and what it may launch; others may not have one.
The shipped lab loads with its starter."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from labctl.catalog import loader
from labctl.settings import REPO_ROOT
from tests.support import gcp

FENCE = {"zones": ["us-central1-a"], "machine_types": ["e2-small"]}


def test_a_gcp_lab_carries_its_fence_and_starter() -> None:
    lab = gcp.gcp_lab()
    assert lab.gcp is not None and lab.gcp.zones == gcp.ZONES and lab.gcp.project == gcp.PROJECT
    assert lab.cloud_starter is not None
    assert [s.name for s in lab.cloud_starter.resources] == ["trainer-a100", "scratch-old"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"gcp": None}, "a gcp lab needs a `gcp` section with its zones and machine_types"),
    ({"gcp": {**FENCE, "zones": []}}, "List should have at least 1 item"),
    ({"gcp": {**FENCE, "zones": ["us-central1"]}}, "String should match pattern"),
    ({"gcp": {**FENCE, "machine_types": ["e2 small"]}}, "String should match pattern"),
    ({"gcp": {**FENCE, "zones": ["us-central1-a", "us-central1-a"]}}, "listed twice in zones"),
    ({"gcp": {**FENCE, "starter": []}}, "Extra inputs are not permitted"),  # the old GCP-only starter is gone
    ({"provider": "kubernetes", "quota": {"cpu": "1", "memory": "1Gi", "pods": "1"}, "cloud_starter": None},
     "the `gcp` section applies only to gcp labs, not to a kubernetes lab"),
])
def test_a_wrong_gcp_section_is_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        gcp.gcp_lab(**changes)


def test_the_shipped_gcp_lab_loads() -> None:
    lab = loader.load_lab(REPO_ROOT / "labs" / "gcp-spot-and-labels" / "lab.yaml")
    assert lab.provider == "gcp" and lab.gcp is not None and lab.max_score == 100
    assert lab.cloud_starter is not None and lab.cloud_starter.instances and lab.cloud_starter.volumes
