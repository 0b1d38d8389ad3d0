"""What a lab is, as data: the validated shape of ``labs/<id>/lab.yaml``.

Pure pydantic models, every one closed to unknown keys (``extra="forbid"``) so a typo is an error, not a silently
ignored field. Checks that need the lab's surroundings (starter templates exist in ``manifests/``, node pools exist in
``labs/fleet.yaml``) run only when the loader passes them in the validation context (:class:`CheckContext`), so the
same models also validate a lab received as plain data. :mod:`labctl.catalog.loader` turns validation errors into
messages naming the file, the line and the field; :func:`lab_json_schema` is the editor schema of the same shape.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from labctl.catalog import durations, windows

# --- Kubernetes names, labels and quantities (docs/FINOPS.md section 2) -----------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
QUANTITY_PATTERN = r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal("1e3"),
            "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
            "E": Decimal("1e18")}

LAB_ID_MAX = 40
POOL_MAX = 500  # warm sandboxes one lab may keep
STARTER_SUFFIX = ".yaml.j2"
GRADERS_DIR = "graders"


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity (``"500m"`` -> 0.5, ``"2Gi"`` -> 2147483648); ValueError otherwise."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. '4', '500m', '16Gi', '10G')")
    number = Decimal(match[1])
    suffix = match[3] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Decimal(10) ** int(suffix[1:])


def check_label_key(key: str) -> str:
    """A Kubernetes label key: optional DNS-subdomain prefix (<= 253) and ``/``, then a name (<= 63)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {key!r}: the prefix {prefix!r} must be a DNS subdomain (lowercase letters, "
                         "digits, '-' and '.', at most 253 characters)")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(f"label key {key!r}: the name {name!r} must be 1-63 characters, letters, digits, '-', '_' "
                         "and '.', starting and ending with a letter or digit")
    return key


def check_label_value(value: str) -> str:
    """A Kubernetes label value: empty, or <= 63 characters of the label-name alphabet."""
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise ValueError(f"label value {value!r} must be at most 63 characters, letters, digits, '-', '_' and '.', "
                         "starting and ending with a letter or digit")
    return value


def _check_quantity(value: str) -> str:
    parse_quantity(value)
    return value


def _number_to_text(value: Any) -> Any:
    """YAML reads ``pods: 10`` as a number; a quantity is text, so whole numbers are taken as their text."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value


_LABEL_KEY_SCHEMA = r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_LABEL_VALUE_SCHEMA = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LabelKey = Annotated[
    str, AfterValidator(check_label_key),
    WithJsonSchema({"type": "string", "maxLength": 317, "pattern": _LABEL_KEY_SCHEMA}),
]
LabelValue = Annotated[
    str, AfterValidator(check_label_value),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": _LABEL_VALUE_SCHEMA}),
]
Quantity = Annotated[
    str, BeforeValidator(_number_to_text), AfterValidator(_check_quantity),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": QUANTITY_PATTERN}, {"type": "integer", "minimum": 0}],
                    "description": "a Kubernetes quantity, e.g. '4', '500m', '16Gi'"}),
]

# --- durations and windows ----------------------------------------------------------------------------------------

_DURATION_SCHEMA = {"type": "string", "pattern": durations.DURATION_PATTERN.replace("(?P<d>", "(")
                    .replace("(?P<h>", "(").replace("(?P<m>", "(").replace("(?P<s>", "("),
                    "examples": ["90s", "45m", "2h", "1h30m", "1d"]}


def _check_duration(value: str) -> str:
    durations.parse_duration(value)
    return value


def _check_duration_or_zero(value: str) -> str:
    durations.parse_duration(value, allow_zero=True)
    return value


def _no_bare_number(value: Any) -> Any:
    """YAML reads ``limit: 90`` as a number; a duration needs its unit, so say so rather than "not a string"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit: write durations like '90s', '45m', '2h', '1h30m' or '1d'")
    return value


def _zero_to_text(value: Any) -> Any:
    return "0" if isinstance(value, int) and not isinstance(value, bool) and value == 0 else _no_bare_number(value)


def _check_window(value: str) -> str:
    windows.parse_window(value)
    return value


Duration = Annotated[str, BeforeValidator(_no_bare_number), AfterValidator(_check_duration),
                     WithJsonSchema(_DURATION_SCHEMA)]
DurationOrZero = Annotated[
    str, BeforeValidator(_zero_to_text), AfterValidator(_check_duration_or_zero),
    WithJsonSchema({"anyOf": [_DURATION_SCHEMA, {"const": "0"}, {"const": 0}]}),
]
WindowText = Annotated[
    str, AfterValidator(_check_window),
    WithJsonSchema({"type": "string", "pattern": windows.WINDOW_PATTERN,
                    "examples": ["Mon-Fri 08:00-18:00 Europe/Berlin", "Daily 07:00-22:00 UTC"]}),
]

# --- checks against the lab's surroundings ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckContext:
    """What the loader knows beyond the lab file; pass as ``Lab.model_validate(data, context=CheckContext(...))``."""

    manifests_dir: Path | None = None
    pool_names: frozenset[str] | None = None
    pools_source: str = "labs/fleet.yaml"


def _context(info: ValidationInfo) -> CheckContext:
    return info.context if isinstance(info.context, CheckContext) else CheckContext()


def _check_template_path(value: str, info: ValidationInfo) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ValueError(f"{value!r} must be a path relative to manifests/, without '..'")
    if not value.endswith(STARTER_SUFFIX):
        raise ValueError(f"{value!r} must be a Jinja2 template of YAML, named *{STARTER_SUFFIX}")
    manifests_dir = _context(info).manifests_dir
    if manifests_dir is not None and not (manifests_dir / value).is_file():
        raise ValueError(f"template {value!r} does not exist in {manifests_dir}")
    return value


def _check_pool(value: str, info: ValidationInfo) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(f"pool name {value!r} must be lowercase letters, digits and '-'")
    ctx = _context(info)
    if ctx.pool_names is not None and value not in ctx.pool_names:
        known = ", ".join(sorted(ctx.pool_names)) or "(none)"
        raise ValueError(f"no node pool {value!r} in {ctx.pools_source}; pools: {known}")
    return value


