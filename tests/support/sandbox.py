"""A learner's sandbox made by labctl's Kubernetes provider, and the learner at its keyboard.

The sandbox is provisioned by :class:`KubernetesSandboxes` (what ``POST /v1/sessions`` runs) and the kubeconfig is
the provider's :meth:`credentials` (what ``GET /v1/sessions/{id}/kubeconfig`` returns), so tests play the learner
with exactly what labctl hands out, through the real built kubectl, in a bare environment as on a learner's laptop.
Labs are the shipped ones, or variants of them built with :func:`lab_variant` (validated like a lab file).
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.localcluster.cluster import LocalCluster
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes.sandbox import KubernetesSandboxes
from labctl.settings import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def shipped_lab(lab_id: str) -> Lab:
    return loader.load_catalog(REPO_ROOT / "labs", MANIFESTS)[lab_id]


def lab_variant(lab_id: str, **changes: Any) -> Lab:
    """A shipped lab with some fields replaced (and no starter workloads), validated as a lab file would be."""
    data = shipped_lab(lab_id).model_dump(mode="json")
    data.update({"starter": [], **changes})
    if "quota" in changes:
        data["quota"] = {**shipped_lab(lab_id).model_dump(mode="json")["quota"], **changes["quota"]}
    data["limit_range"].pop("max", None)
    return Lab.model_validate(data)


@dataclass
class LearnerSandbox:
    provider: KubernetesSandboxes
    spec: SandboxSpec
    kubeconfig: Path
    kubectl_path: Path
    home: Path

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The learner's kubectl: the kubeconfig labctl issued, nothing else (no admin config, a scratch HOME)."""
        return subprocess.run([str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)})

    def apply(self, *docs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def create(self, *docs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kubectl("create", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def can_i_list(self) -> list[dict[str, Any]]:
        """``kubectl auth can-i --list`` (in the learner's namespace) as [{resource, verbs}], one row per line."""
        proc = self.kubectl("auth", "can-i", "--list")
        assert proc.returncode == 0, proc.stderr
        rows = []
        for line in proc.stdout.splitlines()[1:]:
            match = _CAN_I_ROW.match(line)
            assert match, f"unexpected line of kubectl auth can-i --list: {line!r}"
            if match["resource"]:  # rows without a resource are non-resource URLs (/api, /healthz, ...)
                rows.append({"resource": match["resource"], "verbs": sorted(match["verbs"].split())})
        return rows


_CAN_I_ROW = re.compile(r"^(?P<resource>\S*)\s+\[[^\]]*\]\s+\[[^\]]*\]\s+\[(?P<verbs>[^\]]*)\]\s*$")


@contextmanager
def learner_sandbox(cluster: LocalCluster, lab: Lab, directory: Path, *,
                    learner: str = "ada") -> Iterator[LearnerSandbox]:
    """Provision a sandbox for ``lab`` as labctl does, yield the learner's view of it, and destroy it after."""
    provider = KubernetesSandboxes(cluster.kubeconfig, MANIFESTS)
    now = datetime.now(UTC)
    session_id = f"{lab.id}-{secrets.token_hex(5)}"
    spec = SandboxSpec(session_id=session_id, lab=lab, learner_id=learner, namespace=session_id,
                       expires_at=now + timedelta(hours=1), budget_usd=float(lab.budget.usd), started_at=now)
    try:
        provider.provision(spec)
        kubeconfig = directory / f"{session_id}.kubeconfig"
        kubeconfig.write_text(provider.credentials(spec).content)
        home = directory / f"{session_id}-home"
        home.mkdir()
        yield LearnerSandbox(provider, spec, kubeconfig, cluster.tools.kubectl, home)
    finally:
        provider.destroy(spec, wait_s=180)
        provider.close()  # its watch cache, if a snapshot started one


def pod(name: str, *, cpu: str = "50m", memory: str = "64Mi", labels: dict[str, str] | None = None,
        resources: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A Pod that passes Pod Security ``restricted``, with ``spec`` fields added."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {**pod_spec(cpu=cpu, memory=memory, resources=resources), **spec}}


def pod_spec(*, cpu: str = "50m", memory: str = "64Mi", resources: dict[str, Any] | None = None) -> dict[str, Any]:
    container = {"name": "app", "image": "registry.k8s.io/pause:3.10", "securityContext": RESTRICTED_CONTAINER,
                 "resources": resources if resources is not None else {
                     "requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}}
    return {"securityContext": RESTRICTED_POD, "containers": [container]}


def deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {**pod_spec(), **spec}}}}


def cronjob(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                **pod_spec(), "restartPolicy": "Never", **spec}}}}}}


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}
