"""The AWS provider on moto's server: provision, credentials, snapshot, suspend / resume, freeze, destroy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labctl.ports import ProviderError, ProviderUnavailable
from labctl.providers.aws import policy
from labctl.providers.aws.sandbox import AwsSandboxes, role_name
from tests.support import aws


def _role_policy(moto_url: str, session_id: str) -> dict[str, Any]:
    iam = aws.admin_session().client("iam", endpoint_url=moto_url)
    doc = iam.get_role_policy(RoleName=role_name(session_id), PolicyName="labctl-sandbox")["PolicyDocument"]
    return doc if isinstance(doc, dict) else json.loads(doc)


def _states(admin_ec2: Any, ids: list[str]) -> dict[str, str]:
    answer = admin_ec2.describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in answer["Reservations"] for i in r["Instances"]}


def test_provision_makes_a_tagged_role_with_the_session_policy(provider: AwsSandboxes, moto_url: str) -> None:
    spec = aws.spec()
    provider.provision(spec)
    provider.provision(spec)  # a retried start converges
    iam = aws.admin_session().client("iam", endpoint_url=moto_url)
    role = iam.get_role(RoleName=role_name(spec.session_id))["Role"]
    assert {t["Key"]: t["Value"] for t in role["Tags"]} == {
        "labctl-session": spec.session_id, "labctl-lab": "aws-test", "labctl-learner": "learner-1"}
    assert role["MaxSessionDuration"] == 43200
    assert _role_policy(moto_url, spec.session_id) == policy.session_policy(
        policy.Fence(spec.session_id, tuple(aws.REGIONS), tuple(aws.INSTANCE_TYPES)))


def test_credentials_are_sts_credentials_for_the_remaining_time(provider: AwsSandboxes, moto_url: str) -> None:
    now = datetime.now(UTC)
    spec = aws.spec(now=now)
    provider.provision(spec)
    creds = provider.credentials(spec)
    env = aws.env_of(creds)
    assert creds.kind == "aws"
    assert env["AWS_SESSION_TOKEN"] and env["AWS_ACCESS_KEY_ID"] != "testing"
    assert env["AWS_REGION"] == "us-east-1" and env["AWS_ENDPOINT_URL"] == moto_url
    # one hour left: STS is asked for about an hour, not STS's default nor its maximum
    assert timedelta(minutes=55) < creds.expires_at - now < timedelta(minutes=65)
    sts = aws.admin_session().client(
        "sts", endpoint_url=moto_url, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], aws_session_token=env["AWS_SESSION_TOKEN"])
    assert role_name(spec.session_id) in sts.get_caller_identity()["Arn"]


def test_credentials_without_a_role_are_a_provider_error(provider: AwsSandboxes) -> None:
    with pytest.raises(ProviderError, match=r"AWS refused to read the session role \(NoSuchEntity\)"):
        provider.credentials(aws.spec())


def test_snapshot_holds_what_carries_the_session_tag(provider: AwsSandboxes, admin_ec2: Any) -> None:
    spec, other = aws.spec(), aws.spec()
    provider.provision(spec)
    creds = provider.credentials(spec)
    ec2 = aws.learner_ec2(creds)
    spot = aws.launch(ec2, spec.session_id, instance_type="g4dn.xlarge", spot=True, team="ml", env="dev")
    on_demand = aws.launch(ec2, spec.session_id, instance_type="m5.large")
    foreign = aws.launch(admin_ec2, other.session_id)
    untagged = aws.launch(admin_ec2, None)
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=20, VolumeType="gp3", TagSpecifications=[
        {"ResourceType": "volume", "Tags": aws.session_tags(spec.session_id, team="ml")}])["VolumeId"]
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": aws.session_tags(spec.session_id)}])["AllocationId"]
    snapshot_id = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": aws.session_tags(spec.session_id)}])["SnapshotId"]

    snap = provider.snapshot(spec, now=datetime.now(UTC) + timedelta(hours=2))

    assert snap.session.provider == "aws"
    names = {r.ref for r in snap.resources}
    assert {f"Instance/{spot}", f"Instance/{on_demand}", f"Volume/{volume}", f"Address/{address}",
            f"VolumeSnapshot/{snapshot_id}"} <= names
    assert f"Instance/{foreign}" not in names and f"Instance/{untagged}" not in names
    gpu = snap.resource("Instance", spot)
    assert gpu is not None
    assert (gpu.instance_type, gpu.capacity_type, gpu.phase, gpu.region) == ("g4dn.xlarge", "spot", "running",
                                                                             "us-east-1")
    assert gpu.zone and gpu.zone.startswith("us-east-1")
    assert gpu.labels == {"labctl-session": spec.session_id, "team": "ml", "env": "dev"}
    assert gpu.running_hours is not None and 1.9 < gpu.running_hours < 2.1
    assert gpu.volumes and all(f"Volume/{v}" in names for v in gpu.volumes)  # the root volume, tagged at launch
    plain = snap.resource("Instance", on_demand)
    assert plain is not None and plain.capacity_type == "on-demand"
    vol = snap.resource("Volume", volume)
    assert vol is not None and vol.storage == 20 * 2**30 and vol.mounted_by == []
    root = snap.resource("Volume", gpu.volumes[0])
    assert root is not None and root.mounted_by == [spot]


def test_suspend_stops_running_instances_and_resume_starts_exactly_those(provider: AwsSandboxes,
                                                                         admin_ec2: Any) -> None:
    spec = aws.spec()
    provider.provision(spec)
    ec2 = aws.learner_ec2(provider.credentials(spec))
    running = aws.launch(ec2, spec.session_id)
    kept_stopped = aws.launch(ec2, spec.session_id)
    ec2.stop_instances(InstanceIds=[kept_stopped])
    west = aws.launch(aws.learner_ec2(provider.credentials(spec), "us-west-2"), spec.session_id)

    record = provider.suspend(spec)

    fence = policy.Fence(spec.session_id, tuple(aws.REGIONS), tuple(aws.INSTANCE_TYPES))
    assert _role_policy(admin_ec2.meta.endpoint_url, spec.session_id) == policy.frozen_policy(fence)  # nothing new
    assert set(record.replicas) == {f"Instance/us-east-1/{running}", f"Instance/us-west-2/{west}"}
    assert set(_states(admin_ec2, [running, kept_stopped]).values()) == {"stopped"}
    provider.resume(spec, record)
    assert _role_policy(admin_ec2.meta.endpoint_url, spec.session_id) == policy.session_policy(fence)
    assert _states(admin_ec2, [running, kept_stopped]) == {running: "running", kept_stopped: "stopped"}
    west_ec2 = aws.admin_session().client("ec2", region_name="us-west-2", endpoint_url=admin_ec2.meta.endpoint_url)
    assert _states(west_ec2, [west]) == {west: "running"}


def test_resume_starts_nothing_the_record_does_not_name_with_the_session_tag(provider: AwsSandboxes,
                                                                             admin_ec2: Any) -> None:
    """A record naming another session's instance (or a forged one) starts nothing of it."""
    spec, other = aws.spec(), aws.spec()
    provider.provision(spec)
    foreign = aws.launch(admin_ec2, other.session_id)
    admin_ec2.stop_instances(InstanceIds=[foreign])
    provider.resume(spec, type(provider.suspend(spec))(replicas={f"Instance/us-east-1/{foreign}": 1}))
    assert _states(admin_ec2, [foreign]) == {foreign: "stopped"}