def _check_grader_script(value: str) -> str:
    path = PurePosixPath(value)
    if (path.is_absolute() or ".." in path.parts or "\\" in value or len(path.parts) < 2
            or path.parts[0] != GRADERS_DIR or value.endswith("/")):
        raise ValueError(f"{value!r} must be a file path under {GRADERS_DIR}/, e.g. 'graders/tag_coverage.py'")
    return value


TemplatePath = Annotated[str, AfterValidator(_check_template_path),
                         WithJsonSchema({"type": "string", "pattern": r"^[^/\\].*\.yaml\.j2$"})]
PoolName = Annotated[str, AfterValidator(_check_pool),
                     WithJsonSchema({"type": "string", "pattern": _DNS_LABEL.pattern})]
GraderScript = Annotated[str, AfterValidator(_check_grader_script),
                         WithJsonSchema({"type": "string", "pattern": r"^graders/[^.][^\\]*[^/]$"})]

# --- quota --------------------------------------------------------------------------------------------------------

QUOTA_KEYS = frozenset({
    "cpu", "memory", "pods", "requests.nvidia.com/gpu",
    "count/secrets", "count/configmaps", "count/deployments.apps", "count/jobs.batch",
    "services", "services.nodeports", "services.loadbalancers",
    "requests.ephemeral-storage", "limits.ephemeral-storage", "persistentvolumeclaims", "requests.storage",
})
MIG_QUOTA_PATTERN = r"^requests\.nvidia\.com/mig-\d+g\.\d+gb$"
_MIG_QUOTA = re.compile(MIG_QUOTA_PATTERN)
COUNT_QUOTA_KEYS = frozenset({
    "pods", "requests.nvidia.com/gpu", "count/secrets", "count/configmaps", "count/deployments.apps",
    "count/jobs.batch", "services", "services.nodeports", "services.loadbalancers", "persistentvolumeclaims",
})
# What a Kubernetes lab gets for every key it does not set: enough for a lab's handful of objects, nothing that
# reaches outside the sandbox (no node ports, no load balancers) and no storage unless the lab asks for it.
# ``count/configmaps`` includes the ``kube-root-ca.crt`` ConfigMap the controller-manager puts in every namespace;
# every LoadBalancer Service also takes one node port per port (unless it sets allocateLoadBalancerNodePorts: false).
QUOTA_DEFAULTS: dict[str, str] = {
    "count/secrets": "10",
    "count/configmaps": "10",
    "count/deployments.apps": "10",
    "count/jobs.batch": "10",
    "services": "10",
    "services.nodeports": "0",
    "services.loadbalancers": "0",
    "requests.ephemeral-storage": "10Gi",
    "limits.ephemeral-storage": "20Gi",
    "persistentvolumeclaims": "0",
    "requests.storage": "0",
}


def _check_quota_key(key: str) -> str:
    if key not in QUOTA_KEYS and not _MIG_QUOTA.match(key):
        raise ValueError(f"{key!r} is not a quota labs may set; use one of {', '.join(sorted(QUOTA_KEYS))} or "
                         "requests.nvidia.com/mig-<profile> (e.g. requests.nvidia.com/mig-1g.10gb)")
    return key


QuotaKey = Annotated[str, AfterValidator(_check_quota_key),
                     WithJsonSchema({"anyOf": [{"enum": sorted(QUOTA_KEYS)}, {"pattern": MIG_QUOTA_PATTERN}]})]

# --- network --------------------------------------------------------------------------------------------------------

# Cloud instance metadata services (AWS, GCP, Azure: 169.254.169.254; AWS over IPv6: fd00:ec2::254) hand out the
# node's credentials: an egress rule never opens them, whatever CIDR it names.
METADATA_ADDRESSES = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"))
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


def _check_cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block with its host bits zero (e.g. '10.0.0.0/8'): {exc}") from None
    if network.is_link_local or any(network.version == m.version and network.subnet_of(m)  # type: ignore[arg-type]
                                    for m in METADATA_ADDRESSES):
        raise ValueError(f"{value!r} is where cloud metadata services answer (they hand out node credentials): a "
                         "sandbox may not reach it")
    return value


def metadata_exceptions(cidr: str) -> list[str]:
    """The cloud metadata addresses inside ``cidr``, to cut out of an egress rule (``"0.0.0.0/0"`` ->
    ``["169.254.169.254/32"]``)."""
    network = ipaddress.ip_network(cidr)
    return [str(m) for m in METADATA_ADDRESSES
            if m.version == network.version and m.subnet_of(network)]  # type: ignore[arg-type]


Cidr = Annotated[str, AfterValidator(_check_cidr),
                 WithJsonSchema({"type": "string", "examples": ["10.20.0.0/16", "0.0.0.0/0", "2001:db8::/32"]})]

# --- the models ---------------------------------------------------------------------------------------------------


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Threshold(_Closed):
    """At ``percent`` of the budget, do ``action``."""

    percent: int = Field(ge=1, le=1000, description="share of the budget, 1-1000 %")
    action: Literal["notify", "suspend", "terminate"] = Field(
        description="notify the learner and the platform; suspend (scale to zero, keep the work); terminate")


def _default_thresholds() -> list[Threshold]:
    return [Threshold(percent=50, action="notify"), Threshold(percent=80, action="notify"),
            Threshold(percent=100, action="suspend")]


