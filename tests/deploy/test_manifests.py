"""The deployment base as kustomize builds it (the built kubectl's ``kustomize``, no cluster): the Deployment's shape
and hardening, settings and secrets by reference, and the least RBAC: no ``*``, no ``escalate`` or ``bind``, and the
learner grants equal to what the sandbox templates grant (the RBAC escalation check needs exactly those)."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.catalog import loader
from labctl.localcluster import build
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes import render
from labctl.settings import REPO_ROOT, Settings

BASE = REPO_ROOT / "manifests" / "deploy"
Rule = tuple[str, str, str, str]  # (API group, resource, resource name or "", verb)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` with the built kubectl (kustomize is part of it; `make binaries` builds it)."""
    kubectl = build.toolset().kubectl
    assert kubectl.is_file(), f"{kubectl} is missing: run `make binaries` first"
    done = subprocess.run([str(kubectl), "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in kustomize(BASE)}


def rules(role: dict[str, Any]) -> set[Rule]:
    return {(group, resource, name, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for name in rule.get("resourceNames", [""]) for verb in rule["verbs"]}


def test_the_base_holds_labctl_and_no_secret_values(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(objects) == {
        ("Namespace", "labctl"), ("ServiceAccount", "labctl"), ("ClusterRole", "labctl-controller"),
        ("ClusterRole", "labctl-learner-grants"), ("ClusterRoleBinding", "labctl-controller"),
        ("ClusterRoleBinding", "labctl-learner-grants"), ("ConfigMap", "labctl-settings"), ("Deployment", "labctl"),
        ("Service", "labctl"), ("PodDisruptionBudget", "labctl"), ("Role", "labctl-leader"),
        ("RoleBinding", "labctl-leader")}
    assert not any(kind == "Secret" for kind, _ in objects)
    assert {o["metadata"].get("namespace") for (kind, _), o in objects.items()
            if kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding")} == {"labctl"}
    for binding in ("labctl-controller", "labctl-learner-grants"):
        crb = objects[("ClusterRoleBinding", binding)]
        assert crb["roleRef"]["name"] == binding
        assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "labctl", "namespace": "labctl"}]


def test_the_deployment_serves_in_cluster_with_probes_and_hardening(
        objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = objects[("Deployment", "labctl")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "labctl"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["image"] == "ghcr.io/example/labctl:0.1.0"  # the images transformer names it; overlays change it
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    hardening = container["securityContext"]
    assert hardening["allowPrivilegeEscalation"] is False and hardening["readOnlyRootFilesystem"] is True
    assert hardening["capabilities"] == {"drop": ["ALL"]} and hardening["runAsNonRoot"] is True
    assert hardening["seccompProfile"] == {"type": "RuntimeDefault"}
    # What must be written is an emptyDir: the data directory and /tmp.
    settings = objects[("ConfigMap", "labctl-settings")]["data"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts) == {settings["LABCTL_DATA_DIR"], "/tmp"}
    assert all("emptyDir" in v for v in pod["volumes"] if v["name"] in mounts.values())
    # Listening on every address in the pod, on the port the probes and the Service use.
    assert settings["LABCTL_HOST"] == "0.0.0.0" and settings["LABCTL_PORT"] == "8080"  # noqa: S104
    assert container["envFrom"] == [{"configMapRef": {"name": "labctl-settings"}}]
    service = objects[("Service", "labctl")]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pdb = objects[("PodDisruptionBudget", "labctl")]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_secrets_by_reference_and_every_setting_is_one_labctl_knows(
        objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    [container] = objects[("Deployment", "labctl")]["spec"]["template"]["spec"]["containers"]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                   if "secretKeyRef" in e.get("valueFrom", {})}
    assert from_secret["LABCTL_DATABASE_URL"] == {"name": "labctl", "key": "database-url"}
    assert from_secret["LABCTL_ADMIN_TOKEN"] == {"name": "labctl", "key": "admin-token"}
    assert all(ref.get("optional") for name, ref in from_secret.items()
               if name not in ("LABCTL_DATABASE_URL", "LABCTL_ADMIN_TOKEN"))
    fields = {f"LABCTL_{name.upper()}" for name in Settings.model_fields}
    named = set(objects[("ConfigMap", "labctl-settings")]["data"]) | {e["name"] for e in container["env"]}
    assert named <= fields, named - fields


def test_no_wildcard_no_escalate_no_bind_and_impersonation_by_name(
        objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    for name in ("labctl-controller", "labctl-learner-grants"):
        held = rules(objects[("ClusterRole", name)])
        assert not any("*" in part for rule in held for part in rule), name
        assert not {verb for *_, verb in held} & {"escalate", "bind"}, name
        assert all(rule[2] for rule in held if rule[3] == "impersonate"), "impersonation without resourceNames"
    impersonated = {r for r in rules(objects[("ClusterRole", "labctl-controller")]) if r[3] == "impersonate"}
    assert impersonated == {("", "serviceaccounts", "learner", "impersonate")}


def test_the_learner_grants_are_exactly_what_sandboxes_grant(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Kubernetes refuses a Role (or a binding to one) with a permission its writer does not hold: labctl must hold
    every rule of the learner's Role and of labctl-node-reader, and the grants role holds nothing else."""
    catalog = loader.load_catalog(REPO_ROOT / "labs", REPO_ROOT / "manifests", fleet_file=REPO_ROOT / "labs" /
                                  "fleet.yaml")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    granted: set[Rule] = set()
    for lab in catalog.values():
        if lab.provider != "kubernetes":
            continue
        spec = SandboxSpec(session_id="s-1", lab=lab, learner_id="ada", namespace="s-1", expires_at=now,
                           budget_usd=1.0, started_at=now)
        for frozen in (False, True):
            granted |= {r for o in render.sandbox_objects(spec, REPO_ROOT / "manifests", frozen=frozen)
                        if o["kind"] in ("Role", "ClusterRole") for r in rules(o)}
    assert granted
    assert rules(objects[("ClusterRole", "labctl-learner-grants")]) == granted


def test_the_grader_jail_component_makes_exactly_its_trade_off(tmp_path: Path) -> None:
    (tmp_path / "base").symlink_to(BASE)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../base"], "components": ["../base/grader-jail"]}))
    built = {(o["kind"], o["metadata"]["name"]): o for o in kustomize(overlay)}
    pod = built[("Deployment", "labctl")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["hostUsers"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"}, "procMount": "Unmasked"}
    labels = built[("Namespace", "labctl")]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_the_overlay_docs_deploy_shows_builds_what_it_says(tmp_path: Path) -> None:
    """The example overlay of docs/DEPLOY.md, as written there: image, learners' address, the grader jail."""
    text = (REPO_ROOT / "docs" / "DEPLOY.md").read_text()
    found = re.search(r"```yaml\n(# overlays/prod/kustomization.yaml\n.*?)```", text, re.S)
    assert found, "docs/DEPLOY.md lost its example overlay"
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "deploy").symlink_to(BASE)
    overlay = tmp_path / "overlays" / "prod"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(found.group(1))
    built = {(o["kind"], o["metadata"]["name"]): o for o in kustomize(overlay)}
    pod = built[("Deployment", "labctl")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/labctl:0.1.0"
    assert pod["hostUsers"] is False
    settings = built[("ConfigMap", "labctl-settings")]["data"]
    assert settings["LABCTL_KUBE_LEARNER_SERVER"].startswith("https://")
    assert settings["LABCTL_ENV"] == "production"  # merged, not replaced
    Settings.model_validate({k.removeprefix("LABCTL_").lower(): v for k, v in settings.items()
                             if k != "LABCTL_ENV"})  # every value one labctl accepts
