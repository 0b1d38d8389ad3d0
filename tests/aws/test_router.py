"""The provider router: each session's calls go to its lab's provider, built by name on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.ports import ProviderError
from labctl.providers.aws.sandbox import AwsSandboxes, role_name
from labctl.providers.router import ProviderRouter
from labctl.runtime import provider_factories
from labctl.settings import Settings
from tests.support import aws


def test_the_registry_builds_the_aws_provider_from_settings_lazily(moto_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, aws_endpoint_url=moto_url, aws_region="us-east-1")
    marker = object()
    factories = provider_factories(settings, kubernetes=marker)  # type: ignore[arg-type]
    router = ProviderRouter(factories, in_use={"aws", "kubernetes"})
    assert router.of("kubernetes") is marker
    built = router.of("aws")
    assert isinstance(built, AwsSandboxes) and built.endpoint_url == moto_url
    assert router.of("aws") is built  # built once


def test_calls_go_to_the_provider_the_lab_names(moto_url: str) -> None:
    router = ProviderRouter({"aws": lambda: AwsSandboxes(region="us-east-1", endpoint_url=moto_url,
                                                         session_factory=aws.admin_session)}, in_use={"aws"})
    spec = aws.spec()
    router.provision(spec)
    iam = aws.admin_session().client("iam", endpoint_url=moto_url)
    assert iam.get_role(RoleName=role_name(spec.session_id))["Role"]["RoleName"] == role_name(spec.session_id)
    assert router.ping().startswith("aws: AWS account 123456789012")
    router.destroy(spec, wait_s=5)
    assert role_name(spec.session_id) not in {r["RoleName"] for r in iam.list_roles()["Roles"]}


def test_a_lab_of_an_unconfigured_provider_is_refused_by_name(moto_url: str) -> None:
    router = ProviderRouter({"aws": lambda: AwsSandboxes(region="us-east-1", endpoint_url=moto_url,
                                                         session_factory=aws.admin_session)}, in_use={"aws"})
    gcp_lab = aws.aws_lab().model_copy(update={"provider": "gcp", "aws": None})
    with pytest.raises(ProviderError, match=r"no gcp provider is configured \(configured: aws\)"):
        router.provision(aws.spec(gcp_lab))
    with pytest.raises(ValueError, match=r"labs use provider\(s\) gcp, but only aws can be built"):
        ProviderRouter({"aws": lambda: AwsSandboxes(region="us-east-1")}, in_use={"aws", "gcp"})


def test_enforce_goes_to_the_lab_provider_and_a_namespace_refuses_it(moto_url: str) -> None:
    from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
    from labctl.settings import REPO_ROOT

    kube = KubernetesSandboxes(None, REPO_ROOT / "manifests")
    router = ProviderRouter({"kubernetes": lambda: kube}, in_use={"kubernetes"})
    kube_lab = aws.aws_lab().model_copy(update={"provider": "kubernetes", "aws": None})
    with pytest.raises(ProviderError, match=r"Kubernetes sandbox: it has no instances to stop .*only to cloud labs"):
        router.enforce(aws.spec(kube_lab), resource="Instance/i-1", action="stop")
