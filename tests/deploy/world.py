"""labctl's deployment base applied to the local control plane, and labctl's own identity taken from it.

``apply_base`` runs the real ``kubectl apply -k manifests/deploy`` (and the Secret the way docs/DEPLOY.md says to
make it); ``service_account_kubeconfig`` mints a token for the ServiceAccount ``labctl`` with ``kubectl create token``
(a TokenRequest) and writes a kubeconfig with it, so the tests run labctl as that identity and not as cluster-admin.
``without_rule`` takes one rule (or some verbs of it) out of one of labctl's ClusterRoles for the length of a block and
waits until the apiserver's authorizer says so, then puts it back.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT

BASE = REPO_ROOT / "manifests" / "deploy"
NAMESPACE = "labctl"
IDENTITY = f"system:serviceaccount:{NAMESPACE}:labctl"
ADMIN_TOKEN = "deploy-test-admin-token-0123456789abcdef0123"


def apply_base(cluster: LocalCluster) -> str:
    """``kubectl apply -k manifests/deploy``, then the Secret as docs/DEPLOY.md makes it; kubectl's output."""
    applied = cluster.kubectl(["apply", "-k", str(BASE)]).stdout
    secret = cluster.kubectl(["-n", NAMESPACE, "create", "secret", "generic", "labctl",
                              "--from-literal=database-url=postgresql+psycopg://labctl:secret@db.example:5432/labctl",
                              f"--from-literal=admin-token={ADMIN_TOKEN}", "--dry-run=client", "-o", "yaml"]).stdout
    cluster.kubectl(["apply", "-f", "-"], stdin=secret)
    return applied


def remove_base(cluster: LocalCluster) -> None:
    cluster.kubectl(["delete", "-k", str(BASE), "--ignore-not-found", "--wait=false"], check=False)


def service_account_kubeconfig(cluster: LocalCluster, path: Path, *, server: str | None = None) -> Path:
    """A kubeconfig for the ServiceAccount ``labctl`` (a TokenRequest through kubectl), the cluster's CA, and the
    apiserver at ``server`` (default: the admin kubeconfig's)."""
    token = cluster.kubectl(["-n", NAMESPACE, "create", "token", "labctl", "--duration=2h"]).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    ca = Path(admin["certificate-authority"]).read_bytes()
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "labs", "cluster": {"server": server or admin["server"],
                                                  "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": "labctl", "user": {"token": token}}],
        "contexts": [{"name": "labctl", "context": {"cluster": "labs", "user": "labctl"}}],
        "current-context": "labctl",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def allowed(kube: client.ApiClient, *, verb: str, resource: str, group: str = "", subresource: str = "",
            namespace: str = "default", name: str = "") -> bool:
    """What the apiserver's authorizer answers for labctl's identity now (a SubjectAccessReview)."""
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=IDENTITY, groups=["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource, group=group,
                                                        subresource=subresource or None, namespace=namespace,
                                                        name=name or None)))
    answer = client.AuthorizationV1Api(kube).create_subject_access_review(review)
    return bool(answer.status.allowed)


@contextmanager
def without_rule(kube: client.ApiClient, role: str, *, resource: str, probe: Callable[[], bool], group: str = "",
                 verbs: frozenset[str] | None = None) -> Iterator[None]:
    """ClusterRole ``role`` without ``resource`` (of API group ``group``) in its rules, or only without ``verbs`` of
    it, for the block; ``probe`` (labctl may do it?) must turn false before the block and true again after it."""
    rbac = client.RbacAuthorizationV1Api(kube)
    original = [_plain(kube, r) for r in rbac.read_cluster_role(role).rules]
    kept: list[dict[str, Any]] = []
    for rule in original:
        if resource not in rule.get("resources", []) or group not in rule.get("apiGroups", []):
            kept.append(rule)
            continue
        if others := [r for r in rule["resources"] if r != resource]:
            kept.append({**rule, "resources": others})
        if verbs is not None and (left := [v for v in rule["verbs"] if v not in verbs]):
            kept.append({**rule, "resources": [resource], "verbs": left})
    assert kept != original, f"ClusterRole {role} has no rule for {resource}"
    rbac.patch_cluster_role(role, {"rules": kept})
    try:
        _wait(lambda: not probe(), f"{resource} refused")
        yield
    finally:
        rbac.patch_cluster_role(role, {"rules": original})
        _wait(probe, f"{resource} allowed again")


def _plain(kube: client.ApiClient, rule: client.V1PolicyRule) -> dict[str, Any]:
    plain: dict[str, Any] = kube.sanitize_for_serialization(rule)
    return plain


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"the authorizer did not see the change ({what}) within {timeout:.0f}s")
