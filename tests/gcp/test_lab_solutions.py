"""The ``gcp-spot-and-labels`` lab end to end on the fake: the provider makes the declared starter, a learner scripts
a solution with the SDK from the credentials labctl issued, and the lab's graders (the same scripts as for Kubernetes)
grade the priced snapshot. The reference solution gets full marks; each wrong one loses exactly its checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.cost import meter
from labctl.cost.prices import load_sheet
from labctl.grading.checks import Grade
from labctl.grading.runner import grade
from labctl.ports import SandboxSpec
from labctl.providers.gcp.sandbox import GcpSandboxes
from labctl.settings import REPO_ROOT
from tests.support import gcp

LAB = REPO_ROOT / "labs" / "gcp-spot-and-labels" / "lab.yaml"
Solution = Callable[[gcp.Learner, str], None]


@pytest.fixture(scope="module")
def lab() -> Lab:
    return loader.load_lab(LAB)


def _graded(provider: GcpSandboxes, lab: Lab, solution: Solution | None) -> tuple[Grade, SandboxSpec]:
    spec = gcp.spec(lab)
    provider.provision(spec)
    if solution is not None:
        solution(gcp.learner(provider.credentials(spec)), spec.session_id)
    snap = provider.snapshot(spec, now=datetime.now(UTC) + timedelta(minutes=10))
    priced = meter.price(snap, load_sheet(REPO_ROOT / "labs" / "prices.yaml")).snapshot
    return grade(lab, priced, REPO_ROOT / "graders", REPO_ROOT), spec


def _failed(result: Grade) -> set[str]:
    return {f"{c.grader}/{c.id}" for c in result.checks if not c.passed}


def test_the_reference_solution_gets_full_marks(provider: GcpSandboxes, lab: Lab) -> None:
    result, _ = _graded(provider, lab, gcp.reference_solution)
    assert result.passed and result.score == result.max_score == 100, [
        (c.grader, c.id, c.feedback) for c in result.checks if not c.passed]


def test_the_untouched_starter_fails_labels_spot_and_orphans(provider: GcpSandboxes, lab: Lab) -> None:
    result, spec = _graded(provider, lab, None)
    assert _failed(result) == {"instance-labels/label-coverage", "spot-instances/instance-spot-share",
                               "spot-instances/instance-types", "orphan-disks/orphans"}
    orphans = next(c for c in result.checks if c.id == "orphans")
    assert f"Volume/{gcp.starter_name('scratch-old', spec.session_id)}" in orphans.feedback


@pytest.mark.parametrize(("solution", "failed"), [
    (gcp.wrong_stopped_not_deleted, {"instance-labels/label-coverage", "orphan-disks/orphans"}),
    (gcp.wrong_spot_gpu_unlabelled, {"instance-labels/label-coverage", "spot-instances/instance-types"}),
    (gcp.wrong_relabel_only, {"spot-instances/instance-spot-share", "spot-instances/instance-types"}),
    (gcp.wrong_without_session_label, {"instance-labels/label-coverage", "spot-instances/instance-spot-share"}),
], ids=lambda v: getattr(v, "__name__", ""))
def test_each_wrong_solution_loses_its_checks(provider: GcpSandboxes, lab: Lab, solution: Solution,
                                              failed: set[str]) -> None:
    result, _ = _graded(provider, lab, solution)
    assert _failed(result) == failed, [(c.grader, c.id, c.feedback) for c in result.checks]
    assert 0 < result.score < result.max_score
