"""A real learner sandbox for the metrics tests: made by the Kubernetes provider, used with the learner's kubeconfig.

The sandbox is the production one (namespace, quota, limits, network policy, the learner Role) without the lab's
starter workloads, so a test controls every pod in it. The learner runs the real kubectl with nothing but the
kubeconfig labctl issued, in a bare environment.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from labctl.catalog import loader
from labctl.localcluster.cluster import LocalCluster
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes import render
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from labctl.settings import Settings


@dataclass(frozen=True)
class LearnerSandbox:
    namespace: str
    kubeconfig: Path
    kubectl: Path
    home: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real kubectl as the learner: only the issued kubeconfig, HOME in a scratch directory."""
        return subprocess.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)})


@contextmanager
def learner_sandbox(cluster: LocalCluster, settings: Settings, directory: Path,
                    *, lab_id: str = "tag-for-showback") -> Iterator[LearnerSandbox]:
    catalog = loader.load_catalog(settings.labs_dir, settings.manifests_dir, fleet_file=settings.fleet_file)
    now = datetime.now(UTC)
    session = uuid.uuid4().hex[:10]
    spec = SandboxSpec(session_id=session, lab=catalog[lab_id], learner_id=f"metrics-{session}",
                       namespace=f"lab-metrics-{session}", expires_at=now + timedelta(hours=1), budget_usd=10.0,
                       started_at=now)
    provider = KubernetesSandboxes(cluster.kubeconfig, settings.manifests_dir)
    provider.apply(render.sandbox_objects(spec, settings.manifests_dir))
    provider._wait_quota(spec.namespace, timeout_s=30)  # what provision() waits for, without the starters
    kubeconfig = directory / "learner.yaml"
    kubeconfig.write_text(provider.credentials(spec).content)
    home = directory / "home"
    home.mkdir(exist_ok=True)
    try:
        yield LearnerSandbox(namespace=spec.namespace, kubeconfig=kubeconfig, kubectl=cluster.tools.kubectl,
                             home=home)
    finally:
        provider.destroy(spec, wait_s=120)
        provider.close()  # its watch cache, if a snapshot started one


def deployment(name: str, *, replicas: int = 1, cpu: str = "500m", memory: str = "256Mi",
               annotations: dict[str, str] | None = None) -> str:
    """A restricted-Pod-Security Deployment of one container named ``app`` (YAML for ``kubectl apply``)."""
    pod_security = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"name": "app", "image": "registry.k8s.io/pause:3.10",
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                 "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}}
    template: dict[str, Any] = {"metadata": {"labels": {"app": name}},
                                "spec": {"securityContext": pod_security, "containers": [container]}}
    if annotations:
        template["metadata"]["annotations"] = annotations
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template}})