class Budget(_Closed):
    """The money a session may spend, and what happens as it is used up."""

    usd: Annotated[Decimal, WithJsonSchema({"type": "number", "exclusiveMinimum": 0}),
                   PlainSerializer(float, return_type=float, when_used="json")] = Field(
        gt=0, description="the session's budget in US dollars")
    reference_usd: Annotated[Decimal | None, WithJsonSchema({"type": ["number", "null"], "minimum": 0}),
                             PlainSerializer(lambda v: None if v is None else float(v), when_used="json")] = Field(
        default=None, ge=0, description="what the instructor's reference solution costs; the budget grader compares")
    thresholds: list[Threshold] = Field(default_factory=_default_thresholds, min_length=1,
                                        description="in increasing percent order; at least one suspends or terminates")
    max_approval_usd: Annotated[Decimal | None, WithJsonSchema({"type": ["number", "null"], "exclusiveMinimum": 0}),
                                PlainSerializer(lambda v: None if v is None else float(v), when_used="json")] = Field(
        default=None, gt=0, description="the most one approved budget request may add; default: the budget (usd)")

    @field_validator("thresholds")
    @classmethod
    def _ordered_and_stopping(cls, value: list[Threshold]) -> list[Threshold]:
        for index, (before, after) in enumerate(itertools.pairwise(value), start=1):
            if after.percent == before.percent:
                raise ValueError(f"threshold {index} repeats percent {after.percent}; each percent may appear once")
            if after.percent < before.percent:
                raise ValueError(f"threshold {index} ({after.percent} %) comes after {before.percent} %: list "
                                 "thresholds in increasing percent order")
        if not any(t.action in ("suspend", "terminate") for t in value):
            raise ValueError("no threshold suspends or terminates the session, so nothing would stop the spending")
        return value

    @property
    def approval_cap_usd(self) -> Decimal:
        """The most one approval may add to a session's budget."""
        return self.max_approval_usd if self.max_approval_usd is not None else self.usd


class TimePolicy(_Closed):
    """How long a session lives, how far it may be extended, and when it is suspended."""

    limit: Duration = Field(description="time from ready to expiry, e.g. '1h'")
    max_extension: DurationOrZero = Field(description="how far the learner may extend past the limit; 0 for never")
    idle_timeout: Duration | None = Field(default=None, description="suspend after this long without learner activity")
    warn_before: Duration = Field(default="10m", description="warn the learner this long before expiry")
    off_hours: WindowText | None = Field(
        default=None,
        description="the working window, e.g. 'Mon-Fri 08:00-18:00 Europe/Berlin'; the session is suspended outside it")

    @model_validator(mode="after")
    def _warn_within_limit(self) -> TimePolicy:
        if self.warn_before_delta >= self.limit_delta:
            raise ValueError(f"warn_before ({self.warn_before}) must be shorter than the limit ({self.limit})")
        return self

    @property
    def limit_delta(self) -> timedelta:
        return durations.parse_duration(self.limit)

    @property
    def max_extension_delta(self) -> timedelta:
        return durations.parse_duration(self.max_extension, allow_zero=True)

    @property
    def idle_timeout_delta(self) -> timedelta | None:
        return durations.parse_duration(self.idle_timeout) if self.idle_timeout else None

    @property
    def warn_before_delta(self) -> timedelta:
        return durations.parse_duration(self.warn_before)

    @property
    def window(self) -> windows.Window | None:
        """The parsed working window (``off_hours``), when there is one."""
        return windows.parse_window(self.off_hours) if self.off_hours else None


class CpuMemory(_Closed):
    cpu: Quantity
    memory: Quantity


class LimitRangeDefaults(_Closed):
    """The LimitRange of the namespace: what a container gets when it declares no requests or limits, the least it
    may request (so an explicit zero request is refused) and the most it may ask for."""

    default_request: CpuMemory = Field(default_factory=lambda: CpuMemory(cpu="100m", memory="128Mi"))
    default_limit: CpuMemory = Field(default_factory=lambda: CpuMemory(cpu="500m", memory="512Mi"))
    min: CpuMemory = Field(default_factory=lambda: CpuMemory(cpu="10m", memory="16Mi"),
                           description="the least a container may request; zero requests are refused")
    max: CpuMemory | None = Field(
        default=None, description="the most a container may ask for (limits); default: the lab's cpu and memory quota")

    @model_validator(mode="after")
    def _ordered(self) -> LimitRangeDefaults:
        steps = [("min", self.min), ("default_request", self.default_request), ("default_limit", self.default_limit)]
        if self.max is not None:
            steps.append(("max", self.max))
        for resource in ("cpu", "memory"):
            for (low_name, low), (high_name, high) in itertools.pairwise(steps):
                below, above = getattr(low, resource), getattr(high, resource)
                if parse_quantity(below) > parse_quantity(above):
                    raise ValueError(f"{low_name}.{resource} ({below}) is above {high_name}.{resource} ({above}); "
                                     "keep min <= default_request <= default_limit <= max")
        return self


