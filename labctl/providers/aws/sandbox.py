"""The AWS sandbox provider: one IAM role per session, fenced to the EC2 resources that carry the session's tag.

``provision`` makes the role (tagged with the session, lab and learner; labctl's account may assume it), writes its
inline policy (:mod:`labctl.providers.aws.policy`) and launches the lab's ``cloud_starter`` with the session's tag;
``credentials`` are STS AssumeRole credentials for the session's remaining time (15 minutes at least, 12 hours at
most: STS's bounds), as an env file. Inventory is by the session tag in each of the lab's regions (and the regions its
guardrails watch), so nothing the learner writes decides what is counted: the tag is set on create and the policy
forbids changing it. ``suspend`` stops the running instances and returns their ids (``Instance/<id>``) as the record,
``resume`` starts exactly those; ``freeze`` swaps the policy for the read-only one; ``destroy`` deletes everything
with the session tag, then the role, then lists again and fails naming every leftover.

Only this package imports boto3. A ``boto3.Session`` factory and an endpoint URL are injected, so tests reach moto's
server and production any account.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, TypeVar

import boto3
import botocore.exceptions

from labctl.grading.snapshot import BudgetInfo, SessionInfo, Snapshot
from labctl.ports import Credentials, Listing, ProviderError, ProviderUnavailable, SandboxSpec, Suspension, UsageByPod
from labctl.providers.aws import policy
from labctl.providers.aws import snapshot as snap
from labctl.providers.aws.snapshot import tags as tags_of

log = logging.getLogger("labctl.providers.aws")

T = TypeVar("T")

POLICY_NAME = "labctl-sandbox"
MIN_SESSION_S = 900  # STS AssumeRole's bounds on DurationSeconds
MAX_SESSION_S = 43200
CHAINED_MAX_S = 3600  # what STS allows when labctl's own principal is an assumed role (role chaining)
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
# What destroy deletes and checks by EC2's Describe calls; the tagging API's answer for these is not used (it keeps
# listing terminated instances for a while).
GONE = ("InvalidVolume.NotFound", "InvalidSnapshot.NotFound", "InvalidAllocationID.NotFound")
DEFAULT_VOLUME_TYPE = "gp3"  # a starter volume's type unless the lab names one
STARTER_TAG = "labctl-starter"  # which cloud_starter entry a resource was made for
DEFAULT_IMAGE_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
DESCRIBED_TYPES = frozenset({"ec2:instance", "ec2:volume", "ec2:snapshot", "ec2:elastic-ip"})


def role_name(session_id: str) -> str:
    """The session's IAM role: ``labctl-<session id>`` (IAM allows 64 characters; longer ids are hashed)."""
    name = f"labctl-{session_id}"
    return name if len(name) <= 64 else f"labctl-{hashlib.sha256(session_id.encode()).hexdigest()[:32]}"


def fence_of(spec: SandboxSpec) -> policy.Fence:
    if spec.lab.aws is None:
        raise ProviderError(f"lab {spec.lab.id} has no aws section: it cannot run as an AWS sandbox")
    return policy.Fence(session_id=spec.session_id, regions=tuple(spec.lab.aws.regions),
                        instance_types=tuple(spec.lab.aws.instance_types))


def regions_of(spec: SandboxSpec) -> tuple[str, ...]:
    """Where the sandbox's resources are looked for: the lab's regions, then the regions its guardrails watch
    (where only a launch the policy missed can have put something)."""
    watched = tuple(spec.lab.guardrails.watch_regions) if spec.lab.guardrails else ()
    return fence_of(spec).regions + watched


def _call(what: str, fn: Callable[[], T]) -> T:
    """One AWS call: no answer is ProviderUnavailable, a refusal a ProviderError carrying AWS's code and message."""
    try:
        return fn()
    except botocore.exceptions.ClientError as exc:
        raise _refusal(what, exc) from exc
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError) as exc:
        raise ProviderUnavailable(f"AWS did not answer when asked to {what}: {exc}") from exc
    except botocore.exceptions.NoCredentialsError as exc:
        raise ProviderUnavailable(f"labctl has no AWS credentials to {what}: configure a profile or the "
                                  "AWS_* environment") from exc


