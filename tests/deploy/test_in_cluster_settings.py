"""Pure: which cluster labctl talks to in a pod (no kubeconfig: the pod's ServiceAccount), and production's refusals:
outside a pod a kubeconfig is needed, and in a pod the address learners reach the apiserver at."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labctl import settings as settings_mod
from labctl.settings import Settings

ADMIN = "x" * 40


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    token = tmp_path / "serviceaccount" / "token"
    token.parent.mkdir()
    token.write_text("a-token")
    monkeypatch.setattr(settings_mod, "POD_TOKEN", token)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    return token


def test_outside_a_pod_production_still_needs_a_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert not settings_mod.in_a_pod()
    with pytest.raises(ValidationError, match="LABCTL_KUBECONFIG must name the cluster's kubeconfig"):
        Settings(env="production", data_dir=tmp_path, admin_token=ADMIN)


def test_a_pod_without_its_token_is_not_in_cluster(in_a_pod: Path) -> None:
    assert settings_mod.in_a_pod()
    in_a_pod.unlink()
    assert not settings_mod.in_a_pod()


def test_in_a_pod_production_needs_the_learners_address(in_a_pod: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="LABCTL_KUBE_LEARNER_SERVER must be set"):
        Settings(env="production", data_dir=tmp_path, admin_token=ADMIN)
    made = Settings(env="production", data_dir=tmp_path, admin_token=ADMIN,
                    kube_learner_server="https://abc.gr7.us-east-1.eks.amazonaws.com")
    assert made.effective_kubeconfig is None  # the provider's client then loads the in-cluster configuration
    assert made.redacted()["kubeconfig"] == "(in-cluster)"
    assert made.redacted()["learner_api_server"] == "https://abc.gr7.us-east-1.eks.amazonaws.com"


def test_a_kubeconfig_wins_over_the_pod_and_needs_no_learner_address(in_a_pod: Path, tmp_path: Path) -> None:
    made = Settings(env="production", data_dir=tmp_path, admin_token=ADMIN, kubeconfig=tmp_path / "k")
    assert made.effective_kubeconfig == tmp_path / "k"


@pytest.mark.parametrize("address", ["http://api.example.com", "https://api.example.com/path", "api.example.com"])
def test_the_learners_address_is_an_https_origin(address: str) -> None:
    with pytest.raises(ValidationError, match="kube_learner_server"):
        Settings(kube_learner_server=address)