class EgressPort(_Closed):
    port: int = Field(ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class EgressRule(_Closed):
    """Traffic the sandbox's pods may send beyond their namespace and the cluster DNS."""

    cidr: Cidr = Field(description="destination block, e.g. '10.20.0.0/16'; cloud metadata addresses stay closed")
    ports: list[EgressPort] = Field(default_factory=list, description="destination ports; empty for every port")


def _cluster_ip_only() -> list[ServiceType]:
    return ["ClusterIP"]


class Network(_Closed):
    """What the sandbox may reach and expose. Pods may always talk to each other and to the cluster DNS."""

    egress: list[EgressRule] = Field(default_factory=list,
                                     description="destinations allowed beyond the namespace and DNS (default none)")
    service_types: list[ServiceType] = Field(
        default_factory=_cluster_ip_only, min_length=1,
        description="Service types the learner may create; NodePort and LoadBalancer reach outside the cluster")


# --- demand: what the simulated world asks each workload to serve ---------------------------------------------------
#
# kwok runs no containers, so on the local cluster what a workload uses and serves is simulated from its lab's demand
# declaration (labctl.simulator). Every figure here is the lab author's: the learner changes only the pods (how many,
# how big, where), never the demand or the cost of a request.

SECONDS_PER_DAY = 86_400
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY
_CLOCK = re.compile(r"^(?:(?P<day>[A-Za-z]{3}) )?(?P<h>\d{2}):(?P<m>\d{2})$")
_DAY_OF = {name.lower(): index for index, name in enumerate(windows.DAY_NAMES)}
DAILY_CLOCK_PATTERN = r"^\d{2}:\d{2}$"
WEEKLY_CLOCK_PATTERN = r"^[A-Za-z]{3} \d{2}:\d{2}$"
WORKLOAD_REF_PATTERN = r"^[A-Z][A-Za-z]*/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_WORKLOAD_REF = re.compile(WORKLOAD_REF_PATTERN)
MAX_TIME_SCALE = 100_000
WORKLOAD_KEY_MAX = 300  # the service ledger's workload column


def parse_clock(text: str, *, weekly: bool) -> int:
    """Seconds since midnight (``"09:30"``) or since Monday midnight (``"Tue 09:30"``, ``weekly``); ValueError else.

    >>> parse_clock("09:30", weekly=False), parse_clock("tue 00:00", weekly=True)
    (34200, 86400)
    """
    match = _CLOCK.match(text)
    example = "'Mon 09:00'" if weekly else "'09:00'"
    if match is None or (match["day"] is None) == weekly:
        raise ValueError(f"{text!r} is not a time {'of the week' if weekly else 'of day'}: write {example}")
    hours, minutes = int(match["h"]), int(match["m"])
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r}: hours run 00-23 and minutes 00-59")
    day = 0
    if weekly:
        if match["day"].lower() not in _DAY_OF:
            raise ValueError(f"{text!r}: unknown day {match['day']!r}; days are {', '.join(windows.DAY_NAMES)}")
        day = _DAY_OF[match["day"].lower()]
    return day * SECONDS_PER_DAY + hours * 3600 + minutes * 60


def _clock_text(value: Any) -> Any:
    """YAML 1.1 reads an unquoted ``10:00`` as the base-60 number 600: say so instead of "not a string"."""
    if isinstance(value, int) and not isinstance(value, bool):
        hours, minutes = divmod(value, 60)
        raise ValueError(f"YAML read the time {hours}:{minutes:02d} as the number {value}: quote times, "
                         f"'{hours:02d}:{minutes:02d}'")
    return value


def _check_daily_clock(value: str) -> str:
    parse_clock(value, weekly=False)
    return value


def _check_weekly_clock(value: str) -> str:
    parse_clock(value, weekly=True)
    return value


def _check_workload_ref(value: str) -> str:
    if not _WORKLOAD_REF.match(value) or len(value.partition("/")[2]) > 253:
        raise ValueError(f"{value!r} must name a workload as Kind/name, e.g. 'Deployment/llm-inference'")
    return value


DailyClock = Annotated[str, BeforeValidator(_clock_text), AfterValidator(_check_daily_clock),
                       WithJsonSchema({"type": "string", "pattern": DAILY_CLOCK_PATTERN, "examples": ["09:00"]})]
WeeklyClock = Annotated[str, BeforeValidator(_clock_text), AfterValidator(_check_weekly_clock),
                        WithJsonSchema({"type": "string", "pattern": WEEKLY_CLOCK_PATTERN,
                                        "examples": ["Mon 09:00"]})]
WorkloadRef = Annotated[str, AfterValidator(_check_workload_ref),
                        WithJsonSchema({"type": "string", "pattern": WORKLOAD_REF_PATTERN,
                                        "examples": ["Deployment/llm-inference"]})]
NonNegativeNumber = Annotated[Decimal, Field(ge=0, allow_inf_nan=False),
                   WithJsonSchema({"type": "number", "minimum": 0}),
                   PlainSerializer(float, return_type=float, when_used="json")]


@dataclass(frozen=True)
class Curve:
    """Requests per second over a repeating period: points (seconds into the period, rps), linearly interpolated
    between neighbours and from the last point round to the first (across midnight, or Sunday night to Monday)."""

    period_seconds: int
    points: tuple[tuple[int, Decimal], ...]


def _weekdays(points: dict[str, Decimal], days: str = "Mon Tue Wed Thu Fri") -> dict[str, Decimal]:
    return {f"{day} {clock}": share for day in days.split() for clock, share in points.items()}


# Named shapes: shares of ``peak_rps`` (a period of a day, or of a week when the keys name days).
SHAPES: dict[str, dict[str, Decimal]] = {
    # An interactive service used round the clock: quiet before dawn, busiest mid-afternoon.
    "diurnal": {"00:00": Decimal("0.35"), "04:00": Decimal("0.15"), "08:00": Decimal("0.5"),
                "12:00": Decimal("0.9"), "15:00": Decimal(1), "19:00": Decimal("0.8"), "22:00": Decimal("0.5")},
    # An internal tool: office hours on weekdays, a trickle at night and over the weekend.
    "business-hours": {
        **_weekdays({"00:00": Decimal("0.05"), "07:00": Decimal("0.05"), "09:00": Decimal(1), "17:00": Decimal(1),
                     "19:00": Decimal("0.05")}),
        "Sat 12:00": Decimal("0.1"), "Sun 12:00": Decimal("0.1")},
}


def _curve(points: dict[str, Decimal], *, weekly: bool, scale: Decimal = Decimal(1)) -> Curve:
    offsets = sorted((parse_clock(clock, weekly=weekly), rps * scale) for clock, rps in points.items())
    return Curve(SECONDS_PER_WEEK if weekly else SECONDS_PER_DAY, tuple(offsets))


class PerRequest(_Closed):
    """What serving one request costs the pod that serves it."""

    cpu_core_seconds: NonNegativeNumber = Field(default=Decimal(0), json_schema_extra={"default": 0},
                                                description="CPU time of one request, in core-seconds")
    gpu_seconds: NonNegativeNumber = Field(
        default=Decimal(0), json_schema_extra={"default": 0},
        description="GPU compute of one request: share of a whole GPU x seconds (a 1g MIG slice, 1/7 of a GPU, "
                    "gives 1/7 GPU-second per second)")
    memory_per_rps: Quantity = Field(
        default="0", description="working set per request per second served, in bytes (e.g. '4Mi'): memory grows "
                                 "with the load a pod takes")


