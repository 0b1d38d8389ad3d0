"""The GCP test world around the fake Compute server: a ``gcp`` lab, session specs, and learner clients built only
from the env file labctl hands out (the real google-cloud-compute SDK, as a learner would use it).

The lab solutions below (:func:`reference_solution` and the wrong ones) are what a learner scripts with the SDK.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from labctl.catalog.models import Lab
from labctl.ports import Credentials, SandboxSpec
from labctl.providers.gcp import labels as lbl

PROJECT = "labctl-sandbox-test"
ZONES = ["us-central1-a", "us-central1-b"]
OWNER = {"team": "ml-research", "cost-center": "cc-4200", "env": "dev"}
IMAGE = "projects/debian-cloud/global/images/family/debian-12"


def gcp_lab(**changes: Any) -> Lab:
    data: dict[str, Any] = {
        "id": "gcp-test", "title": "A GCP test lab", "summary": "GCE in a labelled slice of a project.",
        "provider": "gcp", "budget": {"usd": 10}, "time": {"limit": "1h", "max_extension": "30m"},
        "required_labels": ["team", "cost-center", "env"],
        "gcp": {"project": PROJECT, "zones": ZONES, "machine_types": ["n2-standard-4", "e2-small"]},
        "cloud_starter": {"instances": [{"name": "trainer-a100", "instance_type": "a2-highgpu-1g"}],
                          "volumes": [{"name": "scratch-old", "size_gib": 200}]},
        "graders": [{"id": "labels", "script": "graders/tag_coverage.py", "weight": 1,
                     "params": {"required_labels": ["team", "cost-center", "env"]}}],
    }
    return Lab.model_validate({**data, **changes})


def spec(lab: Lab | None = None, *, now: datetime | None = None) -> SandboxSpec:
    now = now or datetime.now(UTC)
    session_id = f"gcp-test-{secrets.token_hex(5)}"
    return SandboxSpec(session_id=session_id, lab=lab or gcp_lab(), learner_id="learner-1", namespace=session_id,
                       expires_at=now + timedelta(hours=1), budget_usd=10.0, started_at=now)


def env_of(creds: Credentials | str) -> dict[str, str]:
    text = creds if isinstance(creds, str) else creds.content
    return dict(line.split("=", 1) for line in text.splitlines() if line)


@dataclass
class Learner:
    """A learner's Compute clients and context, built only from the credentials' env file."""

    project: str
    zone: str
    session_label: tuple[str, str]
    instances: Any
    disks: Any
    operations: Any

    def wait(self, op: Any, zone: str | None = None) -> None:
        while op.status != compute_v1.Operation.Status.DONE:
            op = self.operations.wait(project=self.project, zone=zone or self.zone, operation=op.name)

    def launch(self, name: str, *, machine_type: str = "n2-standard-4", spot: bool = False, preemptible: bool = False,
               labels: dict[str, str] | None = None, with_session_label: bool = True, zone: str | None = None,
               accelerators: dict[str, int] | None = None) -> str:
        zone = zone or self.zone
        all_labels = {**(labels or {}), **(dict([self.session_label]) if with_session_label else {})}
        scheduling = compute_v1.Scheduling(provisioning_model="SPOT" if spot else "STANDARD")
        if preemptible:
            scheduling = compute_v1.Scheduling(preemptible=True)
        body = compute_v1.Instance(
            name=name, machine_type=f"zones/{zone}/machineTypes/{machine_type}", labels=all_labels,
            scheduling=scheduling, disks=[compute_v1.AttachedDisk(
                boot=True, auto_delete=True, initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=IMAGE, disk_size_gb=10, labels=all_labels))],
            guest_accelerators=[compute_v1.AcceleratorConfig(
                accelerator_type=f"zones/{zone}/acceleratorTypes/{product}", accelerator_count=count)
                for product, count in (accelerators or {}).items()])
        self.wait(self.instances.insert_unary(project=self.project, zone=zone, instance_resource=body), zone)
        return name

    def disk(self, name: str, *, size_gb: int = 50, labels: dict[str, str] | None = None) -> str:
        body = compute_v1.Disk(name=name, size_gb=size_gb, labels={**(labels or {}), **dict([self.session_label])})
        self.wait(self.disks.insert_unary(project=self.project, zone=self.zone, disk_resource=body))
        return name

    def delete_instance(self, name: str) -> None:
        self.wait(self.instances.delete_unary(project=self.project, zone=self.zone, instance=name))

    def stop(self, name: str) -> None:
        self.wait(self.instances.stop_unary(project=self.project, zone=self.zone, instance=name))

    def delete_disk(self, name: str) -> None:
        self.wait(self.disks.delete_unary(project=self.project, zone=self.zone, disk=name))

    def set_labels(self, name: str, labels: dict[str, str], *, fingerprint: str | None = None) -> None:
        """``setLabels`` as GCE wants it: the whole map, with the fingerprint read just before (unless given)."""
        current = self.instances.get(project=self.project, zone=self.zone, instance=name)
        request = compute_v1.InstancesSetLabelsRequest(
            labels=labels, label_fingerprint=current.label_fingerprint if fingerprint is None else fingerprint)
        self.wait(self.instances.set_labels_unary(project=self.project, zone=self.zone, instance=name,
                                                  instances_set_labels_request_resource=request))

    def status(self, name: str, zone: str | None = None) -> str:
        return str(self.instances.get(project=self.project, zone=zone or self.zone, instance=name).status)


def learner(creds: Credentials | str) -> Learner:
    env = env_of(creds)
    kwargs: dict[str, Any] = {"transport": "rest", "credentials": AnonymousCredentials(),
                              "client_options": ClientOptions(api_endpoint=env["LABCTL_GCP_ENDPOINT_URL"])}
    key, _, value = env["LABCTL_GCP_SESSION_LABEL"].partition("=")
    return Learner(project=env["GOOGLE_CLOUD_PROJECT"], zone=env["LABCTL_GCP_ZONE"], session_label=(key, value),
                   instances=compute_v1.InstancesClient(**kwargs), disks=compute_v1.DisksClient(**kwargs),
                   operations=compute_v1.ZoneOperationsClient(**kwargs))


def starter_name(declared: str, session_id: str) -> str:
    return lbl.resource_name(declared, session_id)


# --- the lab's solutions, as a learner scripts them ------------------------------------------------------------------


def reference_solution(who: Learner, session_id: str) -> None:
    """A labelled Spot n2-standard-4 replaces the A100; the orphaned disk is deleted."""
    who.launch(starter_name("trainer-spot", session_id), machine_type="n2-standard-4", spot=True, labels=OWNER)
    who.delete_instance(starter_name("trainer-a100", session_id))
    who.delete_disk(starter_name("scratch-old", session_id))


def wrong_stopped_not_deleted(who: Learner, session_id: str) -> None:
    """The new VM is right, but the A100 is only stopped (unlabelled) and the disk is kept."""
    who.launch(starter_name("trainer-spot", session_id), machine_type="n2-standard-4", spot=True, labels=OWNER)
    who.stop(starter_name("trainer-a100", session_id))


def wrong_spot_gpu_unlabelled(who: Learner, session_id: str) -> None:
    """Spot, but of a machine type the lab does not allow, and without owner labels."""
    who.launch(starter_name("trainer-spot", session_id), machine_type="a2-highgpu-1g", spot=True)
    who.delete_instance(starter_name("trainer-a100", session_id))
    who.delete_disk(starter_name("scratch-old", session_id))


def wrong_relabel_only(who: Learner, session_id: str) -> None:
    """Labels the A100 (setLabels with the fingerprint) but leaves it on-demand; deletes the disk."""
    name = starter_name("trainer-a100", session_id)
    current = who.instances.get(project=who.project, zone=who.zone, instance=name)
    who.set_labels(name, {**dict(current.labels), **OWNER})
    who.delete_disk(starter_name("scratch-old", session_id))


def wrong_without_session_label(who: Learner, session_id: str) -> None:
    """The right VM, but without the session label: labctl does not see it, so nothing runs in the sandbox."""
    who.launch(starter_name("trainer-spot", session_id), machine_type="n2-standard-4", spot=True, labels=OWNER,
               with_session_label=False)
    who.delete_instance(starter_name("trainer-a100", session_id))
    who.delete_disk(starter_name("scratch-old", session_id))
