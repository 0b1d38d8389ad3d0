"""Settings: development defaults, and production refusing default secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labctl.settings import Settings


def test_development_defaults_use_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'labctl.db'}"
    assert s.local_cluster_kubeconfig == tmp_path / "kwok" / "clusters" / "labctl" / "kubeconfig.yaml"
    assert s.effective_kubeconfig is None  # no local cluster there


def test_explicit_kubeconfig_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "kind.yaml"
    assert Settings(data_dir=tmp_path, kubeconfig=cfg).effective_kubeconfig == cfg


def test_production_refuses_to_start_without_a_real_admin_token(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="LABCTL_ADMIN_TOKEN"):
        Settings(env="production", data_dir=tmp_path, kubeconfig=tmp_path / "k", admin_token="short")


def test_production_needs_an_explicit_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="LABCTL_KUBECONFIG"):
        Settings(env="production", data_dir=tmp_path, admin_token="x" * 40)


def test_redacted_hides_database_password() -> None:
    s = Settings(database_url="postgresql+psycopg://app:hunter2@db:5432/labctl")
    assert "hunter2" not in str(s.redacted())
    assert s.redacted()["database_url"] == "postgresql+psycopg://app:***@db:5432/labctl"
