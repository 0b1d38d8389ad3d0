"""The GCP sandbox played by the learner: with the SDK and the credentials labctl issued, against the fake Compute
server, the learner tries to move the starter's cost out of their sandbox by rewriting its labels (``setLabels``
replaces the whole map). The starter stays metered: labctl knows its names and puts the session label back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from labctl.cost import meter
from labctl.cost.prices import load_sheet
from labctl.ports import SandboxSpec
from labctl.providers.gcp import labels as lbl
from labctl.providers.gcp.sandbox import GcpSandboxes
from labctl.settings import REPO_ROOT
from tests.support import gce_fake, gcp


@pytest.fixture(scope="module")
def provider() -> Iterator[GcpSandboxes]:
    with gce_fake.serve() as fake:
        yield GcpSandboxes(project=gcp.PROJECT, endpoint_url=fake.url)


def _gpu_cost_per_hour(provider: GcpSandboxes, spec: SandboxSpec, name: str) -> float | None:
    snap = provider.snapshot(spec, now=datetime.now(UTC) + timedelta(hours=1))
    priced = meter.price(snap, load_sheet(REPO_ROOT / "labs" / "prices.yaml")).snapshot
    vm = priced.resource("Instance", name)
    return None if vm is None else vm.hourly_usd


@pytest.mark.parametrize("rewrite", ["drop the session label", "claim another session's label"])
def test_relabelling_the_starter_does_not_take_it_out_of_the_sandbox(provider: GcpSandboxes, rewrite: str) -> None:
    mine, victim = gcp.spec(), gcp.spec()
    provider.provision(mine)
    provider.provision(victim)
    who = gcp.learner(provider.credentials(mine))
    gpu = gcp.starter_name("trainer-a100", mine.session_id)
    new = {"team": "ml-research"} if rewrite.startswith("drop") else {
        **gcp.OWNER, lbl.SESSION_LABEL: lbl.session_value(victim.session_id)}
    who.set_labels(gpu, new)

    assert _gpu_cost_per_hour(provider, mine, gpu) == 3.673  # still the learner's, still billed
    stored = who.instances.get(project=who.project, zone=who.zone, instance=gpu)
    assert dict(stored.labels)[lbl.SESSION_LABEL] == mine.session_id
    assert _gpu_cost_per_hour(provider, victim, gpu) is None


def test_a_resource_made_without_the_session_label_is_graded_as_absent(provider: GcpSandboxes) -> None:
    """The learner's own VM without the label is invisible to labctl: it earns nothing (the lab's graders see no
    spot instance), so leaving the label off is never a way to pass."""
    spec = gcp.spec()
    provider.provision(spec)
    who = gcp.learner(provider.credentials(spec))
    name = who.launch(gcp.starter_name("hidden", spec.session_id), spot=True, labels=gcp.OWNER,
                      with_session_label=False)
    snap = provider.snapshot(spec, now=datetime.now(UTC))
    assert snap.resource("Instance", name) is None
    assert [r.name for r in snap.of_kind("Instance")] == [gcp.starter_name("trainer-a100", spec.session_id)]