def _refusal(what: str, exc: botocore.exceptions.ClientError) -> ProviderError:
    """AWS's refusal as a ProviderError that carries AWS's code and message."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    retryable = code in ("Throttling", "ThrottlingException", "RequestLimitExceeded", "InternalError",
                         "ServiceUnavailable")
    return ProviderError(f"AWS refused to {what} ({code}): {err.get('Message', '')}", retryable=retryable)


def _done_unless(what: str, fn: Callable[[], object], *, codes: tuple[str, ...]) -> bool:
    """Like :func:`_call`; an AWS refusal with one of ``codes`` (already exists, already gone) answers False."""
    def attempt() -> bool:
        try:
            fn()
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in codes:
                return False
            raise
        return True

    return _call(what, attempt)


class AwsSandboxes:
    """Implements the SandboxProvider port on one AWS account."""

    name = "aws"

    def __init__(self, *, region: str, endpoint_url: str | None = None, profile: str | None = None,
                 session_factory: Callable[[], boto3.Session] | None = None) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self._session_factory = session_factory or (lambda: boto3.Session(profile_name=profile))
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, region: str | None = None) -> Any:
        """One client per service and region, made once (boto3 clients are thread-safe; making one is not cheap)."""
        key = (service, region or self.region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._session_factory().client(service, region_name=key[1],
                                                                    endpoint_url=self.endpoint_url)
            return self._clients[key]

    def _ec2(self, region: str) -> Any:
        return self._client("ec2", region)

    def ping(self) -> str:
        ident = _call("identify labctl's principal", lambda: self._client("sts").get_caller_identity())
        return f"AWS account {ident['Account']} as {ident['Arn']}" + (f" at {self.endpoint_url}"
                                                                       if self.endpoint_url else "")

    # --- the role --------------------------------------------------------------------------------------------------

    def _role_tags(self, spec: SandboxSpec) -> list[dict[str, str]]:
        return [{"Key": policy.SESSION_TAG, "Value": spec.session_id}, {"Key": "labctl-lab", "Value": spec.lab.id},
                {"Key": "labctl-learner", "Value": spec.learner_id[:256]}]

    def provision(self, spec: SandboxSpec) -> None:
        iam = self._client("iam")
        fence = fence_of(spec)
        account = (spec.lab.aws.account_id if spec.lab.aws and spec.lab.aws.account_id else
                   _call("identify labctl's account", lambda: self._client("sts").get_caller_identity())["Account"])
        trust = policy.text(policy.trust_policy(f"arn:aws:iam::{account}:root"))
        name = role_name(spec.session_id)
        made = _done_unless("create the session role", lambda: iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=trust, MaxSessionDuration=MAX_SESSION_S,
            Description=f"labctl sandbox {spec.session_id}", Tags=self._role_tags(spec)),
            codes=("EntityAlreadyExists",))
        if not made:  # a retried start: converge the existing role
            _call("update the session role's trust", lambda: iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=trust))
        self._put_policy(name, policy.session_policy(fence))
        self._wait_assumable(spec, timeout_s=30)
        self._make_starter(spec)
        log.info("aws sandbox %s: role %s ready", spec.session_id, name)

    def _make_starter(self, spec: SandboxSpec) -> None:
        """The lab's ``cloud_starter`` in the home region, each resource tagged with the session, ``Name`` and
        ``labctl-starter`` (so a retried start finds what it made instead of making it twice)."""
        starter = spec.lab.cloud_starter
        if starter is None or not (starter.instances or starter.volumes):
            return
        region = fence_of(spec).regions[0]
        ec2 = self._ec2(region)
        made = {tags_of(item).get(STARTER_TAG) for d in self.describe(spec) if d.region == region
                for item in [*d.instances, *d.volumes]}
        zones: list[str] = []

        def first_zone() -> str:  # looked up once, only when a resource names no zone
            if not zones:
                zones.append(_call("list availability zones", ec2.describe_availability_zones)[
                    "AvailabilityZones"][0]["ZoneName"])
            return zones[0]

        for vm in starter.instances:
            if vm.name in made:
                continue
            tags = self._starter_tags(spec, vm.name, vm.tags)
            image = vm.image or self._default_image(region)
            extra: dict[str, Any] = {"InstanceMarketOptions": {"MarketType": "spot"}} if vm.spot else {}
            if vm.zone:
                extra["Placement"] = {"AvailabilityZone": vm.zone}
            if vm.boot_disk_gib is not None:
                extra["BlockDeviceMappings"] = [{"DeviceName": self._root_device(ec2, image), "Ebs": {
                    "VolumeSize": vm.boot_disk_gib, "DeleteOnTermination": True}}]
            _call("launch the lab's starter instance", partial(
                ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1, InstanceType=vm.instance_type,
                TagSpecifications=[{"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")], **extra))
        for disk in starter.volumes:
            if disk.name in made:
                continue
            _call("create the lab's starter volume", partial(
                ec2.create_volume, AvailabilityZone=disk.zone or first_zone(), Size=disk.size_gib,
                VolumeType=disk.disk_type or DEFAULT_VOLUME_TYPE, TagSpecifications=[
                    {"ResourceType": "volume", "Tags": self._starter_tags(spec, disk.name, disk.tags)}]))
        log.info("aws sandbox %s: starter made (%d instance(s), %d volume(s))", spec.session_id,
                 len(starter.instances), len(starter.volumes))

    def _starter_tags(self, spec: SandboxSpec, name: str, tags: dict[str, str]) -> list[dict[str, str]]:
        return [{"Key": policy.SESSION_TAG, "Value": spec.session_id}, {"Key": "Name", "Value": name},
                {"Key": STARTER_TAG, "Value": name}, *({"Key": k, "Value": v} for k, v in tags.items())]

    def _root_device(self, ec2: Any, image: str) -> str:
        """The image's root device name, where a starter's boot disk size goes."""
        found = _call("describe the starter's image", partial(ec2.describe_images, ImageIds=[image]))["Images"]
        if not found:
            raise ProviderError(f"image {image} does not exist in this region: the lab's starter cannot launch")
        return str(found[0]["RootDeviceName"])

    def _default_image(self, region: str) -> str:
        """The current Amazon Linux image of ``region`` (AWS's public SSM parameter)."""
        answer = _call("look up the current Amazon Linux image", partial(
            self._client("ssm", region).get_parameter, Name=DEFAULT_IMAGE_PARAMETER))
        return str(answer["Parameter"]["Value"])

    def _put_policy(self, name: str, document: dict[str, Any]) -> None:
        _call("write the session role's policy", lambda: self._client("iam").put_role_policy(
            RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=policy.text(document)))

    def hand_over(self, spec: SandboxSpec, *, previous: SandboxSpec) -> None:
        """Cloud labs keep no warm pool (the catalog refuses one): converging to ``spec`` is a provision."""
        self.provision(spec)

    def credentials(self, spec: SandboxSpec) -> Credentials:
        """STS credentials of the session role for the session's remaining time (STS's 15 min to 12 h). When
        labctl itself runs as an assumed role, AWS caps a chained session at one hour: then the learner gets an hour
        and fetches fresh credentials after it."""
        arn = self._role_arn(spec)
        remaining = int((spec.expires_at - datetime.now(UTC)).total_seconds())
        seconds = min(MAX_SESSION_S, max(MIN_SESSION_S, remaining))
        try:
            answer = self._assume(arn, spec.session_id, seconds)
        except ProviderError as exc:
            if seconds <= CHAINED_MAX_S or "(ValidationError)" not in str(exc):
                raise
            log.info("aws sandbox %s: STS refused %d s (%s); issuing %d s", spec.session_id, seconds, exc,
                     CHAINED_MAX_S)
            answer = self._assume(arn, spec.session_id, CHAINED_MAX_S)
        creds = answer["Credentials"]
        region = fence_of(spec).regions[0]
        lines = [f"AWS_ACCESS_KEY_ID={creds['AccessKeyId']}", f"AWS_SECRET_ACCESS_KEY={creds['SecretAccessKey']}",
                 f"AWS_SESSION_TOKEN={creds['SessionToken']}", f"AWS_REGION={region}",
                 f"AWS_DEFAULT_REGION={region}"]
        if self.endpoint_url:
            lines.append(f"AWS_ENDPOINT_URL={self.endpoint_url}")
        expires = creds["Expiration"]
        return Credentials(kind="aws", content="\n".join(lines) + "\n",
                           expires_at=expires if isinstance(expires, datetime) else spec.expires_at)

    def _role_arn(self, spec: SandboxSpec) -> str:
        iam = self._client("iam")
        role = _call("read the session role", lambda: iam.get_role(RoleName=role_name(spec.session_id)))
        return str(role["Role"]["Arn"])

    def _assume(self, arn: str, session_id: str, seconds: int) -> dict[str, Any]:
        answer: dict[str, Any] = _call("issue the learner's credentials", lambda: self._client("sts").assume_role(
            RoleArn=arn, RoleSessionName=session_id[:64], DurationSeconds=seconds))
        return answer

    def _wait_assumable(self, spec: SandboxSpec, *, timeout_s: float) -> None:
        """A new IAM role takes a few seconds to be assumable (IAM is eventually consistent): wait for it, so a
        ready session's credentials work."""
        arn, deadline = self._role_arn(spec), time.monotonic() + timeout_s
        while True:
            try:
                self._assume(arn, spec.session_id, MIN_SESSION_S)
                return
            except ProviderError as exc:
                if "(AccessDenied)" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(1.0)

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        """Replace the role's policy by the read-only one (a submission), or the writable one again."""
        fence = fence_of(spec)
        self._put_policy(role_name(spec.session_id),
                         policy.frozen_policy(fence) if frozen else policy.session_policy(fence))

    # --- inventory -------------------------------------------------------------------------------------------------

    def describe(self, spec: SandboxSpec) -> list[snap.Described]:
        """Everything carrying the session tag, per lab region (terminated instances excluded)."""
        by_tag = [{"Name": f"tag:{policy.SESSION_TAG}", "Values": [spec.session_id]}]
        out = []
        for region in regions_of(spec):
            ec2 = self._ec2(region)
            pages = partial(_pages, ec2)
            instances = [i for page in _call("list instances", pages("describe_instances", Filters=[
                *by_tag, {"Name": "instance-state-name", "Values": LIVE_STATES}]))
                for r in page["Reservations"] for i in r["Instances"]]
            volumes = [v for page in _call("list volumes", pages("describe_volumes", Filters=by_tag))
                       for v in page["Volumes"]]
            addresses = _call("list addresses", partial(ec2.describe_addresses, Filters=by_tag))["Addresses"]
            snapshots = [s for page in _call("list snapshots", pages("describe_snapshots", OwnerIds=["self"],
                                                                     Filters=by_tag))
                         for s in page["Snapshots"]]
            out.append(snap.Described(region=region, instances=instances, volumes=volumes, addresses=addresses,
                                      snapshots=snapshots))
        return out

    def snapshot(self, spec: SandboxSpec, *, now: datetime, interim: bool = False) -> Snapshot:
        """The sandbox as a provider-neutral, unpriced snapshot (docs/SNAPSHOT.md); always read directly (no watch
        cache), ``interim`` or not."""
        session = SessionInfo(id=spec.session_id, lab_id=spec.lab.id, learner_id=spec.learner_id, provider="aws",
                              started_at=spec.started_at, taken_at=max(now, spec.started_at))
        budget = BudgetInfo(budget_usd=spec.budget_usd, reference_cost_usd=spec.lab.budget.reference_usd)
        return snap.build(self.describe(spec), session=session, budget=budget, now=now)

    def sandboxes(self) -> Listing:
        """The sessions whose IAM role exists (a role is the sandbox's root: destroy deletes it last), by the
        session tag on ``labctl-`` roles."""
        iam = self._client("iam")
        pages = _call("list the session roles", _pages(iam, "list_roles"))
        found: set[str] = set()
        for role in (r for page in pages for r in page["Roles"] if r["RoleName"].startswith("labctl-")):
            tags = _call("read a session role's tags", partial(iam.list_role_tags, RoleName=role["RoleName"]))
            found |= {t["Value"] for t in tags["Tags"] if t["Key"] == policy.SESSION_TAG}
        return Listing(sessions=frozenset(found), providers=frozenset({self.name}))

    def write_usage(self, spec: SandboxSpec, usage: UsageByPod) -> None:
        """An AWS sandbox has no pods, so no simulated pod usage: the catalog refuses ``demand`` on aws labs."""
        if usage:
            raise ProviderError(f"session {spec.session_id} is an AWS sandbox: it has no pods to write simulated "
                                f"usage for ({', '.join(sorted(usage))})")

    # --- guardrails -------------------------------------------------------------------------------------------------

    def enforce(self, spec: SandboxSpec, *, resource: str, action: Literal["stop", "terminate"]) -> None:
        """Stop or terminate ``Instance/<id>``, found by its id and the session tag in the regions looked at (an
        instance without the session's tag is never touched). Terminating cancels its spot request first."""
        kind, _, instance_id = resource.partition("/")
        if kind != "Instance" or not instance_id:
            raise ProviderError(f"the AWS provider can {action} instances only (Instance/<id>), not {resource}")
        region = self._region_of(spec, instance_id)
        if region is None:
            raise ProviderError(f"no instance {instance_id} carries {policy.SESSION_TAG}={spec.session_id} in "
                                f"{', '.join(regions_of(spec))}: it is not this sandbox's to {action}")
        ec2 = self._ec2(region)
        if action == "stop":
            _call("stop an instance that broke the lab's guardrails", partial(ec2.stop_instances,
                                                                              InstanceIds=[instance_id]))
        else:
            self._cancel_spot_requests(ec2, [instance_id])
            _call("terminate an instance that broke the lab's guardrails", partial(ec2.terminate_instances,
                                                                                   InstanceIds=[instance_id]))
        log.info("aws sandbox %s: %s %s in %s (guardrails)", spec.session_id, action, instance_id, region)

    def _region_of(self, spec: SandboxSpec, instance_id: str) -> str | None:
        for region in regions_of(spec):
            found = _call("find an instance", partial(self._ec2(region).describe_instances, Filters=[
                {"Name": f"tag:{policy.SESSION_TAG}", "Values": [spec.session_id]},
                {"Name": "instance-id", "Values": [instance_id]},
                {"Name": "instance-state-name", "Values": LIVE_STATES}]))
            if any(r["Instances"] for r in found["Reservations"]):
                return region
        return None

    def _cancel_spot_requests(self, ec2: Any, instance_ids: list[str]) -> None:
        """Cancel the open spot requests of ``instance_ids``: a persistent one would launch a replacement of each
        terminated instance."""
        requests = _call("list the session's spot requests", partial(
            ec2.describe_spot_instance_requests, Filters=[{"Name": "instance-id", "Values": instance_ids}]))
        open_ids = [str(r["SpotInstanceRequestId"]) for r in requests["SpotInstanceRequests"]
                    if r.get("State") in ("open", "active", "disabled")]
        if open_ids:
            _call("cancel the session's spot requests", partial(ec2.cancel_spot_instance_requests,
                                                                SpotInstanceRequestIds=open_ids))

    # --- suspension ------------------------------------------------------------------------------------------------

    def suspend(self, spec: SandboxSpec) -> Suspension:
        """Make the role read-only (nothing new may start), then stop every running instance of the session (its
        volumes stay, and still cost). The record names them as ``Instance/<region>/<id>`` with one "replica" each,
        the form the port's record has for what was running."""
        self._put_policy(role_name(spec.session_id), policy.frozen_policy(fence_of(spec)))
        stopped: dict[str, int] = {}
        for d in self._settled(spec):
            running = [str(i["InstanceId"]) for i in d.instances if i["State"]["Name"] == "running"]
            if running:
                _call("stop the session's instances", partial(self._ec2(d.region).stop_instances,
                                                              InstanceIds=running))
                stopped.update({f"Instance/{d.region}/{i}": 1 for i in running})
        log.info("aws sandbox %s: stopped %d instance(s)", spec.session_id, len(stopped))
        return Suspension(replicas=stopped)

    def _settled(self, spec: SandboxSpec, *, timeout_s: float = 60) -> list[snap.Described]:
        """The inventory once no instance is ``pending`` (EC2 cannot stop one yet), or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            described = self.describe(spec)
            pending = any(i["State"]["Name"] == "pending" for d in described for i in d.instances)
            if not pending or time.monotonic() >= deadline:
                return described
            time.sleep(2.0)

    def resume(self, spec: SandboxSpec, record: Suspension) -> None:
        """Give the role its writable policy back, then start exactly the instances ``record`` names that still
        carry the session tag."""
        self._put_policy(role_name(spec.session_id), policy.session_policy(fence_of(spec)))
        by_region: dict[str, list[str]] = {}
        for key in record.replicas:
            kind, _, rest = key.partition("/")
            region, _, instance_id = rest.partition("/")
            if kind == "Instance" and instance_id:
                by_region.setdefault(region, []).append(instance_id)
        current = {(d.region, str(i["InstanceId"])) for d in self.describe(spec) for i in d.instances}
        for region, ids in by_region.items():
            mine = [i for i in ids if (region, i) in current]
            if mine:
                _call("start the session's instances", partial(self._ec2(region).start_instances, InstanceIds=mine))

    # --- destroy ---------------------------------------------------------------------------------------------------

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        """Delete everything with the session tag, then the role; list again (EC2's Describe calls, and the tagging
        API for any other resource type) and fail naming every leftover. Passes repeat while something destroy deletes
        is still going away (an instance shutting down holds its volume), up to ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            for d in self.describe(spec):
                self._delete_pass(d)
            self._delete_role(role_name(spec.session_id))
            going = [ref for d in self.describe(spec) for ref in d.refs()]
            left = going + self._other_tagged(spec)
            if not left:
                log.info("aws sandbox %s destroyed", spec.session_id)
                return
            # Only what destroy deletes can still go by waiting; a type it does not delete will not.
            if not going or time.monotonic() >= deadline:
                raise ProviderError(f"{len(left)} resource(s) tagged {policy.SESSION_TAG}={spec.session_id} remain "
                                    f"after destroy: {', '.join(left)}", retryable=True)
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def _delete_pass(self, d: snap.Described) -> None:
        ec2 = self._ec2(d.region)
        ids = [str(i["InstanceId"]) for i in d.instances if i["State"]["Name"] != "shutting-down"]
        spot = [str(i["InstanceId"]) for i in d.instances if i.get("InstanceLifecycle") == "spot"]
        if spot:
            self._cancel_spot_requests(ec2, spot)
        if ids:
            _call("terminate the session's instances", partial(ec2.terminate_instances, InstanceIds=ids))
        for a in d.addresses:
            if a.get("AssociationId"):
                _call("disassociate an address", partial(ec2.disassociate_address, AssociationId=a["AssociationId"]))
            _done_unless("release an address", partial(ec2.release_address, AllocationId=a["AllocationId"]),
                         codes=GONE)
        for s in d.snapshots:
            _done_unless("delete a snapshot", partial(ec2.delete_snapshot, SnapshotId=s["SnapshotId"]), codes=GONE)
        for v in d.volumes:
            if v.get("State") == "in-use" and any(a.get("InstanceId") in ids for a in v.get("Attachments") or []):
                continue  # goes with its instance (DeleteOnTermination), or is free on the next pass
            _done_unless("delete a volume", partial(ec2.delete_volume, VolumeId=v["VolumeId"]), codes=GONE)

    def _other_tagged(self, spec: SandboxSpec) -> list[str]:
        """ARNs of resources with the session tag of a type destroy does not delete (a security group, a launch
        template, ...): made behind labctl's back, they are leftovers to name, never to ignore."""
        out: list[str] = []
        for region in regions_of(spec):
            tagging = self._client("resourcegroupstaggingapi", region)
            pages = _call("list tagged resources", _pages(tagging, "get_resources", TagFilters=[
                {"Key": policy.SESSION_TAG, "Values": [spec.session_id]}]))
            out += [m["ResourceARN"] for page in pages for m in page["ResourceTagMappingList"]
                    if _arn_type(m["ResourceARN"]) not in DESCRIBED_TYPES]
        return out

    def _delete_role(self, name: str) -> None:
        iam = self._client("iam")
        names: list[str] = []
        if not _done_unless("list the session role's policies", lambda: names.extend(
                iam.list_role_policies(RoleName=name)["PolicyNames"]), codes=("NoSuchEntity",)):
            return
        for policy_name in names:
            _done_unless("delete the session role's policy", partial(iam.delete_role_policy, RoleName=name,
                                                                     PolicyName=policy_name), codes=("NoSuchEntity",))
        _done_unless("delete the session role", lambda: iam.delete_role(RoleName=name), codes=("NoSuchEntity",))


def _gone_is_fine(fn: Callable[[], object]) -> None:
    """A delete whose target is already gone (deleted with its instance) has done its job."""
    try:
        fn()
    except botocore.exceptions.ClientError as exc:
        if not str(exc.response.get("Error", {}).get("Code", "")).endswith(".NotFound"):
            raise


def _pages(client: Any, operation: str, **kwargs: Any) -> Callable[[], list[dict[str, Any]]]:
    """A call that reads every page of a paginated AWS operation."""
    return lambda: list(client.get_paginator(operation).paginate(**kwargs))


def _arn_type(arn: str) -> str:
    """``arn:aws:ec2:us-east-1:123:security-group/sg-1`` -> ``ec2:security-group``."""
    parts = arn.split(":", 5)
    return f"{parts[2]}:{parts[5].split('/', 1)[0]}" if len(parts) == 6 else arn


def _reraise(exc: BaseException) -> None:
    raise exc