def test_freeze_swaps_the_policy_for_read_only_and_back(provider: AwsSandboxes, moto_url: str) -> None:
    spec = aws.spec()
    provider.provision(spec)
    fence = policy.Fence(spec.session_id, tuple(aws.REGIONS), tuple(aws.INSTANCE_TYPES))
    provider.freeze(spec)
    assert _role_policy(moto_url, spec.session_id) == policy.frozen_policy(fence)
    provider.freeze(spec, frozen=False)
    assert _role_policy(moto_url, spec.session_id) == policy.session_policy(fence)


def test_destroy_leaves_nothing_with_the_session_tag(provider: AwsSandboxes, admin_ec2: Any, moto_url: str) -> None:
    spec, other = aws.spec(), aws.spec()
    provider.provision(spec)
    ec2 = aws.learner_ec2(provider.credentials(spec))
    aws.launch(ec2, spec.session_id, spot=True)
    stopped = aws.launch(ec2, spec.session_id)
    ec2.stop_instances(InstanceIds=[stopped])
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=[
        {"ResourceType": "volume", "Tags": aws.session_tags(spec.session_id)}])["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=stopped, Device="/dev/sdf")
    ec2.create_snapshot(VolumeId=volume, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": aws.session_tags(spec.session_id)}])
    ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": aws.session_tags(spec.session_id)}])
    foreign = aws.launch(admin_ec2, other.session_id)
    # a persistent spot request would replace its instance once terminated: destroy cancels it first
    image = admin_ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    request = admin_ec2.request_spot_instances(InstanceCount=1, Type="persistent", LaunchSpecification={
        "ImageId": image, "InstanceType": "m5.large"})["SpotInstanceRequests"][0]
    admin_ec2.create_tags(Resources=[request["InstanceId"]], Tags=aws.session_tags(spec.session_id))

    provider.destroy(spec, wait_s=30)

    assert all(d.count == 0 for d in provider.describe(spec))
    live = [r for r in admin_ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
            if r["SpotInstanceRequestId"] == request["SpotInstanceRequestId"] and r["State"] != "cancelled"]
    assert live == []
    iam = aws.admin_session().client("iam", endpoint_url=moto_url)
    assert role_name(spec.session_id) not in {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert _states(admin_ec2, [foreign]) == {foreign: "running"}
    provider.destroy(spec, wait_s=1)  # nothing left: a second destroy succeeds at once


def test_destroy_fails_naming_a_tagged_resource_it_cannot_delete(provider: AwsSandboxes, admin_ec2: Any) -> None:
    """A security group with the session tag, made behind labctl's back: destroy does not delete that type, so it
    must name it instead of reporting a clean sandbox."""
    spec = aws.spec()
    provider.provision(spec)
    aws.launch(admin_ec2, spec.session_id)
    group = admin_ec2.create_security_group(GroupName=f"stray-{spec.session_id}", Description="stray",
                                            TagSpecifications=[{"ResourceType": "security-group",
                                                                "Tags": aws.session_tags(spec.session_id)}])["GroupId"]
    with pytest.raises(ProviderError, match=rf"1 resource\(s\) tagged labctl-session={spec.session_id} remain "
                                            rf"after destroy: arn:aws:ec2:us-east-1:\d+:security-group/{group}"):
        provider.destroy(spec, wait_s=0)
    assert all(d.count == 0 for d in provider.describe(spec))  # everything else went


def test_ping_names_the_account(provider: AwsSandboxes, moto_url: str) -> None:
    assert provider.ping().startswith("AWS account 123456789012 as arn:aws:")
    assert moto_url in provider.ping()


def test_an_unreachable_endpoint_is_provider_unavailable() -> None:
    down = AwsSandboxes(region="us-east-1", endpoint_url="http://127.0.0.1:1", session_factory=aws.admin_session)
    with pytest.raises(ProviderUnavailable, match=r"AWS did not answer when asked to identify labctl's principal"):
        down.ping()


def test_simulated_pod_usage_has_no_place_in_an_aws_sandbox(provider: AwsSandboxes) -> None:
    spec = aws.spec()
    provider.write_usage(spec, {})  # nothing to write: nothing done
    with pytest.raises(ProviderError, match=r"an AWS sandbox: it has no pods to write simulated usage for \(web-0\)"):
        provider.write_usage(spec, {"web-0": {"app": {"cpu": 0.5}}})


def test_the_starter_goes_to_its_zone_with_its_boot_disk_and_volume_type(provider: AwsSandboxes,
                                                                          admin_ec2: Any) -> None:
    zone = f"{aws.REGIONS[0]}b"
    lab = aws.aws_lab(cloud_starter={
        "instances": [{"name": "trainer", "instance_type": aws.INSTANCE_TYPES[0], "zone": zone, "boot_disk_gib": 40}],
        "volumes": [{"name": "scratch", "size_gib": 20, "zone": zone, "disk_type": "st1"}]})
    spec = aws.spec(lab)
    provider.provision(spec)
    try:
        mine = [{"Name": "tag:labctl-session", "Values": [spec.session_id]}]
        [vm] = [i for r in admin_ec2.describe_instances(Filters=mine)["Reservations"] for i in r["Instances"]]
        assert vm["Placement"]["AvailabilityZone"] == zone
        volumes = {v["VolumeId"]: v for v in admin_ec2.describe_volumes(Filters=mine)["Volumes"]}
        [root] = [volumes[m["Ebs"]["VolumeId"]] for m in vm["BlockDeviceMappings"]]
        assert root["Size"] == 40
        [scratch] = [v for v in volumes.values() if not v["Attachments"]]
        assert (scratch["AvailabilityZone"], scratch["VolumeType"], scratch["Size"]) == (zone, "st1", 20)
    finally:
        provider.destroy(spec, wait_s=30)
