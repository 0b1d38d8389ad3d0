"""The GCP sandbox provider: a session's sandbox is the slice of a project that carries its ``labctl-session`` label.

``provision`` creates the lab's ``cloud_starter`` (instances and disks named
``<name>-<8 hex of the session>``, labelled with the session and the lab); a retried start finds its own resources
made, and refuses to adopt one of that name that is not the session's. Inventory is Compute's aggregated lists of
instances and disks filtered on the session label (:mod:`labctl.providers.gcp.labels`), so destroy, suspension and
the meter see the same set; a starter resource whose label the learner removed gets it back first (``setLabels``
with the current ``labelFingerprint``). :mod:`labctl.providers.gcp.snapshot` turns the lists into the snapshot.
``suspend`` stops the running instances and records them as ``Instance/<zone>/<name>`` (one "replica" each, the
port's record for what ran), ``resume`` starts exactly those that still carry the label; ``enforce`` stops or
deletes one instance a control names; ``destroy`` deletes everything labelled, lists again, and fails naming every
leftover.

Credentials (see README, "GCP sandboxes"): against a Compute endpoint of labctl's choosing (the test fake) the learner
gets the endpoint, project, home zone and the label to put on what they create; labctl then has no per-session
principal to fence, so ``freeze`` cannot change the learner's rights and says so in the log. Issuing learner
credentials for Google's own endpoint (a per-session service account reached by impersonation) is refused with that
explanation until it is implemented.

Only this module imports ``google.cloud.compute_v1`` and ``google.api_core``. Every client uses the REST transport
with ``client_options.api_endpoint`` (a scheme in the endpoint, ``http://`` for the fake, is kept by the transport).
Operations are waited for with labctl's own ``ZoneOperationsClient``: the ``ExtendedOperation`` the client's
non-``_unary`` calls return polls a zone-operations client it builds without the endpoint, so it would ask Google.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.auth.credentials import Credentials as GoogleCredentials
from google.cloud import compute_v1

from labctl.catalog.models import CloudStarter, GcpSandbox, StarterInstance, StarterVolume
from labctl.grading.snapshot import BudgetInfo, SessionInfo, Snapshot
from labctl.ports import Credentials, Listing, ProviderError, ProviderUnavailable, SandboxSpec, Suspension, UsageByPod
from labctl.providers.gcp import labels as lbl
from labctl.providers.gcp import snapshot as snap

log = logging.getLogger("labctl.providers.gcp")

T = TypeVar("T")

OPERATION_WAIT_S = 120.0
RETRYABLE = (429, 500, 502, 503, 504)
_REQUEST_PREFIX = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ")
LAB_LABEL = "labctl-lab"
DEFAULT_IMAGE = "projects/debian-cloud/global/images/family/debian-12"  # a starter VM's, unless the lab names one
DEFAULT_DISK = "pd-balanced"  # a starter disk's type unless the lab names one


def _refusal(what: str, exc: gexc.GoogleAPICallError) -> ProviderError:
    """Google's refusal as a ProviderError carrying its HTTP code, reason and message (the request URL cut)."""
    reasons = [str(e.get("reason")) for e in exc.errors or [] if isinstance(e, Mapping) and e.get("reason")]
    code = exc.code if isinstance(exc.code, int) else 0
    detail = f"{code} {reasons[0]}" if reasons else str(code)
    message = _REQUEST_PREFIX.sub("", str(exc.message or ""))
    return ProviderError(f"GCP refused to {what} ({detail}): {message}", retryable=code in RETRYABLE)


def _call(what: str, fn: Callable[[], T]) -> T:
    """One Compute call: no answer is ProviderUnavailable, a refusal a ProviderError with Google's message."""
    try:
        return fn()
    except gexc.GoogleAPICallError as exc:
        raise _refusal(what, exc) from exc
    except (gexc.RetryError, ConnectionError, OSError) as exc:
        raise ProviderUnavailable(f"GCP did not answer when asked to {what}: {exc}") from exc
    except auth_exc.DefaultCredentialsError as exc:
        raise ProviderUnavailable(f"labctl has no Google credentials to {what}: configure Application Default "
                                  "Credentials") from exc


def _code(exc: BaseException) -> int:
    cause = exc.__cause__
    return cause.code if isinstance(cause, gexc.GoogleAPICallError) and isinstance(cause.code, int) else 0


def fence_of(spec: SandboxSpec) -> GcpSandbox:
    if spec.lab.gcp is None:
        raise ProviderError(f"lab {spec.lab.id} has no gcp section: it cannot run as a GCP sandbox")
    return spec.lab.gcp


