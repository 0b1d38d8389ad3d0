"""The GCP provider against the fake Compute server: provision (the declared starter), credentials a learner's SDK
uses, snapshot fields, suspend / resume, enforce, destroy, a leftover named, Google's refusals carried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labctl.ports import ProviderError, Suspension
from labctl.providers.gcp import labels as lbl
from labctl.providers.gcp.sandbox import GcpSandboxes
from tests.support import gcp
from tests.support.gce_fake import GceFake

A, B = gcp.ZONES


def test_provision_creates_the_starter_labelled_and_a_retry_converges(provider: GcpSandboxes, gce: GceFake) -> None:
    spec = gcp.spec()
    provider.provision(spec)
    provider.provision(spec)  # a retried start: everything exists and is the session's
    vm = gce.instance(gcp.PROJECT, A, gcp.starter_name("trainer-a100", spec.session_id))
    assert vm is not None and vm["status"] == "RUNNING"
    assert vm["labels"] == {lbl.SESSION_LABEL: spec.session_id, "labctl-lab": "gcp-test"}
    assert vm["scheduling"]["provisioningModel"] == "STANDARD"
    snap = provider.snapshot(spec, now=datetime.now(UTC))
    refs = sorted(r.ref for r in snap.resources)
    suffix = gcp.starter_name("", spec.session_id)
    assert refs == [f"Instance/trainer-a100{suffix}", f"Volume/scratch-old{suffix}", f"Volume/trainer-a100{suffix}"]


def test_a_starter_name_taken_by_another_session_is_refused(provider: GcpSandboxes, gce: GceFake) -> None:
    spec = gcp.spec()
    squatter = gcp.learner(provider.credentials(gcp.spec()))
    squatter.disk(gcp.starter_name("scratch-old", spec.session_id))  # carries the OTHER session's label
    with pytest.raises(ProviderError, match=r"is not session .* labctl will not adopt it"):
        provider.provision(spec)


def test_snapshot_reads_spot_machine_type_zone_and_disks(provider: GcpSandboxes) -> None:
    spec = gcp.spec(gcp.gcp_lab(gcp={"project": gcp.PROJECT, "zones": gcp.ZONES,
                                     "machine_types": ["n2-standard-4"]}))
    provider.provision(spec)
    who = gcp.learner(provider.credentials(spec))
    sid = spec.session_id[-10:]
    who.launch(f"spot-{sid}", spot=True, labels=gcp.OWNER)
    who.launch(f"legacy-{sid}", machine_type="e2-small", preemptible=True)
    who.launch(f"plain-{sid}", machine_type="e2-small", zone=B)
    who.disk(f"loose-{sid}", size_gb=30)
    who.stop(f"legacy-{sid}")
    snap = provider.snapshot(spec, now=datetime.now(UTC) + timedelta(hours=2))

    spot = snap.resource("Instance", f"spot-{sid}")
    assert spot is not None and spot.capacity_type == "spot" and spot.instance_type == "n2-standard-4"
    assert (spot.zone, spot.region, spot.phase) == (A, "us-central1", "running")
    assert spot.labels == {**gcp.OWNER, lbl.SESSION_LABEL: spec.session_id}
    assert spot.running_hours is not None and 1.9 < spot.running_hours < 2.1
    assert spot.volumes == [f"spot-{sid}"]
    legacy = snap.resource("Instance", f"legacy-{sid}")
    assert legacy is not None and legacy.capacity_type == "spot" and legacy.phase == "stopped"
    assert legacy.running_hours == 0 and legacy.annotations["gcp/status"] == "TERMINATED"
    plain = snap.resource("Instance", f"plain-{sid}")
    assert plain is not None and plain.capacity_type == "on-demand" and plain.zone == B
    loose = snap.resource("Volume", f"loose-{sid}")
    assert loose is not None and loose.storage == 30 * 2**30 and loose.mounted_by == []
    boot = snap.resource("Volume", f"spot-{sid}")
    assert boot is not None and boot.mounted_by == [f"spot-{sid}"] and boot.storage == 10 * 2**30


def test_resources_without_the_session_label_are_not_the_sandbox(provider: GcpSandboxes) -> None:
    mine, other = gcp.spec(), gcp.spec()
    provider.provision(mine)
    provider.provision(other)
    snap = provider.snapshot(mine, now=datetime.now(UTC))
    assert all(r.labels[lbl.SESSION_LABEL] == mine.session_id for r in snap.resources)
    assert not [r for r in snap.resources if other.session_id[-8:] in r.name]


def test_set_labels_with_a_stale_fingerprint_is_refused_as_gce_does(provider: GcpSandboxes) -> None:
    from google.api_core import exceptions

    spec = gcp.spec()
    provider.provision(spec)
    who = gcp.learner(provider.credentials(spec))
    name = gcp.starter_name("trainer-a100", spec.session_id)
    stale = who.instances.get(project=who.project, zone=who.zone, instance=name).label_fingerprint
    who.set_labels(name, {**dict([who.session_label]), "team": "a"})
    with pytest.raises(exceptions.PreconditionFailed, match="fingerprint"):
        who.set_labels(name, {**dict([who.session_label]), "team": "b"}, fingerprint=stale)
    with pytest.raises(exceptions.BadRequest, match="key 'Team'"):
        who.set_labels(name, {"Team": "x"})


def test_credentials_name_the_endpoint_project_zone_and_label(provider: GcpSandboxes, gce: GceFake) -> None:
    spec = gcp.spec()
    creds = provider.credentials(spec)
    env = gcp.env_of(creds)
    assert creds.kind == "gcp" and creds.expires_at == spec.expires_at
    assert env["GOOGLE_CLOUD_PROJECT"] == gcp.PROJECT and env["LABCTL_GCP_ZONE"] == A
    assert env["LABCTL_GCP_SESSION_LABEL"] == f"{lbl.SESSION_LABEL}={spec.session_id}"
    assert env["CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE"] == f"{gce.url}/compute/v1/"
    with pytest.raises(ProviderError, match="only for a configured Compute endpoint"):
        GcpSandboxes(project=gcp.PROJECT).credentials(spec)


def test_suspend_stops_what_runs_and_resume_starts_exactly_that(provider: GcpSandboxes) -> None:
    spec = gcp.spec()
    provider.provision(spec)
    who = gcp.learner(provider.credentials(spec))
    gpu = gcp.starter_name("trainer-a100", spec.session_id)
    idle = who.launch(f"idle-{spec.session_id[-10:]}", machine_type="e2-small")
    who.stop(idle)  # stopped by the learner before: resume must not start it
    record = provider.suspend(spec)
    assert record == Suspension(replicas={f"Instance/{A}/{gpu}": 1})
    assert "1 instance(s) stopped" in record.summary()
    assert who.status(gpu) == "TERMINATED"
    provider.resume(spec, Suspension.model_validate(record.model_dump(mode="json")))
    assert who.status(gpu) == "RUNNING" and who.status(idle) == "TERMINATED"


def test_enforce_stops_or_deletes_one_instance_of_the_session(provider: GcpSandboxes) -> None:
    spec, other = gcp.spec(), gcp.spec()
    provider.provision(spec)
    provider.provision(other)
    who = gcp.learner(provider.credentials(spec))
    gpu = gcp.starter_name("trainer-a100", spec.session_id)
    spare = who.launch(f"spare-{spec.session_id[-10:]}", machine_type="e2-small")
    provider.enforce(spec, resource=f"Instance/{gpu}", action="stop")
    assert who.status(gpu) == "TERMINATED" and who.status(spare) == "RUNNING"
    provider.enforce(spec, resource=f"Instance/{spare}", action="terminate")
    assert provider.snapshot(spec, now=datetime.now(UTC)).resource("Instance", spare) is None
    foreign = gcp.starter_name("trainer-a100", other.session_id)
    with pytest.raises(ProviderError, match="has no instance"):
        provider.enforce(spec, resource=f"Instance/{foreign}", action="terminate")
    assert who.status(foreign) == "RUNNING"
    with pytest.raises(ProviderError, match="only on instances"):
        provider.enforce(spec, resource=f"Volume/{gpu}", action="terminate")


def test_destroy_leaves_nothing_labelled(provider: GcpSandboxes, gce: GceFake) -> None:
    spec = gcp.spec()
    provider.provision(spec)
    who = gcp.learner(provider.credentials(spec))
    who.launch(f"extra-{spec.session_id[-10:]}", spot=True, zone=B)
    who.disk(f"data-{spec.session_id[-10:]}")
    provider.destroy(spec, wait_s=10)
    assert provider.listed(spec).refs() == []
    assert not [n for n in gce.all_names(gcp.PROJECT) if spec.session_id[-10:] in n
                or gcp.starter_name("", spec.session_id) in n]


def test_destroy_names_a_leftover_the_cloud_kept(provider: GcpSandboxes, gce: GceFake) -> None:
    spec = gcp.spec()
    provider.provision(spec)
    disk = gcp.starter_name("scratch-old", spec.session_id)
    gce.keep_on_delete(disk)  # FAULT: the delete answers DONE, the disk stays
    with pytest.raises(ProviderError, match=f"1 resource\\(s\\) labelled labctl-session={spec.session_id} remain.*"
                                            f"Volume/{A}/{disk}") as caught:
        provider.destroy(spec, wait_s=60)  # fails at once: a second pass changes nothing
    assert caught.value.retryable
    gce.heal()
    provider.destroy(spec, wait_s=5)
    assert provider.listed(spec).refs() == []


def test_google_refusals_carry_google_s_message(provider: GcpSandboxes) -> None:
    spec = gcp.spec()
    provider.provision(spec)
    with pytest.raises(ProviderError, match=r"GCP refused to stop instance nope \(404 notFound\): The resource "
                                            r"'projects/.*/instances/nope' was not found"):
        provider._instance_op(gcp.PROJECT, A, "nope", "stop")


def test_an_endpoint_that_does_not_answer_is_unavailable() -> None:
    from labctl.ports import ProviderUnavailable

    dead = GcpSandboxes(project=gcp.PROJECT, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ProviderUnavailable, match="GCP did not answer"):
        dead.ping()
