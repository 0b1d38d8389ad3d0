"""Typed settings from the environment (``LABCTL_*``), validated once at start.

Development is the default: the data directory is ``~/.local/share/labctl``, the store is a SQLite file in it, and
the Kubernetes cluster is the local control plane when its kubeconfig exists. In ``production`` labctl refuses to start
without an explicit admin token and an explicit kubeconfig, so no default secret or surprising cluster is ever used,
and an exam webhook secret must be a real ``whsec_`` secret (base64 of at least 24 random bytes).
"""

from __future__ import annotations

import base64
import binascii
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER_NAME = "labctl"
MIN_SECRET_BYTES = 24


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "labctl"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABCTL_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite under data_dir")
    kubeconfig: Path | None = Field(default=None, description="default: the local control plane's, if it exists")
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
    labs_dir: Path = REPO_ROOT / "labs"
    manifests_dir: Path = REPO_ROOT / "manifests"
    fleet_file: Path = REPO_ROOT / "labs" / "fleet.yaml"
    replica_id: str = Field(default_factory=socket.gethostname,
                            description="this replica's name in the leader lease; stable across restarts, so a "
                                        "restarted replica leads again at once (replicas on one host: distinct ids)")
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
    replay_step_s: float = Field(
        default=5.0, gt=0, le=60,
        description="real seconds per step when a submission replays its lab's grading window on the live sandbox "
                    "(each step: inventory, usage written, priced, accrued)")
    replay_max_s: float = Field(
        default=300.0, gt=0, le=3600,
        description="the longest a grading window's replay may last in real seconds: a lab whose window over its "
                    "time_scale is longer is replayed faster (same served share and cost per 1,000 requests)")
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

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _production_needs_explicit_secrets(self) -> Settings:
        if self.env == "production":
            token = self.admin_token.get_secret_value() if self.admin_token else ""
            if len(token) < 32:
                raise ValueError("LABCTL_ADMIN_TOKEN must be set to at least 32 characters when LABCTL_ENV=production")
            if self.kubeconfig is None:
                raise ValueError("LABCTL_KUBECONFIG must name the cluster's kubeconfig when LABCTL_ENV=production")
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

    def redacted(self) -> dict[str, str]:
        """The effective configuration, secrets hidden, for the start-up log line."""
        return {
            "env": self.env,
            "data_dir": str(self.data_dir),
            "database_url": _hide_password(self.effective_database_url),
            "kubeconfig": str(self.effective_kubeconfig or "(none)"),
            "listen": f"{self.host}:{self.port}",
            "labs_dir": str(self.labs_dir),
            "admin_token": "(set)" if self.admin_token else "(generated)",
            "exam_webhook_secret": "(set)" if self.exam_webhook_secret else "(off)",
            "max_body_bytes": str(self.max_body_bytes),
            "webhook_allow": ",".join(self.webhook_allow) or "(none)",
            "token_ttl_s": f"learner {self.learner_token_ttl_s}, others {self.token_ttl_s}",
            "aws": f"{self.aws_region} via {_hide_password(self.aws_endpoint_url or 'AWS endpoints')}, "
                   f"profile {self.aws_profile or '(default chain)'}",
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
