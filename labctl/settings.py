"""Typed settings from the environment (``LABCTL_*``), validated once at start.

Development is the default: the data directory is ``~/.local/share/labctl``, the store is a SQLite file in it, and
the Kubernetes cluster is the local control plane when its kubeconfig exists. Without a kubeconfig, labctl running in a
pod talks to its own cluster as the pod's ServiceAccount (in-cluster). In ``production`` labctl refuses to start
without an explicit admin token and an explicit cluster (a kubeconfig, or the pod's ServiceAccount together with the
address learners reach the apiserver at), so no default secret or surprising cluster is ever used, and an exam webhook
secret must be a real ``whsec_`` secret (base64 of at least 24 random bytes).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER_NAME = "labctl"
MIN_SECRET_BYTES = 24
# A CSP frame-ancestors source labctl accepts: 'self', 'none', or a scheme and host (a leading *. allowed), port.
FRAME_SOURCE = re.compile(r"^('self'|'none'|https?://(\*\.)?[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:\d{1,5})?)$")
ProviderName = Literal["kubernetes", "aws", "gcp"]
DEFAULT_CLUSTER = "default"  # the one cluster's name when LABCTL_CLUSTERS is not set (and existing sessions')
CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
LEARNER_SERVER = re.compile(r"^https://[^/?#\s@,]+$")  # an API address for learners: scheme and host[:port] only
LEARNER_SERVER_MARK = "@https://"  # ends a LABCTL_CLUSTERS entry with the learners' address of that cluster
# What Kubernetes gives every pod: the apiserver's Service address in the environment, a ServiceAccount token on disk.
POD_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def in_a_pod() -> bool:
    """Whether this process runs in a Kubernetes pod with a ServiceAccount token mounted (in-cluster configuration)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and POD_TOKEN.is_file()


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "labctl"


class ClusterSetting(BaseModel):
    """One Kubernetes cluster labctl places sandboxes on: its name (recorded on each session) and kubeconfig."""

    model_config = ConfigDict(frozen=True)

    name: str
    kubeconfig: Path | None  # None: the pod's ServiceAccount (in-cluster; the default cluster only)
    learner_server: str | None = None  # the address learners' kubeconfigs name; None: the kubeconfig's