class PerReplica(_Closed):
    """What every running pod holds whatever its load."""

    memory: Quantity = Field(default="0", description="base working set, in bytes (e.g. '1Gi')")
    gpu_memory_mib: int = Field(default=0, ge=0, description="GPU memory held, in MiB (e.g. the model's weights)")


class WorkloadDemand(_Closed):
    """The demand on one workload and the cost of serving it.

    The workload is ``workload: Kind/name`` or a label ``selector``; the demand is exactly one of ``rps`` (constant),
    ``daily`` (``"HH:MM": rps`` points), ``weekly`` (``"Mon HH:MM": rps`` points) or a named ``shape`` scaled to
    ``peak_rps``.
    """

    workload: WorkloadRef | None = Field(default=None, description="the workload, e.g. 'Deployment/llm-inference'")
    selector: dict[LabelKey, LabelValue] | None = Field(
        default=None, description="or: the pods carrying all these labels")
    rps: NonNegativeNumber | None = Field(default=None, description="constant demand, requests per second")
    daily: dict[DailyClock, NonNegativeNumber] | None = Field(
        default=None, description="requests per second by time of day, linearly interpolated (across midnight too)")
    weekly: dict[WeeklyClock, NonNegativeNumber] | None = Field(
        default=None, description="requests per second by day and time of the week, linearly interpolated")
    shape: Literal["diurnal", "business-hours"] | None = Field(
        default=None, description="a named daily (diurnal) or weekly (business-hours) shape, scaled to peak_rps")
    peak_rps: NonNegativeNumber | None = Field(default=None,
                                               description="the peak of the named shape, requests per second")
    per_request: PerRequest = Field(default_factory=PerRequest)
    per_replica: PerReplica = Field(default_factory=PerReplica)
    max_utilisation: Annotated[Decimal, WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
                               PlainSerializer(float, return_type=float, when_used="json")] = Field(
        default=Decimal(1), gt=0, le=1, allow_inf_nan=False, json_schema_extra={"default": 1},
        description="latency SLO: a pod serves at most this share of what its CPU and GPU could; the rest is dropped")

    @field_validator("daily", "weekly")
    @classmethod
    def _points(cls, value: dict[str, Decimal] | None, info: ValidationInfo) -> dict[str, Decimal] | None:
        if value is None:
            return None
        if not value:
            raise ValueError(f"{info.field_name} needs at least one point")
        seen: dict[int, str] = {}
        for clock in value:
            offset = parse_clock(clock, weekly=info.field_name == "weekly")
            if offset in seen:
                raise ValueError(f"{clock!r} and {seen[offset]!r} are the same time; give each time once")
            seen[offset] = clock
        return value

    @field_validator("selector")
    @classmethod
    def _some_labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and not value:
            raise ValueError("an empty selector would match every pod: name at least one label")
        return value

    @model_validator(mode="after")
    def _one_target_one_demand(self) -> WorkloadDemand:
        if (self.workload is None) == (self.selector is None):
            raise ValueError("name the workload (workload: Deployment/name) or a label selector, exactly one")
        given = [name for name in ("rps", "daily", "weekly", "shape") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give the demand as exactly one of rps, daily, weekly or shape"
                             + (f" (found {', '.join(given)})" if given else ""))
        if (self.shape is None) != (self.peak_rps is None):
            raise ValueError("peak_rps goes with shape, and a shape needs its peak_rps")
        if len(self.key) > WORKLOAD_KEY_MAX:
            raise ValueError(f"the selector is too long to name the workload ({len(self.key)} characters, at most "
                             f"{WORKLOAD_KEY_MAX}): select on fewer or shorter labels")
        return self

    @property
    def key(self) -> str:
        """How results and the ledger name the workload: ``Deployment/x`` or ``selector app=x,tier=web``."""
        if self.workload is not None:
            return self.workload
        return "selector " + ",".join(f"{k}={v}" for k, v in sorted((self.selector or {}).items()))

    @property
    def curve(self) -> Curve:
        """The demand as a :class:`Curve` (a constant is one point of a day)."""
        if self.daily is not None:
            return _curve(self.daily, weekly=False)
        if self.weekly is not None:
            return _curve(self.weekly, weekly=True)
        if self.shape is not None and self.peak_rps is not None:
            points = SHAPES[self.shape]
            return _curve(points, weekly=" " in next(iter(points)), scale=self.peak_rps)
        return Curve(SECONDS_PER_DAY, ((0, self.rps or Decimal(0)),))

    @property
    def memory_per_rps_bytes(self) -> Decimal:
        return parse_quantity(self.per_request.memory_per_rps)

    @property
    def base_memory_bytes(self) -> Decimal:
        return parse_quantity(self.per_replica.memory)


class Demand(_Closed):
    """The simulated world of a lab: a clock running ``time_scale`` times faster than the real one, and the demand
    on each workload."""

    time_scale: Annotated[Decimal, WithJsonSchema({"type": "number", "exclusiveMinimum": 0,
                                                   "maximum": MAX_TIME_SCALE}),
                          PlainSerializer(float, return_type=float, when_used="json")] = Field(
        default=Decimal(1), gt=0, le=MAX_TIME_SCALE, allow_inf_nan=False, json_schema_extra={"default": 1},
        description="simulated seconds per real second: 288 plays a simulated day in 5 minutes")
    start: WeeklyClock = Field(default="Mon 00:00", description="the simulated clock when the session is ready")
    grading_window: Duration = Field(
        default="1d", description="simulated time a submission replays against the submitted pods")
    workloads: list[WorkloadDemand] = Field(min_length=1)

    @field_validator("workloads")
    @classmethod
    def _unique_targets(cls, value: list[WorkloadDemand]) -> list[WorkloadDemand]:
        seen: set[str] = set()
        for item in value:
            if item.key in seen:
                raise ValueError(f"{item.key} has two demand declarations; give each workload one")
            seen.add(item.key)
        return value

    @property
    def start_seconds(self) -> int:
        """The simulated clock at the session's start, in seconds since Monday 00:00."""
        return parse_clock(self.start, weekly=True)

    @property
    def grading_window_delta(self) -> timedelta:
        return durations.parse_duration(self.grading_window)


