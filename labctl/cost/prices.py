"""The price sheet (``labs/prices.yaml``) as validated data, and the lookup of a node's hourly price.

Prices change, so they are data with a date and a source per row, never constants in code. The sheet lists, per
provider, region and instance type, the on-demand and spot hourly price with the type's vCPUs, memory and GPUs; GPUs a
provider prices apart from the machine type (GCP) as ``accelerators``; OpenCost's fallback unit rates; the hourly
price of a load balancer and the monthly price of a GB of PVC storage; optional MIG slice shares per GPU product.

:meth:`PriceSheet.node_price` answers "what does this node cost per hour": a sheet row when the type is listed,
otherwise OpenCost's fallback unit rates applied to the node's own capacity, with a warning to show the learner and
the instructor; never zero. :func:`capacity_type`, :func:`provider_of` and :func:`region_of` read what the lookup
needs from a Node's labels, in every spelling EKS, Karpenter, GKE and AKS use (docs/FINOPS.md section 1).

:func:`load_sheet` reads the YAML keeping each node's line, so every error names the file, the line and the field
(``labs/prices.yaml:57: instances.3.spot_hourly_usd: ...``), like :mod:`labctl.catalog.loader` does for labs
(both with :mod:`labctl.catalog.yamldoc`). Pure: no cluster, no network.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from yaml.nodes import MappingNode, Node

from labctl.catalog.loader import display_path
from labctl.catalog.yamldoc import Loc, Problem, compose, dotted_path, line_of, unknown_field_message

PRICES_FILE = "prices.yaml"
HOURS_PER_MONTH = Decimal(730)
GIB = 2**30

Provider = Literal["aws", "gcp", "azure"]
CapacityType = Literal["spot", "on-demand"]
PROVIDERS: tuple[str, ...] = ("aws", "gcp", "azure")

MIG_PROFILE_PATTERN = r"^(?P<g>[1-7])g\.(?P<gb>[1-9]\d*)gb$"
MIG_PROFILE = re.compile(MIG_PROFILE_PATTERN)
_REGION = r"^[a-z0-9][-a-z0-9]*[a-z0-9]$"
_NAME = r"^[A-Za-z0-9][-A-Za-z0-9_.]*$"


class PriceError(ValueError):
    """A node cannot be priced (an unknown type and no capacity to price it from)."""


class PriceSheetError(ValueError):
    """The price sheet is invalid; ``problems`` lists each error with its file, line and field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def to_decimal(value: Decimal | int | float | str) -> Decimal:
    """An exact Decimal of a number; a float is taken by its shortest text (``0.1`` -> ``Decimal('0.1')``)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return Decimal(repr(value))
    return Decimal(value)


def product_key(gpu_product: str) -> str:
    """A GPU product name compared loosely: lowercase, without a leading ``nvidia-`` (GKE's ``nvidia-tesla-t4`` is
    GPU feature discovery's ``Tesla-T4``)."""
    return gpu_product.strip().lower().removeprefix("nvidia-")


# --- the sheet's shape --------------------------------------------------------------------------------------------


def _check_mig_profile(value: str) -> str:
    if not MIG_PROFILE.match(value):
        raise ValueError(f"{value!r} is not a MIG profile such as '1g.10gb' (<g>g.<memory>gb, g from 1 to 7)")
    return value


_AS_NUMBER = PlainSerializer(float, return_type=float, when_used="json")  # JSON and YAML show numbers, not text
Usd = Annotated[Decimal, Field(gt=0, allow_inf_nan=False), _AS_NUMBER]
Gib = Annotated[Decimal, Field(gt=0, allow_inf_nan=False), _AS_NUMBER]
MigProfile = Annotated[str, AfterValidator(_check_mig_profile)]
Share = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False), _AS_NUMBER]
Source = Annotated[str, Field(min_length=1, pattern=r"\S",
                               description="where the figure comes from; say 'unconfirmed' when it is")]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fallback(_Closed):
    """OpenCost's default unit rates: the price of a node of unknown type, and the weights of every node's split."""

    vcpu_hourly_usd: Usd
    memory_gib_hourly_usd: Usd
    gpu_hourly_usd: Usd
    storage_gb_month_usd: Usd
    as_of: date
    source: Source


