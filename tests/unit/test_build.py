"""The binary build: wrapper modules, version stamping, and a clear failure without Go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from labctl.localcluster import build
from labctl.settings import REPO_ROOT


def test_kube_wrapper_pins_every_staging_module_to_its_published_twin() -> None:
    gomod = build.kube_wrapper_gomod()
    assert "require k8s.io/kubernetes v1.36.3" in gomod
    for module in build.STAGING_MODULES:
        assert f"\tk8s.io/{module} => k8s.io/{module} v0.36.3\n" in gomod
    assert len(build.STAGING_MODULES) == 33


def test_ldflags_stamp_both_version_packages() -> None:
    flags = build.kube_ldflags()
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.36.3" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=36" in flags


def test_metrics_server_ldflags_stamp_the_variables_its_release_build_sets() -> None:
    flags = build.metrics_server_ldflags()
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v0.8.0" in flags
    assert f"-X k8s.io/client-go/pkg/version.gitCommit={build.METRICS_SERVER_COMMIT}" in flags


def test_cache_is_keyed_by_version(tmp_path: Path) -> None:
    tools = build.toolset(tmp_path)
    paths = [str(p) for p in tools.all_binaries()]
    assert all(str(tmp_path) in p for p in paths)
    assert any("kubernetes-v1.36.3" in p for p in paths)
    assert any("etcd-v3.6.16" in p for p in paths)
    assert any("kwok-v0.8.0" in p for p in paths)
    assert any("metrics-server-v0.8.0" in p for p in paths)
    assert not any(p.startswith(str(REPO_ROOT)) for p in paths)


def test_missing_go_gives_a_clear_message_and_non_zero_exit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(tmp_path)  # nothing on it: no go
    proc = subprocess.run([sys.executable, "-m", "labctl.localcluster.build", "--cache-dir", str(tmp_path / "c")],
                          env=env, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 1
    assert "Go is not installed or not on PATH" in proc.stderr
    assert "Go >= 1.26" in proc.stderr