def _listed_once(value: list[str], info: ValidationInfo) -> list[str]:
    """A list field whose items may appear once each."""
    seen: set[str] = set()
    for item in value:
        if item in seen:
            raise ValueError(f"{item!r} is listed twice in {info.field_name}")
        seen.add(item)
    return value


_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_AWS_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


class AwsSandbox(_Closed):
    """Where an ``aws`` lab's sandbox lives and what the session role may launch there."""

    regions: list[Annotated[str, Field(pattern=_AWS_REGION.pattern)]] = Field(
        min_length=1, description="regions the learner may use (aws:RequestedRegion); the first is the home region")
    instance_types: list[Annotated[str, Field(pattern=_AWS_INSTANCE_TYPE.pattern, max_length=64)]] = Field(
        min_length=1, description="instance types the learner may launch (ec2:InstanceType)")
    account_id: str | None = Field(default=None, pattern=r"^\d{12}$",
                                   description="the sandbox account; default: the one labctl's credentials are in")

    @field_validator("regions", "instance_types")
    @classmethod
    def _unique(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _listed_once(value, info)


_GCP_ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")
_CLOUD_REGION = re.compile(r"^([a-z]{2}(-[a-z]+)+-\d|[a-z]+-[a-z]+\d+)$")  # an AWS region (us-east-1) or a GCP one
_GCP_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")
_GCP_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
GCP_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
GCP_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
GCP_MAX_LABELS = 64


def gcp_label_problems(labels: Mapping[str, str]) -> list[str]:
    """What breaks GCP's label rules in ``labels`` (empty: the map is valid). GCP also allows international lowercase
    letters; labctl keeps to ASCII."""
    found = [f"{len(labels)} labels; GCP allows at most {GCP_MAX_LABELS}"] if len(labels) > GCP_MAX_LABELS else []
    for key, value in labels.items():
        if not GCP_LABEL_KEY.match(key):
            found.append(f"key {key!r} must match [a-z][a-z0-9_-]{{0,62}} (lowercase, starting with a letter)")
        if not GCP_LABEL_VALUE.match(value):
            found.append(f"value {value!r} of {key!r} must match [a-z0-9_-]{{0,63}} (lowercase)")
    return found


class GcpSandbox(_Closed):
    """Where a ``gcp`` lab's sandbox lives (a labelled slice of a project) and what the learner may launch there."""

    project: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
                                description="the project; default: labctl's (LABCTL_GCP_PROJECT)")
    zones: list[Annotated[str, Field(pattern=_GCP_ZONE.pattern)]] = Field(
        min_length=1, description="zones the learner may use; the first is the home zone")
    machine_types: list[Annotated[str, Field(pattern=_GCP_MACHINE_TYPE.pattern, max_length=64)]] = Field(
        min_length=1, description="machine types the learner may launch")

    @field_validator("zones", "machine_types")
    @classmethod
    def _unique(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _listed_once(value, info)


@dataclass(frozen=True)
class Placement:
    """Where a cloud lab's VMs may run and what they may be: its provider section's regions and instance types."""

    regions: tuple[str, ...]
    instance_types: tuple[str, ...]


class Guardrails(_Closed):
    """The detective control of a cloud lab: every sweep checks the sandbox's instances against the allowed
    instance types and regions (the provider section's) and these required tags, and acts on each new violation."""

    required_tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, description="tag keys every instance must carry, each with a non-empty value")
    on_violation: Literal["warn", "stop", "terminate"] = Field(
        default="warn", description="what a violation brings: warn (an event and a webhook only), stop the instance, "
                                    "or terminate it; each violation is acted on once")
    watch_regions: list[Annotated[str, Field(pattern=_CLOUD_REGION.pattern)]] = Field(
        default_factory=list, description="regions outside the allowed ones where the sweep also looks for the "
                                          "sandbox's resources (a launch the preventive policy missed)")

    @field_validator("required_tags", "watch_regions")
    @classmethod
    def _unique(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _listed_once(value, info)


_STARTER_NAME = Field(pattern=_GCP_NAME.pattern, max_length=54,
                      description="its name (AWS: the Name tag; GCP: the resource's name, to which labctl appends "
                                  "-<8 hex of the session>)")
_STARTER_ZONE = Field(default=None, pattern=r"^[a-z]+(-[a-z]+)+-?\d+-?[a-z]$",
                      description="the zone it is made in (an AWS availability zone of the home region, or one of a "
                                  "gcp lab's zones); default: the home region's first zone")
_STARTER_TAGS: Any = Field(default_factory=dict, max_length=GCP_MAX_LABELS - 2,
                           description="tags (AWS) or labels (GCP) besides the session's (none: an unowned resource "
                                       "to fix); a gcp lab's follow GCP's label rules")
StarterTags = dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]]


class StarterInstance(_Closed):
    """A VM the lab's starter launches in the sandbox."""

    name: str = _STARTER_NAME
    instance_type: str = Field(max_length=64, pattern=f"{_AWS_INSTANCE_TYPE.pattern}|{_GCP_MACHINE_TYPE.pattern}",
                               description="an instance type (AWS) or machine type (GCP)")
    spot: bool = Field(default=False, description="spot capacity (GCP: the SPOT provisioning model); default on-demand")
    image: str | None = Field(default=None, max_length=256,
                              description="the machine image; default: the provider's current Linux image")
    boot_disk_gib: int | None = Field(default=None, ge=10, le=65536,
                                      description="its boot disk (deleted with it); default: the image's size")
    zone: str | None = _STARTER_ZONE
    tags: StarterTags = _STARTER_TAGS


class StarterVolume(_Closed):
    """A disk the lab's starter creates in the sandbox, attached to nothing."""

    name: str = _STARTER_NAME
    size_gib: int = Field(ge=1, le=65536)
    disk_type: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]*$", max_length=64,
                                  description="the volume type; default: gp3 (AWS), pd-balanced (GCP)")
    zone: str | None = _STARTER_ZONE
    tags: StarterTags = _STARTER_TAGS