class LoadBalancer(_Closed):
    """A Service of type LoadBalancer, per hour."""

    hourly_usd: Usd
    as_of: date
    source: Source


class Address(_Closed):
    """A public IPv4 address (an AWS Elastic IP), per hour, attached or not."""

    hourly_usd: Usd
    as_of: date
    source: Source


class Storage(_Closed):
    """PersistentVolumeClaims by requested size, per GB-month (GB = 2^30 bytes)."""

    gb_month_usd: Usd
    as_of: date
    source: Source


def _check_spot(row: InstancePrice | AcceleratorPrice) -> None:
    if row.spot_hourly_usd > row.on_demand_hourly_usd:
        raise PydanticCustomError(
            "spot_above_on_demand",
            "spot_hourly_usd ({spot}) is above on_demand_hourly_usd ({on_demand}); spot is the discounted price",
            {"spot": str(row.spot_hourly_usd), "on_demand": str(row.on_demand_hourly_usd)})


class InstancePrice(_Closed):
    """One instance type in one region of one provider: prices and the capacity they buy."""

    provider: Provider
    region: str = Field(pattern=_REGION)
    instance_type: str = Field(pattern=_NAME)
    on_demand_hourly_usd: Usd
    spot_hourly_usd: Usd
    vcpu: int = Field(ge=1)
    memory_gib: Gib
    gpus: int = Field(default=0, ge=0, le=16)
    gpu_product: str | None = Field(default=None, pattern=_NAME)
    as_of: date
    source: Source

    @model_validator(mode="after")
    def _consistent(self) -> InstancePrice:
        _check_spot(self)
        if self.gpu_product is not None and self.gpus == 0:
            raise ValueError(f"gpu_product {self.gpu_product!r} is set but gpus is 0")
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.region, self.instance_type)

    def hourly_usd(self, capacity_type: CapacityType) -> Decimal:
        return self.spot_hourly_usd if capacity_type == "spot" else self.on_demand_hourly_usd


class AcceleratorPrice(_Closed):
    """A GPU the provider prices per GPU-hour on top of the machine type it is attached to (GCP)."""

    provider: Provider
    region: str = Field(pattern=_REGION)
    gpu_product: str = Field(pattern=_NAME)
    on_demand_hourly_usd: Usd
    spot_hourly_usd: Usd
    as_of: date
    source: Source

    @model_validator(mode="after")
    def _consistent(self) -> AcceleratorPrice:
        _check_spot(self)
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.region, product_key(self.gpu_product))

    def hourly_usd(self, capacity_type: CapacityType) -> Decimal:
        return self.spot_hourly_usd if capacity_type == "spot" else self.on_demand_hourly_usd


class DiskPrice(_Closed):
    """A cloud block volume type (EBS gp3, a GCE pd-balanced disk...) per GB-month in one region."""

    provider: Provider
    region: str = Field(pattern=_REGION)
    volume_type: str = Field(pattern=_NAME)
    gb_month_usd: Usd
    as_of: date
    source: Source

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.region, self.volume_type)


def _first_repeat(keys: list[Any]) -> tuple[int, int] | None:
    seen: dict[Any, int] = {}
    for index, key in enumerate(keys):
        if key in seen:
            return seen[key], index
        seen[key] = index
    return None


