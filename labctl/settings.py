"""Typed settings from the environment (``LABCTL_*``), validated once at start.

Development is the default: the data directory is ``~/.local/share/labctl``, the store is a SQLite file in it, and
the Kubernetes cluster is the local control plane when its kubeconfig exists. In ``production`` labctl refuses to start
without an explicit admin token and an explicit kubeconfig, so no default secret or surprising cluster is ever used.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER_NAME = "labctl"


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
    provision_step_delay_s: float = Field(
        default=0.0, ge=0, le=10,
        description="testing only: a pause between applied objects, to interrupt a start on purpose")

    @model_validator(mode="after")
    def _production_needs_explicit_secrets(self) -> Settings:
        if self.env == "production":
            token = self.admin_token.get_secret_value() if self.admin_token else ""
            if len(token) < 32:
                raise ValueError("LABCTL_ADMIN_TOKEN must be set to at least 32 characters when LABCTL_ENV=production")
            if self.kubeconfig is None:
                raise ValueError("LABCTL_KUBECONFIG must name the cluster's kubeconfig when LABCTL_ENV=production")
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
        }


def _hide_password(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