class CloudStarter(_Closed):
    """What a cloud lab's sandbox holds when the learner gets it: made by the provider at provision, tagged or
    labelled with the session (so inventory counts it and destroy removes it). One shape for AWS and GCP."""

    instances: list[StarterInstance] = Field(default_factory=list)
    volumes: list[StarterVolume] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> CloudStarter:
        names = [i.name for i in self.instances] + [v.name for v in self.volumes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"cloud_starter names {', '.join(twice)} more than once; give each resource its own")
        return self

    @property
    def resources(self) -> list[StarterInstance | StarterVolume]:
        return [*self.instances, *self.volumes]


class PoolWindow(_Closed):
    """A stretch of the week during which the pool keeps ``warm`` sandboxes instead of the lab's usual number."""

    window: WindowText = Field(description="days, hours and zone, e.g. 'Mon-Fri 08:30-12:00 Europe/Paris'")
    warm: int = Field(ge=0, le=POOL_MAX, description="unclaimed sandboxes kept ready inside the window")


class Pool(_Closed):
    """Warm sandboxes kept provisioned and unclaimed, so a class's starts are claims instead of provisions.

    Outside every window of ``schedule`` the pool keeps ``warm``; inside one, that window's number (the largest
    where windows overlap). Their idle cost is charged to the course, never to a learner.
    """

    warm: int = Field(default=0, ge=0, le=POOL_MAX, description="unclaimed sandboxes kept ready (outside windows)")
    schedule: list[PoolWindow] = Field(default_factory=list,
                                       description="windows with their own warm count (a class's hours)")

    def warm_at(self, now: datetime) -> int:
        """How many unclaimed sandboxes the pool keeps at ``now``."""
        inside = [w.warm for w in self.schedule if windows.is_inside(windows.parse_window(w.window), now)]
        return max(inside) if inside else self.warm


class Grader(_Closed):
    """One graded check: a script under ``graders/`` run with ``params``, worth ``weight``."""

    id: str = Field(min_length=1, max_length=63, pattern=_DNS_LABEL.pattern, description="unique within the lab")
    script: GraderScript = Field(description="path under graders/ (JSON in on stdin, checks out on stdout)")
    weight: float = Field(gt=0, description="relative weight in the lab's score")
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the script as they are")