class PriceSheet(_Closed):
    """The whole sheet; look prices up with :meth:`node_price`."""

    fallback: Fallback
    load_balancer: LoadBalancer
    storage: Storage
    mig: dict[str, dict[MigProfile, Share]] = Field(
        default_factory=dict, description="GPU product -> MIG profile -> share of the whole GPU")
    accelerators: list[AcceleratorPrice] = Field(default_factory=list)
    disks: list[DiskPrice] = Field(default_factory=list, description="cloud volume types; others at `storage`")
    address: Address | None = Field(default=None, description="public IPv4 addresses (cloud sandboxes)")
    instances: list[InstancePrice] = Field(min_length=1)

    @field_validator("instances", "accelerators", "disks")
    @classmethod
    def _unique_rows(cls, rows: list[Any]) -> list[Any]:
        repeat = _first_repeat([row.key for row in rows])
        if repeat is not None:
            first, index = repeat
            raise PydanticCustomError(
                "duplicate_row", "row {index} repeats row {first} ({key}); each row must be unique",
                {"index": index, "first": first, "key": " ".join(rows[index].key)})
        return rows

    @field_validator("mig")
    @classmethod
    def _unique_products(cls, value: dict[str, dict[str, Decimal]]) -> dict[str, dict[str, Decimal]]:
        names = list(value)
        repeat = _first_repeat([product_key(name) for name in names])
        if repeat is not None:
            first, index = repeat
            raise ValueError(f"GPU products {names[first]!r} and {names[index]!r} are the same product")
        return value

    @property
    def load_balancer_hourly_usd(self) -> Decimal:
        return self.load_balancer.hourly_usd

    @property
    def storage_gb_month_usd(self) -> Decimal:
        return self.storage.gb_month_usd

    def disk_gb_month_usd(self, provider: str | None, region: str | None, volume_type: str | None) -> Decimal:
        """A cloud volume's GB-month rate: its type's row in its region, else the `storage` rate."""
        row = next((d for d in self.disks if d.key == (provider, region, volume_type)), None)
        return row.gb_month_usd if row is not None else self.storage.gb_month_usd

    def instance(self, provider: str | None, region: str | None, instance_type: str | None) -> InstancePrice | None:
        """The sheet row of this instance type, if there is one."""
        return next((row for row in self.instances if row.key == (provider, region, instance_type)), None)

    def accelerator(self, provider: str | None, region: str | None, gpu_product: str | None) -> AcceleratorPrice | None:
        if gpu_product is None:
            return None
        wanted = (provider, region, product_key(gpu_product))
        return next((row for row in self.accelerators if row.key == wanted), None)

    def mig_overrides(self, gpu_product: str | None) -> dict[str, Decimal]:
        """The sheet's MIG slice shares for a GPU product (empty: use the default rule)."""
        if gpu_product is None:
            return {}
        wanted = product_key(gpu_product)
        return next((dict(shares) for name, shares in self.mig.items() if product_key(name) == wanted), {})

    def node_price(self, provider: str | None, region: str | None, instance_type: str | None,
                   capacity_type: CapacityType, *, cpu_cores: Decimal | float | None = None,
                   memory_gib: Decimal | float | None = None, gpus: int = 0,
                   gpu_product: str | None = None) -> NodePrice:
        """The hourly price of one node.

        A listed (provider, region, instance type) is priced from its row at the spot or on-demand price; GPUs the
        row does not include (``gpus`` > the row's, as GCP attaches them) add their ``accelerators`` price, or the
        fallback GPU-hour rate with a warning. An unlisted type (or an unknown provider or region) is priced at the
        fallback unit rates from the node's capacity (``cpu_cores``, ``memory_gib``, ``gpus``), with a warning: the
        fallback has no spot discount, so a spot node of unknown type is priced as on-demand. Raises
        :class:`PriceError` when the type is unlisted and the capacity is missing or zero: never a price of zero.
        """
        fallback = self.fallback
        row = self.instance(provider, region, instance_type)
        if row is not None:
            hourly, on_demand = row.hourly_usd(capacity_type), row.on_demand_hourly_usd
            total_gpus, product, warning = row.gpus, row.gpu_product or gpu_product, None
            extra = gpus if row.gpus == 0 else 0  # GPUs attached to a machine type priced without them
            if extra > 0:
                attached = self.accelerator(provider, region, gpu_product)
                if attached is not None:
                    hourly += extra * attached.hourly_usd(capacity_type)
                    on_demand += extra * attached.on_demand_hourly_usd
                else:
                    hourly += extra * fallback.gpu_hourly_usd
                    on_demand += extra * fallback.gpu_hourly_usd
                    warning = (f"{extra} GPU(s) {gpu_product or '(unknown product)'} on {instance_type} in "
                               f"{provider} {region} have no accelerators row in the price sheet; priced at the "
                               f"fallback ${fallback.gpu_hourly_usd} per GPU-hour")
                total_gpus = extra
            return NodePrice(
                provider=provider, region=region, instance_type=instance_type, capacity_type=capacity_type,
                hourly_usd=hourly, on_demand_hourly_usd=on_demand, vcpu=Decimal(row.vcpu),
                memory_gib=row.memory_gib, gpus=total_gpus, gpu_product=product, source="sheet",
                warning=warning, as_of=row.as_of, row_source=row.source, weights=fallback,
                mig_overrides=self.mig_overrides(product))
        where = f"{instance_type or '(no instance type)'} in {provider or '(unknown provider)'} " \
                f"{region or '(unknown region)'}"
        if cpu_cores is None or memory_gib is None:
            raise PriceError(f"{where} is not in the price sheet and its capacity is unknown: pass the node's cpu "
                             "and memory capacity to price it at the fallback unit rates")
        cores, gib = to_decimal(cpu_cores), to_decimal(memory_gib)
        if cores < 0 or gib < 0 or gpus < 0:
            raise PriceError(f"{where}: capacity cannot be negative (cpu {cores}, memory {gib} GiB, gpus {gpus})")
        hourly = (cores * fallback.vcpu_hourly_usd + gib * fallback.memory_gib_hourly_usd
                  + gpus * fallback.gpu_hourly_usd)
        if hourly <= 0:
            raise PriceError(f"{where} is not in the price sheet and has no capacity to price it from")
        known = sorted({f"{r.provider} {r.region}" for r in self.instances if r.instance_type == instance_type})
        elsewhere = f" (the sheet lists it for {', '.join(known)})" if known else ""
        warning = (f"{where} is not in the price sheet{elsewhere}; priced at OpenCost's fallback unit rates from its "
                   f"capacity ({_plain(cores)} vCPU, {_plain(gib)} GiB, {gpus} GPU): ${_plain(hourly)}/h"
                   + (", without a spot discount" if capacity_type == "spot" else ""))
        return NodePrice(
            provider=provider, region=region, instance_type=instance_type, capacity_type=capacity_type,
            hourly_usd=hourly, on_demand_hourly_usd=hourly, vcpu=cores, memory_gib=gib, gpus=gpus,
            gpu_product=gpu_product, source="fallback", warning=warning, as_of=fallback.as_of,
            row_source=fallback.source, weights=fallback, mig_overrides=self.mig_overrides(gpu_product))

    def node_price_from_labels(self, labels: Mapping[str, str], *, cpu_cores: Decimal | float | None = None,
                               memory_gib: Decimal | float | None = None, gpus: int | None = None) -> NodePrice:
        """:meth:`node_price` for a Node's labels (instance type, region, provider, capacity type, GPU product);
        ``gpus`` defaults to the ``nvidia.com/gpu.count`` label (the physical GPUs, MIG or not)."""
        gpu_count = gpus if gpus is not None else gpu_count_of(labels)
        return self.node_price(provider_of(labels), region_of(labels), instance_type_of(labels),
                               capacity_type(labels), cpu_cores=cpu_cores, memory_gib=memory_gib, gpus=gpu_count,
                               gpu_product=gpu_product_of(labels))