def parse_clusters(text: str) -> list[ClusterSetting]:
    """``LABCTL_CLUSTERS``: comma-separated ``name=kubeconfig`` entries, each optionally ending ``@https://host[:port]``
    (the address learners' kubeconfigs name for that cluster, when labctl reaches it at another, such as a private
    endpoint); an error names the entry at fault."""
    found: list[ClusterSetting] = []
    for index, raw in enumerate((part.strip() for part in text.split(",")), start=1):
        if not raw:
            continue
        name, sep, rest = (piece.strip() for piece in raw.partition("="))
        where = f"LABCTL_CLUSTERS entry {index} ({raw!r})"
        path, at, server = (piece.strip() for piece in rest.rpartition(LEARNER_SERVER_MARK))
        if not at:
            path, server = rest, ""
        if not sep or not path:
            raise ValueError(f"{where} must be name=kubeconfig, e.g. gpu=/etc/labctl/gpu.yaml "
                             "(or gpu=/etc/labctl/gpu.yaml@https://gpu.k8s.example.com:6443)")
        learner_server = f"https://{server}" if at else None
        if learner_server is not None and not LEARNER_SERVER.match(learner_server):
            raise ValueError(f"{where}: the learners' address {learner_server!r} must be https://host[:port], with no "
                             "path, query or spaces")
        if not CLUSTER_NAME.match(name):
            raise ValueError(f"{where}: the name {name!r} must be 1-32 lowercase letters, digits and '-', starting "
                             "and ending with a letter or digit")
        if any(c.name == name for c in found):
            raise ValueError(f"{where}: the name {name!r} is used twice; each cluster needs its own name")
        kubeconfig = Path(path).expanduser()
        if not kubeconfig.is_file():
            raise ValueError(f"{where}: the kubeconfig {kubeconfig} is not a readable file")
        found.append(ClusterSetting(name=name, kubeconfig=kubeconfig, learner_server=learner_server))
    if not found:
        raise ValueError("LABCTL_CLUSTERS is set but names no cluster; give name=kubeconfig entries, or unset it")
    return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABCTL_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite under data_dir")
    kubeconfig: Path | None = Field(
        default=None, description="default: the local control plane's, if it exists; else, in a pod, the pod's "
                                  "ServiceAccount (in-cluster)")
    kube_learner_server: str | None = Field(
        default=None, pattern=LEARNER_SERVER.pattern,
        description="the Kubernetes API address written into learners' kubeconfigs (the cluster's public endpoint); "
                    "default: the one labctl talks to, which in a pod is the cluster-internal Service address")
    clusters: Annotated[list[ClusterSetting], NoDecode] = Field(
        default_factory=list,
        description="several Kubernetes clusters: comma-separated name=kubeconfig entries (e.g. "
                    "'eu=/etc/labctl/eu.yaml,gpu=/etc/labctl/gpu.yaml'), each optionally with @https://host[:port], "
                    "the address learners' kubeconfigs name for it; starts are placed on one with room, the "
                    "cheapest; default: one cluster named 'default' (LABCTL_KUBECONFIG, the local control plane or "
                    "in-cluster)")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    admin_token: SecretStr | None = None
    exam_webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_ secret that signs the exam platform's POST /v1/hooks/exam; unset = off")
    learner_token_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600,
                                     description="lifetime of a new learner token (and the most one may ask for)")
    token_ttl_s: int = Field(default=90 * 24 * 3600, ge=60, le=3 * 366 * 24 * 3600,
                             description="lifetime of a new instructor, platform or exam token (and the most)")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                description="the largest request body accepted (413 above it)")
    webhook_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated CIDRs or host names webhook endpoints may target although they are loopback, "
                    "private, link-local or otherwise not public (e.g. '10.20.0.0/16,exam.internal')")
    metrics_public_sessions: bool = Field(
        default=False, description="serve the per-session gauges (session, lab, learner labels) on /metrics without "
                                   "an instructor token")
    lti_platforms_file: Path | None = Field(
        default=None, description="YAML list of the LTI 1.3 platforms (LMSs) whose launches labctl accepts; unset = "
                                  "no LTI")
    lti_key_file: Path | None = Field(
        default=None, description="the tool's RSA key (PEM) that signs AGS score requests; default: made once in "
                                  "data_dir (development only)")
    # The learner page (api/routers/pages.py): signed links, the page cookie, who may embed the page.
    link_key: SecretStr | None = Field(
        default=None, description="key of learner links and page cookies (at least 32 characters); default: derived "
                                  "from the admin token, so changing either ends every link and page cookie")
    link_ttl_s: int = Field(default=600, ge=30, le=24 * 3600,
                            description="how long a learner link in a session answer may be opened")
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="where learners reach labctl (learner links start with it); default: the address each request "
                    "came to")
    page_frame_ancestors: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["'self'"],
        description="comma-separated CSP frame-ancestors sources that may embed the learner page in an iframe (the "
                    "course site's origin, e.g. 'https://course.example.com'); default: labctl's own pages only")
    page_cookie_samesite: Literal["lax", "none"] = Field(
        default="lax", description="SameSite of the page cookie: lax (the course site on the same site as labctl) or "
                                   "none (a cross-site iframe: the cookie is then Secure and Partitioned, so https)")
    labs_dir: Path = REPO_ROOT / "labs"
    providers: Annotated[list[ProviderName], NoDecode] = Field(
        default_factory=lambda: list[ProviderName](["kubernetes"]),
        description="comma-separated lab providers this service runs (e.g. 'kubernetes,aws'); labs of the others "
                    "are left out of its catalog")
    manifests_dir: Path = REPO_ROOT / "manifests"
    fleet_file: Path = REPO_ROOT / "labs" / "fleet.yaml"
    replica_id: str = Field(default_factory=socket.gethostname,
                            description="this replica's name in the leader lease; stable across restarts, so a "
                                        "restarted replica leads again at once (replicas on one host: distinct ids)")
    leader: Literal["store", "kubernetes"] = Field(
        default="store", description="the leader lock the background jobs run behind: the store's lease row "
                                     "(any deployment), or a coordination.k8s.io/v1 Lease (labctl run in a cluster)")
    leader_ttl_s: float = Field(default=15.0, ge=2, le=600,
                                description="how long the leader's lease lasts unrenewed: a replica that died is "
                                            "replaced within this time")
    leader_namespace: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="namespace of the Lease (LABCTL_LEADER=kubernetes); default: the pod's own namespace, else "
                    "'default'")
    prices_file: Path = REPO_ROOT / "labs" / "prices.yaml"
    graders_dir: Path = REPO_ROOT / "graders"
    sweep_interval_s: float = Field(default=30.0, gt=0, le=3600,
                                    description="how often the meter, the timers and the budget policy run")
    meter_failure_limit: int = Field(default=3, ge=1, le=100,
                                     description="meter readings of a session that may fail in a row before it is "
                                                 "suspended (fail closed)")
    simulate_demand: bool = Field(
        default=True, description="play each lab's demand model on the sandbox's pods and write the usage into kwok "
                                  "(the local cluster); turn off on a cluster that runs real workloads")
    kube_connect_timeout_s: float = Field(default=3.0, gt=0, le=60,
                                          description="the longest labctl waits to connect to the Kubernetes API")
    kube_read_timeout_s: float = Field(default=20.0, gt=0, le=300,
                                       description="the longest labctl waits for one Kubernetes API answer")
    backend_cooldown_s: float = Field(default=5.0, ge=0, le=300,
                                      description="after a backend (the cluster, a cloud) did not answer, how long "
                                                  "calls to it fail at once (503 with this Retry-After) before it "
                                                  "is asked again")
    replay_step_s: float = Field(
        default=5.0, gt=0, le=60,
        description="real seconds per step when a submission replays its lab's grading window on the live sandbox "
                    "(each step: inventory, usage written, priced, accrued)")
    replay_max_s: float = Field(
        default=300.0, gt=0, le=3600,
        description="the longest a grading window's replay may last in real seconds: a lab whose window over its "
                    "time_scale is longer is replayed faster (same served share and cost per 1,000 requests)")
    request_threads: int = Field(
        default=128, ge=8, le=2048,
        description="threads that run the API's blocking work (each start waits on the cluster in one): as many "
                    "starts are in flight at once, the others queue; sized for a class starting together")
    db_pool_size: int = Field(
        default=32, ge=1, le=1024,
        description="database connections kept open (as many more may be opened under load): a request holds one "
                    "only while it reads or writes, never while it waits on a backend")
    provision_step_delay_s: float = Field(
        default=0.0, ge=0, le=10,
        description="testing only: a pause between applied objects, to interrupt a start on purpose")
    # AWS sandboxes (labctl.providers.aws): the account labctl's credentials are in hosts every aws lab's sessions.
    aws_region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
                            description="the region labctl's IAM and STS calls go to")
    aws_endpoint_url: str | None = Field(
        default=None, description="one endpoint for every AWS service (a local moto server); default: AWS's own")
    aws_profile: str | None = Field(
        default=None, description="the AWS profile labctl's own credentials come from; default: the default chain "
                                  "(AWS_* environment, ~/.aws, instance role)")
    # GCP sandboxes (labctl.providers.gcp): one project hosts every gcp lab's sessions (a lab may name its own).
    gcp_project: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
        description="the project gcp labs' sandboxes live in, unless the lab names one")
    gcp_endpoint_url: str | None = Field(
        default=None, description="the Compute API endpoint (a local fake in tests: anonymous credentials over http); "
                                  "default: Google's own, with Application Default Credentials")
    # The grader jail (labctl.grading.jail): bubblewrap, a separate uid, no network; refused unjailed in production.
    grader_bwrap: Path = Field(default=Path("/usr/bin/bwrap"), description="the bubblewrap binary graders run in")
    grader_uid: int = Field(default=65534, ge=1, description="uid graders run as when labctl runs as root")
    grader_gid: int = Field(default=65534, ge=1, description="gid graders run as when labctl runs as root")
    grader_unjailed_fallback: bool = Field(
        default=False, description="development only: when bubblewrap is missing or cannot run here, run graders "
                                   "unjailed as labctl's own uid (a warning says so at start)")

    @model_validator(mode="after")
    def _graders_jailed_in_production(self) -> Settings:
        if self.env == "production" and self.grader_unjailed_fallback:
            raise ValueError("LABCTL_GRADER_UNJAILED_FALLBACK is for development only: graders must run in "
                             "bubblewrap when LABCTL_ENV=production (install the Debian package bubblewrap)")
        return self

    @field_validator("webhook_allow", "page_frame_ancestors", "providers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("clusters", mode="before")
    @classmethod
    def _cluster_entries(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_clusters(value)
        return value

    @model_validator(mode="after")
    def _clusters_alone(self) -> Settings:
        if self.clusters and (self.kubeconfig is not None or self.kube_learner_server is not None):
            raise ValueError("LABCTL_CLUSTERS names every cluster with its kubeconfig (and, after @, the address "
                             "learners reach it at, e.g. eu=/etc/labctl/eu.yaml@https://eu.k8s.example.com): unset "
                             "LABCTL_KUBECONFIG and LABCTL_KUBE_LEARNER_SERVER")
        return self

    @field_validator("page_frame_ancestors")
    @classmethod
    def _frame_sources(cls, value: list[str]) -> list[str]:
        for source in value:
            if not FRAME_SOURCE.match(source):
                raise ValueError(f"{source!r} is not a frame-ancestors source: use 'self', 'none' or an origin such "
                                 "as https://course.example.com or https://*.example.com")
        if "'none'" in value and len(value) > 1:
            raise ValueError("'none' cannot be combined with other frame-ancestors sources")
        return value

    @field_validator("link_key")
    @classmethod
    def _long_link_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("LABCTL_LINK_KEY must be at least 32 characters (python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
        return value

    @model_validator(mode="after")
    def _production_needs_explicit_secrets(self) -> Settings:
        if self.env == "production":
            token = self.admin_token.get_secret_value() if self.admin_token else ""
            if len(token) < 32:
                raise ValueError("LABCTL_ADMIN_TOKEN must be set to at least 32 characters when LABCTL_ENV=production")
            if self.kubeconfig is None and not self.clusters and not in_a_pod():
                raise ValueError("LABCTL_KUBECONFIG must name the cluster's kubeconfig when LABCTL_ENV=production "
                                 "(or run labctl in the cluster, as a pod with a ServiceAccount)")
            if self.kubeconfig is None and not self.clusters and self.kube_learner_server is None:
                raise ValueError("LABCTL_KUBE_LEARNER_SERVER must be set when labctl runs in a pod with "
                                 "LABCTL_ENV=production: learners' kubeconfigs would name the cluster-internal "
                                 "address they cannot reach; set the apiserver's public endpoint (e.g. "
                                 "https://ABC123.gr7.us-east-1.eks.amazonaws.com)")
            if self.lti_platforms_file is not None and self.lti_key_file is None:
                raise ValueError("LABCTL_LTI_KEY_FILE must name the tool's RSA key when LTI platforms are set and "
                                 "LABCTL_ENV=production (the platforms keep its public key)")
        if self.exam_webhook_secret is not None:
            problem = exam_secret_problem(self.exam_webhook_secret.get_secret_value(),
                                          strict=self.env != "development")
            if problem:
                raise ValueError(f"LABCTL_EXAM_WEBHOOK_SECRET {problem}")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'labctl.db'}"

    @property
    def effective_lti_key_file(self) -> Path:
        return self.lti_key_file or self.data_dir / "lti-tool-key.pem"

    @property
    def local_cluster_workdir(self) -> Path:
        return self.data_dir / "kwok"

    @property
    def local_cluster_kubeconfig(self) -> Path:
        return self.local_cluster_workdir / "clusters" / LOCAL_CLUSTER_NAME / "kubeconfig.yaml"

    @property
    def effective_kubeconfig(self) -> Path | None:
        if self.kubeconfig is not None:
            return self.kubeconfig
        local = self.local_cluster_kubeconfig
        return local if local.exists() else None

    @property
    def cluster_list(self) -> list[ClusterSetting]:
        """Every cluster sandboxes may be placed on, in the order ties are broken: ``LABCTL_CLUSTERS``, or the one
        cluster named ``default`` (its kubeconfig None: in-cluster)."""
        return self.clusters or [ClusterSetting(name=DEFAULT_CLUSTER, kubeconfig=self.effective_kubeconfig,
                                                learner_server=self.kube_learner_server)]

    def redacted(self) -> dict[str, str]:
        """The effective configuration, secrets hidden, for the start-up log line."""
        return {
            "env": self.env,
            "data_dir": str(self.data_dir),
            "database_url": _hide_password(self.effective_database_url),
            "kubeconfig": str(self.effective_kubeconfig or ("(in-cluster)" if in_a_pod() else "(none)")),
            "learner_api_server": self.kube_learner_server or "(as labctl's)",
            "clusters": ", ".join(f"{c.name}={c.kubeconfig or '(in-cluster)'}"
                                  + (f" (learners: {c.learner_server})" if c.learner_server else "")
                                  for c in self.cluster_list),
            "listen": f"{self.host}:{self.port}",
            "labs_dir": str(self.labs_dir),
            "providers": ",".join(self.providers),
            "admin_token": "(set)" if self.admin_token else "(generated)",
            "exam_webhook_secret": "(set)" if self.exam_webhook_secret else "(off)",
            "max_body_bytes": str(self.max_body_bytes),
            "webhook_allow": ",".join(self.webhook_allow) or "(none)",
            "token_ttl_s": f"learner {self.learner_token_ttl_s}, others {self.token_ttl_s}",
            "learner_page": f"links {self.link_ttl_s}s, key {'(set)' if self.link_key else '(derived)'}, cookie "
                            f"SameSite={self.page_cookie_samesite}, frame-ancestors "
                            f"{' '.join(self.page_frame_ancestors)}, public url {self.public_url or '(request)'}",
            "aws": f"{self.aws_region} via {_hide_password(self.aws_endpoint_url or 'AWS endpoints')}, "
                   f"profile {self.aws_profile or '(default chain)'}",
            "gcp": f"project {self.gcp_project or '(per lab)'} via "
                   f"{_hide_password(self.gcp_endpoint_url or 'Google endpoints')}",
        }


def exam_secret_problem(secret: str, *, strict: bool) -> str | None:
    """What is wrong with a Standard Webhooks secret, or ``None``: ``whsec_`` + base64 of the key bytes, at least
    24 of them when ``strict`` (outside development); a secret that is not base64 can never verify anything."""
    prefixed = secret.startswith("whsec_")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "is not a Standard Webhooks secret: expected 'whsec_' followed by base64"
    if strict and not prefixed:
        return "must start with 'whsec_' (a Standard Webhooks secret)"
    if strict and len(key) < MIN_SECRET_BYTES:
        return (f"is too short: {len(key)} random bytes, at least {MIN_SECRET_BYTES} are needed outside development "
                "(python -c 'import base64,os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())')")
    if not key:
        return "is empty after 'whsec_'"
    return None


def _hide_password(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