def _starter(spec: SandboxSpec) -> CloudStarter:
    return spec.lab.cloud_starter or CloudStarter()


def _kind(item: StarterInstance | StarterVolume) -> str:
    """GCE's word for a starter resource: an Instance or a Disk."""
    return "Disk" if isinstance(item, StarterVolume) else "Instance"


def _as_dict(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = type(message).to_dict(message)
    return data


class GcpSandboxes:
    """Implements the SandboxProvider port on one GCP project (or each gcp lab's own)."""

    name = "gcp"

    def __init__(self, *, project: str | None, endpoint_url: str | None = None,
                 credentials: GoogleCredentials | None = None) -> None:
        self.project = project
        self.endpoint_url = endpoint_url
        # Against a fake endpoint there is nobody to authenticate to; against Google, Application Default Credentials.
        self._credentials = credentials or (AnonymousCredentials() if endpoint_url else None)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._clients:
                cls = {"instances": compute_v1.InstancesClient, "disks": compute_v1.DisksClient,
                       "operations": compute_v1.ZoneOperationsClient}[kind]
                options = ClientOptions(api_endpoint=self.endpoint_url) if self.endpoint_url else None
                self._clients[kind] = _call("build a Compute client", lambda: cls(
                    transport="rest", client_options=options, credentials=self._credentials))
            return self._clients[kind]

    def project_of(self, spec: SandboxSpec) -> str:
        project = fence_of(spec).project or self.project
        if not project:
            raise ProviderError(f"lab {spec.lab.id} names no gcp.project and LABCTL_GCP_PROJECT is not set: labctl "
                                "does not know which project holds its sandboxes")
        return project

    def sandboxes(self) -> Listing:
        """Nothing to compare: a GCP sandbox keeps no root of its own (it is its labelled instances and disks, and a
        learner may delete them all), so an empty sandbox and a vanished one look the same; the sweep leaves GCP
        sessions to their own inventory."""
        return Listing()

    def ping(self) -> str:
        if not self.project:
            return "GCP (no default project; each gcp lab names its own)"
        request = compute_v1.AggregatedListInstancesRequest(project=self.project, max_results=1)
        _call("list the project's instances", lambda: next(iter(self._client("instances").aggregated_list(
            request=request).pages), None))
        return f"GCP project {self.project}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    # --- operations ------------------------------------------------------------------------------------------------

    def _wait(self, project: str, zone: str, op: Any, what: str, *, timeout_s: float = OPERATION_WAIT_S) -> None:
        """Wait until the zone operation ``op`` is DONE; its error, if any, is a ProviderError."""
        deadline = time.monotonic() + timeout_s
        ops = self._client("operations")
        while op.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() >= deadline:
                raise ProviderError(f"GCP did not finish to {what} within {timeout_s:g} s (operation {op.name})",
                                    retryable=True)
            op = _call(f"wait to {what}", partial(ops.wait, project=project, zone=zone, operation=op.name))
        if op.http_error_status_code or (op.error and op.error.errors):
            errors = "; ".join(f"{e.code}: {e.message}" for e in op.error.errors) if op.error else ""
            raise ProviderError(f"GCP failed to {what} ({op.http_error_status_code or 'error'}): "
                                f"{op.http_error_message or errors}",
                                retryable=op.http_error_status_code in RETRYABLE)

    # --- inventory -------------------------------------------------------------------------------------------------

    def listed(self, spec: SandboxSpec) -> snap.Listed:
        """Every instance and disk carrying the session label, in every zone of the project (starter resources whose
        label was removed get it back first)."""
        listed = self._list(spec)
        return self._list(spec) if self._restore_starter(spec, listed) else listed

    def _list(self, spec: SandboxSpec) -> snap.Listed:
        project, wanted = self.project_of(spec), lbl.session_filter(spec.session_id)
        instances = _call("list the session's instances", lambda: [
            (snap.zone_of(zone), _as_dict(i)) for zone, scoped in self._client("instances").aggregated_list(
                request=compute_v1.AggregatedListInstancesRequest(project=project, filter=wanted))
            for i in scoped.instances])
        disks = _call("list the session's disks", lambda: [
            (snap.zone_of(zone), _as_dict(d)) for zone, scoped in self._client("disks").aggregated_list(
                request=compute_v1.AggregatedListDisksRequest(project=project, filter=wanted))
            for d in scoped.disks])
        return snap.Listed(instances=instances, disks=disks)

    def snapshot(self, spec: SandboxSpec, *, now: datetime, interim: bool = False) -> Snapshot:
        """The sandbox as a provider-neutral, unpriced snapshot (docs/SNAPSHOT.md); always read directly (no watch
        cache), ``interim`` or not."""
        session = SessionInfo(id=spec.session_id, lab_id=spec.lab.id, learner_id=spec.learner_id, provider="gcp",
                              started_at=spec.started_at, taken_at=max(now, spec.started_at))
        budget = BudgetInfo(budget_usd=spec.budget_usd, reference_cost_usd=spec.lab.budget.reference_usd)
        return snap.build(self.listed(spec), session=session, budget=budget, now=now)

    def write_usage(self, spec: SandboxSpec, usage: UsageByPod) -> None:
        """A GCP sandbox has no pods, so no simulated pod usage: the catalog refuses ``demand`` on gcp labs."""
        if usage:
            raise ProviderError(f"session {spec.session_id} is a GCP sandbox: it has no pods to write simulated "
                                f"usage for ({', '.join(sorted(usage))})")

    # --- provision ---------------------------------------------------------------------------------------------------

    def _labels(self, spec: SandboxSpec, declared: Mapping[str, str]) -> dict[str, str]:
        return lbl.with_session({**declared, LAB_LABEL: spec.lab.id}, spec.session_id)

    def provision(self, spec: SandboxSpec) -> None:
        """Create the lab's ``cloud_starter`` (disks first), labelled with the session; a retried start finds them
        made and converges their labels."""
        fence, project = fence_of(spec), self.project_of(spec)
        starter = _starter(spec)
        disks_first: list[StarterVolume | StarterInstance] = [*starter.volumes, *starter.instances]
        for item in disks_first:
            zone, name, kind = item.zone or fence.zones[0], lbl.resource_name(item.name, spec.session_id), _kind(item)
            try:
                if isinstance(item, StarterVolume):
                    op = self._insert_disk(spec, project, zone, name, item)
                else:
                    op = self._insert_instance(spec, project, zone, name, item)
            except ProviderError as exc:
                if _code(exc) != 409:
                    raise
                self._ours_or_refuse(spec, project, zone, kind, name)
                continue
            self._wait(project, zone, op, f"create the starter {kind.lower()} {name}")
        log.info("gcp sandbox %s ready in %s (%d starter resource(s))", spec.session_id, project,
                 len(starter.resources))

    def _insert_disk(self, spec: SandboxSpec, project: str, zone: str, name: str, item: StarterVolume) -> Any:
        body = compute_v1.Disk(name=name, size_gb=item.size_gib, labels=self._labels(spec, item.tags),
                               type_=f"projects/{project}/zones/{zone}/diskTypes/{item.disk_type or DEFAULT_DISK}")
        disks = self._client("disks")
        return _call(f"create the starter disk {name}", lambda: disks.insert_unary(
            project=project, zone=zone, disk_resource=body))

    def _insert_instance(self, spec: SandboxSpec, project: str, zone: str, name: str, item: StarterInstance) -> Any:
        want = self._labels(spec, item.tags)
        scheduling = compute_v1.Scheduling(provisioning_model="SPOT" if item.spot else "STANDARD")
        if item.spot:
            scheduling.instance_termination_action = "STOP"
        boot = compute_v1.AttachedDiskInitializeParams(source_image=item.image or DEFAULT_IMAGE, labels=want)
        if item.boot_disk_gib is not None:
            boot.disk_size_gb = item.boot_disk_gib
        body = compute_v1.Instance(
            name=name, machine_type=f"zones/{zone}/machineTypes/{item.instance_type}", labels=want,
            scheduling=scheduling, disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=boot)],
            network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")])
        instances = self._client("instances")
        return _call(f"create the starter instance {name}", lambda: instances.insert_unary(
            project=project, zone=zone, instance_resource=body))

    def _ours_or_refuse(self, spec: SandboxSpec, project: str, zone: str, kind: str, name: str) -> None:
        """A starter name that exists already: made by this session's earlier attempt (it carries the session
        label), or by someone else, which labctl refuses to adopt."""
        client = self._client("instances" if kind == "Instance" else "disks")
        key = {"instance": name} if kind == "Instance" else {"disk": name}
        found = _call(f"read {kind} {name}", partial(client.get, project=project, zone=zone, **key))
        if dict(found.labels).get(lbl.SESSION_LABEL) != lbl.session_value(spec.session_id):
            raise ProviderError(f"{kind} {name} already exists in {project}/{zone} and is not session "
                                f"{spec.session_id}'s: labctl will not adopt it")

    def _relabel(self, project: str, zone: str, kind: str, name: str, changes: Mapping[str, str | None], *,
                 session_id: str) -> None:
        """Apply ``changes`` to an instance's or disk's labels with ``setLabels``: the whole map, sent with the
        fingerprint just read (a concurrent change makes GCE answer 412; labctl reads again once)."""
        client = self._client("instances" if kind == "Instance" else "disks")
        for attempt in range(2):
            if kind == "Instance":
                current = _call(f"read instance {name}", partial(client.get, project=project, zone=zone,
                                                                 instance=name))
            else:
                current = _call(f"read disk {name}", partial(client.get, project=project, zone=zone, disk=name))
            try:
                new = lbl.merged(dict(current.labels), changes, session_id=session_id)
            except ValueError as exc:
                raise ProviderError(f"labels of {kind} {name} would break GCP's rules: {exc}") from exc
            if new == dict(current.labels):
                return
            if kind == "Instance":
                call = partial(client.set_labels_unary, project=project, zone=zone, instance=name,
                               instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                                   labels=new, label_fingerprint=current.label_fingerprint))
            else:
                call = partial(client.set_labels_unary, project=project, zone=zone, resource=name,
                               zone_set_labels_request_resource=compute_v1.ZoneSetLabelsRequest(
                                   labels=new, label_fingerprint=current.label_fingerprint))
            try:
                op = _call(f"label {kind} {name}", call)
            except ProviderError as exc:
                if _code(exc) == 412 and attempt == 0:
                    continue
                raise
            self._wait(project, zone, op, f"label {kind} {name}")
            return

    def _restore_starter(self, spec: SandboxSpec, listed: snap.Listed) -> bool:
        """A starter resource whose session label the learner removed (``setLabels`` replaces the whole map) still
        belongs to the sandbox: labctl knows its name, and puts the label back. True when it changed one."""
        fence, project = fence_of(spec), self.project_of(spec)
        seen = ({("Instance", z, str(i["name"])) for z, i in listed.instances}
                | {("Disk", z, str(d["name"])) for z, d in listed.disks})
        restored = False
        for item in _starter(spec).resources:
            zone, name, kind = item.zone or fence.zones[0], lbl.resource_name(item.name, spec.session_id), _kind(item)
            if (kind, zone, name) in seen:
                continue
            try:
                self._relabel(project, zone, kind, name, {lbl.SESSION_LABEL: lbl.session_value(spec.session_id)},
                              session_id=spec.session_id)
            except ProviderError as exc:
                if _code(exc) == 404:
                    continue  # deleted: nothing to restore
                raise
            log.warning("gcp sandbox %s: %s %s had lost its session label; restored", spec.session_id, kind, name)
            restored = True
        return restored

    # --- credentials and freeze ------------------------------------------------------------------------------------

    def hand_over(self, spec: SandboxSpec, *, previous: SandboxSpec) -> None:
        """Cloud labs keep no warm pool (the catalog refuses one): converging to ``spec`` is a provision."""
        self.provision(spec)

    def credentials(self, spec: SandboxSpec) -> Credentials:
        """The env file a learner's SDK or gcloud uses: project, home zone, the label their resources must carry,
        and the Compute endpoint labctl was given."""
        fence, project = fence_of(spec), self.project_of(spec)
        if not self.endpoint_url:
            raise ProviderError("labctl issues GCP learner credentials only for a configured Compute endpoint "
                                "(LABCTL_GCP_ENDPOINT_URL); for Google's own, give learners a per-session service "
                                "account as README 'GCP sandboxes' describes")
        lines = [f"GOOGLE_CLOUD_PROJECT={project}", f"CLOUDSDK_CORE_PROJECT={project}",
                 f"LABCTL_GCP_ZONE={fence.zones[0]}", f"LABCTL_GCP_ZONES={','.join(fence.zones)}",
                 f"LABCTL_GCP_SESSION_LABEL={lbl.SESSION_LABEL}={lbl.session_value(spec.session_id)}",
                 f"LABCTL_GCP_ENDPOINT_URL={self.endpoint_url}",
                 f"CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE={self.endpoint_url.rstrip('/')}/compute/v1/"]
        return Credentials(kind="gcp", content="\n".join(lines) + "\n", expires_at=spec.expires_at)

    def freeze(self, spec: SandboxSpec, *, frozen: bool = True) -> None:
        """With endpoint credentials there is no per-session principal whose rights could change: say so."""
        fence_of(spec)
        log.warning("gcp sandbox %s: %s not enforced (endpoint credentials have no per-session principal)",
                    spec.session_id, "freeze" if frozen else "unfreeze")

    # --- suspension and enforcement ------------------------------------------------------------------------------

    def _instance_op(self, project: str, zone: str, name: str, action: Literal["stop", "start", "delete"]) -> None:
        instances = self._client("instances")
        call = {"stop": instances.stop_unary, "start": instances.start_unary, "delete": instances.delete_unary}[action]
        op = _call(f"{action} instance {name}", lambda: call(project=project, zone=zone, instance=name))
        self._wait(project, zone, op, f"{action} instance {name}")

    def suspend(self, spec: SandboxSpec) -> Suspension:
        """Stop every running instance of the session (its disks stay, and still cost); the record names them as
        ``Instance/<zone>/<name>``."""
        project = self.project_of(spec)
        stopped: dict[str, int] = {}
        for zone, item in self.listed(spec).instances:
            if item.get("status") in snap.RUNNING_STATUSES:
                self._instance_op(project, zone, str(item["name"]), "stop")
                stopped[f"Instance/{zone}/{item['name']}"] = 1
        log.info("gcp sandbox %s: stopped %d instance(s)", spec.session_id, len(stopped))
        return Suspension(replicas=stopped)

    def resume(self, spec: SandboxSpec, record: Suspension) -> None:
        """Start exactly the instances ``record`` names that still carry the session label and are stopped."""
        project = self.project_of(spec)
        stopped = {(zone, str(item["name"])) for zone, item in self.listed(spec).instances
                   if item.get("status") == "TERMINATED"}
        for key in record.replicas:
            kind, _, rest = key.partition("/")
            zone, _, name = rest.partition("/")
            if kind == "Instance" and (zone, name) in stopped:
                self._instance_op(project, zone, name, "start")

    def enforce(self, spec: SandboxSpec, *, resource: str, action: Literal["stop", "terminate"]) -> None:
        """Stop or delete the session's instance ``Instance/<name>`` (its snapshot ref; ``Instance/<zone>/<name>``
        when the name is used in two zones). An instance without the session label is not the session's."""
        kind, _, name = resource.partition("/")
        if kind != "Instance" or not name:
            raise ProviderError(f"a GCP sandbox enforces only on instances (Instance/<name>), not {resource!r}")
        listed = self.listed(spec).instances
        matches = [(zone, str(item["name"])) for zone, item in listed
                   if str(item["name"]) == name or f"{zone}/{item['name']}" == name]
        if len(matches) != 1:
            raise ProviderError(f"session {spec.session_id} has {'no' if not matches else 'more than one'} instance "
                                f"{name!r} carrying its label" + (": name it as Instance/<zone>/<name>"
                                                                  if matches else ""))
        zone, real = matches[0]
        self._instance_op(self.project_of(spec), zone, real, "stop" if action == "stop" else "delete")
        log.info("gcp sandbox %s: %s instance %s/%s", spec.session_id,
                 "stopped" if action == "stop" else "deleted", zone, real)

    # --- destroy ---------------------------------------------------------------------------------------------------

    def destroy(self, spec: SandboxSpec, *, wait_s: float) -> None:
        """Delete every instance, then every disk, carrying the session label; list again and fail naming every
        leftover. A delete answered DONE is gone in GCE, so passes repeat only while they make progress (a disk is
        free once its instance is gone), up to ``wait_s``."""
        project = self.project_of(spec)
        deadline = time.monotonic() + wait_s
        before: list[str] | None = None
        while True:
            for zone, item in self.listed(spec).instances:
                self._gone_is_fine(partial(self._instance_op, project, zone, str(item["name"]), "delete"))
            for zone, item in self.listed(spec).disks:
                if item.get("users"):
                    continue  # used by an instance that is still going, or by one outside the session: named below
                self._gone_is_fine(partial(self._delete_disk, project, zone, str(item["name"])))
            left = self.listed(spec).refs()
            if not left:
                log.info("gcp sandbox %s destroyed", spec.session_id)
                return
            if left == before or time.monotonic() >= deadline:
                raise ProviderError(f"{len(left)} resource(s) labelled {lbl.SESSION_LABEL}="
                                    f"{lbl.session_value(spec.session_id)} remain in project {project} after "
                                    f"destroy: {', '.join(left)}", retryable=True)
            before = left
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _delete_disk(self, project: str, zone: str, name: str) -> None:
        disks = self._client("disks")
        op = _call(f"delete disk {name}", lambda: disks.delete_unary(project=project, zone=zone, disk=name))
        self._wait(project, zone, op, f"delete disk {name}")

    @staticmethod
    def _gone_is_fine(fn: Callable[[], None]) -> None:
        """A delete whose target is already gone has done its job."""
        try:
            fn()
        except ProviderError as exc:
            if _code(exc) != 404:
                raise