@dataclass(frozen=True)
class NodePrice:
    """What one node costs per hour, and what that buys.

    ``source`` is ``"sheet"`` or ``"fallback"``; ``warning`` says why a price is a guess (show it in the session's
    events). ``weights`` are the fallback unit rates whose ratio splits the price into unit rates
    (:func:`labctl.cost.model.unit_rates`); ``mig_overrides`` the sheet's MIG shares for this node's GPU product.
    """

    provider: str | None
    region: str | None
    instance_type: str | None
    capacity_type: CapacityType
    hourly_usd: Decimal
    on_demand_hourly_usd: Decimal
    vcpu: Decimal
    memory_gib: Decimal
    gpus: int
    gpu_product: str | None
    source: Literal["sheet", "fallback"]
    warning: str | None
    as_of: date
    row_source: str
    weights: Fallback
    mig_overrides: Mapping[str, Decimal] = field(default_factory=dict)


def _plain(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: ``Decimal('16.000')`` -> ``16``."""
    return format(value.normalize(), "f")


# --- reading node labels ------------------------------------------------------------------------------------------

# (label key, value meaning spot), values compared case-insensitively (docs/FINOPS.md section 1).
SPOT_LABELS: tuple[tuple[str, str], ...] = (
    ("eks.amazonaws.com/capacitytype", "spot"),         # EKS managed node groups: SPOT | ON_DEMAND
    ("karpenter.sh/capacity-type", "spot"),             # Karpenter: spot | on-demand | reserved
    ("cloud.google.com/gke-spot", "true"),              # GKE Spot VMs
    ("cloud.google.com/gke-provisioning", "spot"),      # GKE: spot | standard
    ("cloud.google.com/gke-preemptible", "true"),       # GKE legacy preemptible VMs
    ("kubernetes.azure.com/scalesetpriority", "spot"),  # AKS: spot | regular (or absent)
    ("node.kubernetes.io/lifecycle", "spot"),           # kops and self-managed groups (a convention)
)
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
GPU_PRODUCT_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator")

_AWS_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")                 # m5.xlarge, p4de.24xlarge, u-6tb1.metal
_GCP_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9]+(-[a-z0-9]+)*$")       # e2-standard-4, a2-highgpu-1g
_AZURE_TYPE = re.compile(r"^(standard|basic)_", re.IGNORECASE)            # Standard_D4s_v3
_PROVIDER_LABEL_PREFIXES: tuple[tuple[str, Provider], ...] = (
    ("eks.amazonaws.com/", "aws"), ("karpenter.k8s.aws/", "aws"),
    ("kubernetes.azure.com/", "azure"),
    ("cloud.google.com/gke-nodepool", "gcp"), ("cloud.google.com/machine-family", "gcp"),
)


def _lowered(labels: Mapping[str, str]) -> dict[str, str]:
    return {key.strip().lower(): str(value).strip().lower() for key, value in labels.items()}


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = labels.get(key)
        if value:
            return value.strip()
    return None


def capacity_type(labels: Mapping[str, str]) -> CapacityType:
    """``"spot"`` when any capacity label says spot (EKS, Karpenter, GKE incl. legacy preemptible, AKS, or the
    ``node.kubernetes.io/lifecycle`` convention), keys and values compared case-insensitively; else
    ``"on-demand"`` (which also covers Karpenter's ``reserved`` and AKS's ``regular``)."""
    lowered = _lowered(labels)
    return "spot" if any(lowered.get(key) == value for key, value in SPOT_LABELS) else "on-demand"


def instance_type_of(labels: Mapping[str, str]) -> str | None:
    return _first(labels, INSTANCE_TYPE_LABELS)


def region_of(labels: Mapping[str, str]) -> str | None:
    """The node's region from ``topology.kubernetes.io/region`` (or its deprecated beta spelling)."""
    return _first(labels, REGION_LABELS)


def gpu_product_of(labels: Mapping[str, str]) -> str | None:
    return _first(labels, GPU_PRODUCT_LABELS)


def gpu_count_of(labels: Mapping[str, str]) -> int:
    """The node's physical GPUs from GPU feature discovery's ``nvidia.com/gpu.count`` (0 when absent or invalid)."""
    value = labels.get("nvidia.com/gpu.count", "").strip()
    return int(value) if value.isdigit() else 0


def gpu_memory_mib_of(labels: Mapping[str, str]) -> int | None:
    """Memory of one GPU in MiB from ``nvidia.com/gpu.memory`` (what MIG slice shares are measured against)."""
    value = labels.get("nvidia.com/gpu.memory", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def provider_of(labels: Mapping[str, str]) -> Provider | None:
    """The cloud a node runs on: by the shape of its instance type (AWS ``family.size``, GCP ``family-kind-n``,
    Azure ``Standard_*``), else by provider-specific label prefixes; None when neither tells.

    The instance type decides first because nodes may carry several clouds' labels (labctl's simulated fleet labels
    every node the EKS, Karpenter and GKE ways; its instance types are AWS types).
    """
    instance_type = instance_type_of(labels)
    if instance_type:
        if _AZURE_TYPE.match(instance_type):
            return "azure"
        if _AWS_TYPE.match(instance_type):
            return "aws"
        if _GCP_TYPE.match(instance_type):
            return "gcp"
    keys = [key.lower() for key in labels]
    for prefix, provider in _PROVIDER_LABEL_PREFIXES:
        if any(key.startswith(prefix) for key in keys):
            return provider
    return None


# --- loading with lines -------------------------------------------------------------------------------------------


def default_sheet_path(labs_dir: Path) -> Path:
    return labs_dir / PRICES_FILE


def load_sheet(path: Path) -> PriceSheet:
    """Read and validate a price sheet; raises :class:`PriceSheetError` naming the file, line and field of every
    problem (unknown keys with the closest known field, repeated keys and rows, bad values)."""
    source = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceSheetError([Problem(source, None, None, f"cannot read: {exc.strerror or exc}")]) from exc
    return parse_sheet(text, source=source)


def parse_sheet(text: str, *, source: str) -> PriceSheet:
    """:func:`load_sheet` for text already read; ``source`` names it in errors."""
    root, data = compose(text, source, PriceSheetError, loader=_Loader, path=dotted_path)
    if not isinstance(data, dict) or not isinstance(root, MappingNode):
        raise PriceSheetError([Problem(source, 1, None, "a price sheet is a YAML mapping (fallback, load_balancer, "
                                                        "storage, instances, ...)")])
    try:
        return PriceSheet.model_validate(data)
    except ValidationError as exc:
        raise PriceSheetError([_problem(err, root, data, source) for err in exc.errors()]) from exc


class _Loader(yaml.SafeLoader):
    """The safe loader, leaving dates as text for pydantic, so a bad date is a field error with a line, not a crash
    of the YAML constructor."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _problem(err: Any, root: Node, data: Any, source: str) -> Problem:
    loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and p.endswith("]")))
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "duplicate_row":
        loc = (*loc, int(err["ctx"]["index"]))
    elif err["type"] == "extra_forbidden":
        message = _unknown_field_message(loc)
    elif err["type"] == "missing":
        message = "required field is missing"
    row = _row_name(data, loc)
    if row:
        message = f"({row}) {message}"
    line = line_of(root, loc, number_keys=True)
    return Problem(source, root.start_mark.line + 1 if line is None else line, dotted_path(loc), message)


def _row_name(data: Any, loc: Loc) -> str | None:
    """``aws us-east-1 m5.xlarge`` for an error inside a row of ``instances`` or ``accelerators``."""
    if len(loc) < 2 or loc[0] not in ("instances", "accelerators") or not isinstance(loc[1], int):
        return None
    rows = data.get(str(loc[0]))
    if not isinstance(rows, list) or not 0 <= loc[1] < len(rows) or not isinstance(rows[loc[1]], dict):
        return None
    row = rows[loc[1]]
    name_key = "instance_type" if loc[0] == "instances" else "gpu_product"
    parts = [str(row[key]) for key in ("provider", "region", name_key) if row.get(key) is not None]
    return " ".join(parts) or None


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "fallback": Fallback, "load_balancer": LoadBalancer, "storage": Storage, "address": Address,
    "instances": InstancePrice, "accelerators": AcceleratorPrice,
}


def _unknown_field_message(loc: Loc) -> str:
    parent = loc[:-1]
    model: type[BaseModel] | None = PriceSheet if not parent else _SECTION_MODELS.get(str(parent[0]))
    return unknown_field_message(loc, list(model.model_fields) if model is not None else [])
