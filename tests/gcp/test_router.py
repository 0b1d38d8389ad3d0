"""The registry builds the GCP provider from settings on first use; nothing imports the Google SDK before that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from labctl.providers.gcp.sandbox import GcpSandboxes
from labctl.providers.router import ProviderRouter
from labctl.runtime import provider_factories
from labctl.settings import REPO_ROOT, Settings
from tests.support import gcp
from tests.support.gce_fake import GceFake


def test_the_registry_builds_the_gcp_provider_from_settings_lazily(gce: GceFake, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, gcp_endpoint_url=gce.url, gcp_project=gcp.PROJECT)
    router = ProviderRouter(provider_factories(settings, kubernetes=object()),  # type: ignore[arg-type]
                            in_use={"gcp"})
    built = router.of("gcp")
    assert isinstance(built, GcpSandboxes) and built.endpoint_url == gce.url and built.project == gcp.PROJECT
    assert router.of("gcp") is built
    spec = gcp.spec()
    router.provision(spec)
    assert [r.name for r in router.snapshot(spec, now=spec.started_at).of_kind("Instance")] == [
        gcp.starter_name("trainer-a100", spec.session_id)]
    assert f"gcp: GCP project {gcp.PROJECT} at {gce.url}" in router.ping()
    router.destroy(spec, wait_s=5)


def test_building_labctl_does_not_import_the_google_sdk() -> None:
    code = ("import sys, labctl.runtime, labctl.providers.router, api.app; "
            "sys.exit(int(any(m.startswith('google.cloud') for m in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=60).returncode == 0
