"""The snapshot: a provider-neutral inventory of one sandbox at one moment, the only thing graders read.

A snapshot is plain data (``schema: labctl.snapshot/v1``): who and when (:class:`SessionInfo`), the money limits
(:class:`BudgetInfo`), what the meter says (:class:`CostInfo`), the nodes the sandbox's pods ran on (:class:`Node`)
and every object of the sandbox as one flat :class:`Resource` model; beside them, what the learner declared but
labctl never takes as a figure: ConfigMaps (:class:`ConfigMapData`) and HorizontalPodAutoscalers
(:class:`Autoscaler`). The resource model is deliberately flat: one ``kind`` plus optional fields, so a Kubernetes
Pod, a PersistentVolumeClaim and an EC2 instance (``kind: Instance``, tags as ``labels``) share one shape and a grader
written in any language reads them the same way.

Units are normalised once, by the producer: CPU in cores (float), memory and storage in bytes, GPUs and MIG slices as
counts keyed by their resource name (``nvidia.com/gpu``, ``nvidia.com/mig-1g.10gb``), money in US dollars, time in
hours. Kubernetes-shaped sub-objects keep their Kubernetes field names (``tolerations``, ``affinity``,
``pod_failure_policy``, ``selector`` as a LabelSelector with ``matchLabels`` / ``matchExpressions``).

Every model is closed (``extra="forbid"``): a misspelt field is an error at the producer, not a silently ignored key
at the grader. Everything else the apiserver accepts is accepted here: any label or annotation text, a taint without a
value, quantities of any size (storage and memory round up to whole bytes, as Kubernetes rounds them), pods without
optional fields. One snapshot travels from the provider (unpriced: no ``hourly_usd`` yet) through the meter (which
returns a new, priced copy) to the graders and the receipt. ``docs/SNAPSHOT.md`` documents every field with an
example. Usage::

    snap = Snapshot.model_validate(data)        # from a dict (e.g. json.loads of a stored snapshot)
    snap = load_snapshot(text_or_path)          # from JSON text, or a JSON file given as a Path
    text = dump_snapshot(snap)                  # to JSON text ("schema" key, ISO datetimes, no nulls)
    data = snapshot_dict(snap)                  # to JSON-ready data, what graders get on stdin
    snap.resource("Deployment", "web").pod_template_labels
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

SCHEMA_ID: Final = "labctl.snapshot/v1"

Provider = Literal["kubernetes", "aws", "gcp"]
CapacityType = Literal["spot", "on-demand"]
UsageSource = Literal["simulator", "metrics", "requests"]
PriceSource = Literal["sheet", "fallback"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _whole_units(value: Any) -> Any:
    """A figure in whole bytes: a fractional one (a ``1500m`` claim, a measured ``0.5``) rounds up, as Kubernetes'
    ``Quantity.Value()`` rounds; anything else is left to validation."""
    if isinstance(value, float) and math.isfinite(value):
        return math.ceil(value)
    return value


def _text(value: Any) -> Any:
    """An absent optional string (a taint's ``value``) is the empty string."""
    return "" if value is None else value


Bytes = Annotated[int, BeforeValidator(_whole_units), Field(ge=0)]


class ObjectRef(_Closed):
    """A reference to another resource of the snapshot, printed as ``Kind/name``."""

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


class SessionInfo(_Closed):
    """Whose sandbox this is, and when it started and was inventoried."""

    id: str = Field(min_length=1)
    lab_id: str = Field(min_length=1)
    learner_id: str = Field(min_length=1)
    provider: Provider
    namespace: str | None = None
    started_at: AwareDatetime
    taken_at: AwareDatetime

    @model_validator(mode="after")
    def _taken_after_start(self) -> SessionInfo:
        if self.taken_at < self.started_at:
            raise ValueError(f"taken_at ({self.taken_at.isoformat()}) is before started_at "
                             f"({self.started_at.isoformat()})")
        return self


class BudgetInfo(_Closed):
    """The money limits the session is judged against."""

    budget_usd: float = Field(gt=0)
    reference_cost_usd: float | None = Field(default=None, ge=0,
                                             description="what the instructor's reference solution cost")
    starter_burn_rate_usd_per_hour: float | None = Field(
        default=None, ge=0, description="the burn rate of the lab's starter, before the learner changed anything")


class CostInfo(_Closed):
    """What the cost meter says at ``taken_at``."""

    accrued_usd: float = Field(ge=0)
    burn_rate_usd_per_hour: float = Field(ge=0)
    usage_source: UsageSource


class ServiceFigures(_Closed):
    """One workload of the lab's simulated demand over one ledger window (the session so far, or at submission the
    grading window's replay): requests offered, served and dropped, what its pods cost over that window step by step
    (pods an autoscaler removed included; the service ledger, never the pods that happen to be present), and the
    unit economics of the two."""

    workload: str = Field(min_length=1, description="the demand declaration's key: Kind/name or 'selector k=v'")
    offered: float = Field(ge=0)
    served: float = Field(ge=0)
    dropped: float = Field(ge=0)
    served_share: float | None = Field(default=None, ge=0, le=1, description="served / offered; None: none offered")
    cost_usd: float = Field(ge=0, description="what the workload's pods cost over the window (the service ledger: "
                                              "each step's pods x their rate x the step's seconds)")
    cost_per_1000_requests: float | None = Field(default=None, ge=0,
                                                 description="cost_usd / served x 1000; None: nothing served")


class Taint(_Closed):
    key: str = Field(min_length=1)
    value: Annotated[str, BeforeValidator(_text)] = ""
    effect: TaintEffect


class Node(_Closed):
    """A node that pods of the sandbox run (or ran) on, with its capacity and (once priced) its price per hour."""

    name: str = Field(min_length=1)
    instance_type: str
    capacity_type: CapacityType
    zone: str
    region: str
    gpu_product: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    capacity: dict[str, float] = Field(default_factory=dict, description="status.capacity, normalised")
    hourly_usd: float | None = Field(default=None, ge=0)
    on_demand_hourly_usd: float | None = Field(default=None, ge=0)
    price_source: PriceSource | None = None

    @model_validator(mode="after")
    def _on_demand_price_matches(self) -> Node:
        if self.capacity_type == "on-demand" and self.on_demand_hourly_usd != self.hourly_usd:
            raise ValueError(f"node {self.name} is on-demand, so on_demand_hourly_usd ({self.on_demand_hourly_usd}) "
                             f"must equal hourly_usd ({self.hourly_usd})")
        return self


class ContainerUsage(_Closed):
    """Measured use of one container; a missing figure means "not measured", never zero."""

    cpu: float | None = Field(default=None, ge=0, description="cores")
    memory: Bytes | None = Field(default=None, description="bytes")
    gpu_engine_active: float | None = Field(default=None, ge=0, le=1,
                                            description="DCGM_FI_PROF_GR_ENGINE_ACTIVE, 0-1")
    gpu_memory_mib: float | None = Field(default=None, ge=0, description="DCGM_FI_DEV_FB_USED, MiB")


class Container(_Closed):
    """A container of a pod, or of a workload's pod template (``restart_policy: Always`` on an init container: a
    sidecar, which runs beside the app containers)."""

    name: str = Field(min_length=1)
    image: str | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    requests: dict[str, float] = Field(default_factory=dict)
    limits: dict[str, float] = Field(default_factory=dict)
    restart_policy: str | None = None
    usage: ContainerUsage | None = None


class SelectorRequirement(_Closed):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(_Closed):
    """A Kubernetes LabelSelector. A plain ``{label: value}`` map (a Service's selector) is accepted as matchLabels."""

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[SelectorRequirement] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _plain_map(cls, data: Any) -> Any:
        if isinstance(data, dict) and not ({"matchLabels", "matchExpressions"} & data.keys()):
            return {"matchLabels": data}
        return data

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` satisfy the selector (Kubernetes semantics; an empty selector matches everything)."""
        if any(labels.get(key) != value for key, value in self.matchLabels.items()):
            return False
        return all(_requirement_holds(req, labels) for req in self.matchExpressions)


def _requirement_holds(req: SelectorRequirement, labels: dict[str, str]) -> bool:
    if req.operator == "Exists":
        return req.key in labels
    if req.operator == "DoesNotExist":
        return req.key not in labels
    if req.operator == "In":
        return labels.get(req.key) in req.values
    return labels.get(req.key) not in req.values


class Resource(_Closed):
    """One object of the sandbox. Only ``kind`` and ``name`` are always set; the rest applies per kind.

    For workloads (Deployment, StatefulSet, DaemonSet, Job, CronJob) the scheduling and container fields describe the
    pod template; for pods they describe the pod. Cloud instances are ``kind: Instance`` with their tags as labels.
    """

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner: ObjectRef | None = None
    controller: ObjectRef | None = None
    # workloads
    pod_template_labels: dict[str, str] | None = None
    pod_template_annotations: dict[str, str] | None = None
    replicas: int | None = Field(default=None, ge=0)
    ready_replicas: int | None = Field(default=None, ge=0)
    selector: LabelSelector | None = None
    # scheduling (pods, and workloads' pod templates)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list)
    pod_requests: dict[str, float] = Field(default_factory=dict, description="pod-level spec.resources.requests")
    overhead: dict[str, float] = Field(default_factory=dict, description="spec.overhead (RuntimeClass)")
    volumes: list[str] = Field(default_factory=list, description="PVC claim names the pod mounts")
    # pods and instances
    node: str | None = None
    phase: str | None = None
    running_hours: float | None = Field(default=None, ge=0)
    # money
    cost_usd: float | None = Field(default=None, ge=0)
    hourly_usd: float | None = Field(default=None, ge=0)
    on_demand_hourly_usd: float | None = Field(default=None, ge=0)
    # PersistentVolumeClaims
    storage: Bytes | None = Field(default=None, description="bytes")
    mounted_by: list[str] = Field(default_factory=list, description="names of the pods mounting the claim")
    # Services
    service_type: str | None = None
    endpoints: int | None = Field(default=None, ge=0, description="ready endpoints")
    # PodDisruptionBudgets
    min_available: int | str | None = None
    max_unavailable: int | str | None = None
    # CronJobs
    schedule: str | None = None
    suspend: bool | None = None
    time_zone: str | None = None
    # Jobs
    parallelism: int | None = Field(default=None, ge=0)
    completions: int | None = Field(default=None, ge=0)
    backoff_limit: int | None = Field(default=None, ge=0)
    pod_failure_policy: dict[str, Any] | None = None
    # cloud instances (and anything else placed by the provider rather than on a node)
    instance_type: str | None = None
    capacity_type: CapacityType | None = None
    zone: str | None = None
    region: str | None = None
    volume_type: str | None = Field(default=None, description="a cloud volume's type: gp3, st1 (AWS), pd-balanced "
                                                               "(GCP)")
    accelerators: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="GPUs attached to a cloud instance beyond its type's own, by product "
                                          "(GCP's guestAccelerators), e.g. {'nvidia-tesla-t4': 1}")

    @field_validator("min_available", "max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str) and not (value.endswith("%") and value[:-1].isdigit()):
            raise ValueError(f"{value!r} must be a whole number or a percentage like '50%'")
        return value

    @property
    def ref(self) -> str:
        """``Kind/name``, the way evidence and feedback name resources."""
        return f"{self.kind}/{self.name}"


class ConfigMapData(_Closed):
    """A ConfigMap of the sandbox: a declaration the learner writes, never a measurement. Graders use it only to
    compare what the learner says (e.g. the unit cost it computed) with what labctl measured. Its text ``data`` is
    capped by the producer (``truncated`` says when keys were left out or values cut); ``binaryData`` is not kept."""

    name: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    data: dict[str, str] = Field(default_factory=dict)
    truncated: bool = False


class Autoscaler(_Closed):
    """A HorizontalPodAutoscaler (``autoscaling/v2``) of the sandbox: what the learner declared (target, bounds,
    metrics and behavior in Kubernetes' field names) and what the controller last decided (its status)."""

    name: str = Field(min_length=1)
    target: ObjectRef | None = Field(default=None, description="spec.scaleTargetRef as Kind/name")
    min_replicas: int | None = Field(default=None, ge=0, description="spec.minReplicas (Kubernetes' default: 1)")
    max_replicas: int | None = Field(default=None, ge=0)
    metrics: list[dict[str, Any]] = Field(default_factory=list, description="spec.metrics, as written")
    behavior: dict[str, Any] | None = None
    current_replicas: int | None = Field(default=None, ge=0)
    desired_replicas: int | None = Field(default=None, ge=0)


class Snapshot(BaseModel):
    """The whole inventory of one sandbox at ``session.taken_at``."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    schema_id: Literal["labctl.snapshot/v1"] = Field(default=SCHEMA_ID, alias="schema")
    session: SessionInfo
    budget: BudgetInfo
    cost: CostInfo
    nodes: list[Node] = Field(default_factory=list)
    resources: list[Resource] = Field(default_factory=list)
    service: list[ServiceFigures] | None = Field(
        default=None, description="per declared workload of the lab's simulated demand; absent without one")
    config_maps: list[ConfigMapData] | None = Field(
        default=None, description="the sandbox's ConfigMaps (declarations, capped); absent when it has none")
    autoscalers: list[Autoscaler] | None = Field(
        default=None, description="the sandbox's HorizontalPodAutoscalers; absent when it has none")

    @model_validator(mode="after")
    def _unique_names(self) -> Snapshot:
        _no_duplicates("node", [n.name for n in self.nodes])
        _no_duplicates("resource", [r.ref for r in self.resources])
        return self

    def resource(self, kind: str, name: str) -> Resource | None:
        """The resource ``kind/name``, or None."""
        return next((r for r in self.resources if r.kind == kind and r.name == name), None)

    def of_kind(self, *kinds: str) -> list[Resource]:
        """Every resource of one of ``kinds``, in snapshot order."""
        return [r for r in self.resources if r.kind in kinds]

    def node(self, name: str | None) -> Node | None:
        """The node called ``name``, or None (also for a pod that is not scheduled)."""
        return next((n for n in self.nodes if n.name == name), None) if name else None

    def pods_of(self, kind: str, name: str) -> list[Resource]:
        """The pods whose top-level controller is ``kind/name``."""
        return [r for r in self.resources if r.kind == "Pod" and r.controller is not None
                and r.controller.kind == kind and r.controller.name == name]


def _no_duplicates(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name} appears twice")
        seen.add(name)


def load_snapshot(source: str | bytes | Path) -> Snapshot:
    """A snapshot from JSON text, or from a JSON file when given a :class:`~pathlib.Path`."""
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return Snapshot.model_validate_json(text)


def dump_snapshot(snapshot: Snapshot, *, indent: int | None = None) -> str:
    """The snapshot as JSON text (``schema`` key, ISO 8601 datetimes, unset optional fields omitted)."""
    return snapshot.model_dump_json(indent=indent, exclude_none=True)


def snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data: what graders receive on stdin under ``"snapshot"``."""
    return snapshot.model_dump(mode="json", exclude_none=True)