class Lab(_Closed):
    """A lab definition: ``labs/<id>/lab.yaml``."""

    id: str = Field(min_length=1, max_length=LAB_ID_MAX, pattern=_DNS_LABEL.pattern,
                    description="the lab's directory name (the loader fills it in; if written, it must match)")
    title: str = Field(min_length=1, max_length=120)
    summary: str = Field(min_length=1, max_length=2000)
    provider: Literal["kubernetes", "aws", "gcp"]
    pod_security: Literal["restricted", "baseline"] = Field(
        default="restricted", description="the Pod Security Standard enforced on the namespace")
    budget: Budget
    time: TimePolicy
    quota: dict[QuotaKey, Quantity] = Field(
        default_factory=dict, validate_default=True,
        description="ResourceQuota hard limits; cpu and memory are request totals (required for kubernetes labs)")
    limit_range: LimitRangeDefaults = Field(default_factory=LimitRangeDefaults)
    network: Network = Field(default_factory=Network)
    priority_classes: list[Annotated[str, Field(pattern=_DNS_SUBDOMAIN.pattern, max_length=253)]] = Field(
        default_factory=list, description="PriorityClasses the learner's pods may name (default none)")
    cost_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="the course's cost labels, put on the namespace")
    required_labels: list[LabelKey] = Field(
        default_factory=list, description="label keys learners must put on their workloads")
    node_pools: list[PoolName] = Field(default_factory=list, description="pools of labs/fleet.yaml the learner sees")
    starter: list[TemplatePath] = Field(
        default_factory=list, description="templates (relative to manifests/) applied when the session starts")
    solution: list[TemplatePath] = Field(
        default_factory=list,
        description="a reference solution (templates relative to manifests/) for tests and grader self-checks; "
                    "never applied to a learner's sandbox")
    graders: list[Grader] = Field(min_length=1)
    attempts: int = Field(default=1, ge=1, le=100, description="how many times the learner may submit")
    demand: Demand | None = Field(
        default=None, description="the simulated demand on the lab's workloads (local cluster): see docs/LABS.md")
    aws: AwsSandbox | None = Field(default=None, description="regions and instance types (required for aws labs)")
    gcp: GcpSandbox | None = Field(default=None, description="zones and machine types (required for gcp labs)")
    guardrails: Guardrails | None = Field(
        default=None, description="cloud labs: the detective control run by every sweep (docs/LABS.md)")
    cloud_starter: CloudStarter | None = Field(
        default=None, description="cloud labs: instances and volumes made in the sandbox at start (docs/LABS.md)")
    pool: Pool | None = Field(
        default=None, description="kubernetes labs: warm sandboxes kept ready for starts to claim (docs/LABS.md)")

    @field_validator("required_labels", "node_pools", "starter", "solution")
    @classmethod
    def _unique(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _listed_once(value, info)

    @field_validator("graders")
    @classmethod
    def _unique_grader_ids(cls, value: list[Grader]) -> list[Grader]:
        seen: set[str] = set()
        for grader in value:
            if grader.id in seen:
                raise ValueError(f"grader id {grader.id!r} is used twice; ids must be unique")
            seen.add(grader.id)
        return value

    @field_validator("quota")
    @classmethod
    def _whole_counts_bounded_and_defaulted(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key, quantity in value.items():
            if (key in COUNT_QUOTA_KEYS or _MIG_QUOTA.match(key)) and not quantity.isdigit():
                raise ValueError(f"quota {key} counts objects or devices: write a whole number, not {quantity!r}")
        if info.data.get("provider") != "kubernetes":
            return value
        missing = [key for key in ("cpu", "memory", "pods") if key not in value]
        if missing:
            raise ValueError(f"a kubernetes lab needs quota for {', '.join(missing)} (the sandbox must be bounded)")
        return {**QUOTA_DEFAULTS, **value}

    @model_validator(mode="after")
    def _aws_needs_its_fence(self) -> Lab:
        if self.provider == "aws" and self.aws is None:
            raise ValueError("an aws lab needs an `aws` section with its regions and instance_types")
        if self.provider != "aws" and self.aws is not None:
            raise ValueError(f"the `aws` section applies only to aws labs, not to a {self.provider} lab")
        if self.provider == "aws" and self.demand is not None:
            raise ValueError("`demand` simulates a Kubernetes lab's workloads; an aws lab has none")
        if self.provider == "kubernetes" and self.guardrails is not None:
            raise ValueError("`guardrails` checks cloud instances; a kubernetes lab is fenced by its quota and "
                             "admission policy instead")
        if self.provider != "kubernetes" and self.pool is not None:
            raise ValueError(f"`pool` keeps warm Kubernetes namespaces; a {self.provider} lab's sandbox is made for "
                             "its learner at start (remove `pool`)")
        if self.provider == "kubernetes" and self.cloud_starter is not None:
            raise ValueError("`cloud_starter` makes cloud instances and volumes; a kubernetes lab's starter is its "
                             "`starter` templates")
        if self.cloud_starter is not None and self.placement is not None:
            odd = [i.instance_type for i in self.cloud_starter.instances
                   if i.instance_type not in self.placement.instance_types]
            acts = self.guardrails.on_violation if self.guardrails is not None else "warn"
            if odd and acts != "warn":
                raise ValueError(f"cloud_starter launches {', '.join(odd)}, which the lab does not allow (allowed: "
                                 f"{', '.join(self.placement.instance_types)}): its guardrails would {acts} it at the "
                                 "first sweep, before the learner has seen it")
            self._starter_fits_the_cloud(self.cloud_starter)
        if self.guardrails is not None and self.placement is not None:
            both = sorted(set(self.guardrails.watch_regions) & set(self.placement.regions))
            if both:
                raise ValueError(f"guardrails.watch_regions lists allowed region(s) {', '.join(both)}: watch only "
                                 "regions the lab does not allow (the allowed ones are always looked at)")
        return self

    def _starter_fits_the_cloud(self, starter: CloudStarter) -> None:
        """Zones of the lab's own placement; on GCP, labels by GCP's rules (lowercase keys and values)."""
        for item in starter.resources:
            what = f"cloud_starter {item.name}"
            if item.zone is not None and self.gcp is not None and item.zone not in self.gcp.zones:
                raise ValueError(f"{what} is in zone {item.zone}, not one of the lab's zones "
                                 f"({', '.join(self.gcp.zones)})")
            if item.zone is not None and self.aws is not None and \
                    not re.fullmatch(re.escape(self.aws.regions[0]) + "[a-z]", item.zone):
                raise ValueError(f"{what} is in {item.zone}, not an availability zone of the home region "
                                 f"{self.aws.regions[0]} (e.g. {self.aws.regions[0]}a)")
            if self.gcp is not None and (bad := gcp_label_problems(item.tags)):
                raise ValueError(f"{what} has labels GCP refuses: {'; '.join(bad)}")

    @model_validator(mode="after")
    def _gcp_needs_its_fence(self) -> Lab:
        if self.provider == "gcp" and self.gcp is None:
            raise ValueError("a gcp lab needs a `gcp` section with its zones and machine_types")
        if self.provider != "gcp" and self.gcp is not None:
            raise ValueError(f"the `gcp` section applies only to gcp labs, not to a {self.provider} lab")
        if self.provider == "gcp" and self.demand is not None:
            raise ValueError("`demand` simulates a Kubernetes lab's workloads; a gcp lab has none")
        return self

    @model_validator(mode="after")
    def _container_max_within_quota(self) -> Lab:
        """A container may ask for at most the whole sandbox: ``limit_range.max`` defaults to the lab's cpu and
        memory quota and may not exceed it."""
        if self.provider != "kubernetes":
            return self
        quota = CpuMemory(cpu=self.quota["cpu"], memory=self.quota["memory"])
        limits = self.limit_range
        for name, bound in (("max", limits.max), ("default_limit", limits.default_limit)):
            for resource in ("cpu", "memory"):
                asked = getattr(bound, resource) if bound is not None else None
                if asked is not None and parse_quantity(asked) > parse_quantity(getattr(quota, resource)):
                    raise ValueError(f"limit_range.{name}.{resource} ({asked}) is above the lab's {resource} quota "
                                     f"({getattr(quota, resource)}): no container can be bigger than the sandbox")
        if limits.max is None:
            self.limit_range = limits.model_copy(update={"max": quota})
        return self

    @property
    def placement(self) -> Placement | None:
        """The regions and instance types the lab's cloud section allows; None for a Kubernetes lab."""
        if self.aws is not None:
            return Placement(regions=tuple(self.aws.regions), instance_types=tuple(self.aws.instance_types))
        if self.gcp is not None:  # a zone is its region and a letter: us-central1-a is in us-central1
            regions = tuple(dict.fromkeys(zone.rsplit("-", 1)[0] for zone in self.gcp.zones))
            return Placement(regions=regions, instance_types=tuple(self.gcp.machine_types))
        return None

    @property
    def max_score(self) -> float:
        return sum(g.weight for g in self.graders)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of ``lab.yaml`` files (see :func:`lab_json_schema`)."""
        return lab_json_schema()


def lab_json_schema() -> dict[str, Any]:
    """The JSON Schema of a ``lab.yaml`` file, for editors (``labs/lab.schema.json``).

    ``id`` is optional in the file: the loader takes it from the lab's directory.
    """
    schema = Lab.model_json_schema(mode="validation")
    schema["required"] = [name for name in schema.get("required", []) if name != "id"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://labctl.dev/schemas/lab.schema.json", **schema}
