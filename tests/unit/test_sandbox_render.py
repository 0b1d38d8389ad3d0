"""Pure: the sandbox's bounds as lab data (quota defaults, LimitRange bounds, network) and as rendered objects."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from labctl.catalog import loader, yamldoc
from labctl.catalog.models import QUOTA_DEFAULTS, Lab, metadata_exceptions
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes import render
from labctl.settings import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
BASE: dict[str, Any] = {
    "id": "demo", "title": "Demo", "summary": "A lab for tests.", "provider": "kubernetes",
    "budget": {"usd": 1}, "time": {"limit": "1h", "max_extension": "0"},
    "quota": {"cpu": "2", "memory": "2Gi", "pods": "10"},
    "graders": [{"id": "tags", "script": "graders/tag_coverage.py", "weight": 1}],
}


def lab(**changes: Any) -> Lab:
    return Lab.model_validate({**BASE, **changes})


def error_of(**changes: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        lab(**changes)
    return str(caught.value)


# --- quota --------------------------------------------------------------------------------------------------------


def test_a_kubernetes_lab_gets_the_default_counts_and_keeps_its_own() -> None:
    made = lab(quota={**BASE["quota"], "services": "3", "count/secrets": 4})
    assert made.quota == {**QUOTA_DEFAULTS, "cpu": "2", "memory": "2Gi", "pods": "10", "services": "3",
                          "count/secrets": "4"}
    assert made.quota["services.nodeports"] == "0" and made.quota["services.loadbalancers"] == "0"


def test_a_cloud_lab_gets_no_kubernetes_quota() -> None:
    assert lab(provider="aws", quota={}, aws={"regions": ["us-east-1"], "instance_types": ["m5.large"]}).quota == {}


@pytest.mark.parametrize(("quota", "message"), [
    ({"count/secrets": "1.5"}, "quota count/secrets counts objects or devices"),
    ({"services.nodeports": "2k"}, "quota services.nodeports counts objects"),
    ({"count/pods": "3"}, "'count/pods' is not a quota labs may set"),
    ({"requests.storage": "10GB"}, "'10GB' is not a Kubernetes quantity"),
])
def test_bad_quota_keys_and_values_are_named(quota: dict[str, str], message: str) -> None:
    assert message in error_of(quota={**BASE["quota"], **quota})


# --- LimitRange ---------------------------------------------------------------------------------------------------


def test_limit_range_has_a_floor_and_a_ceiling_from_the_quota() -> None:
    bounds = lab().limit_range
    assert (bounds.min.cpu, bounds.min.memory) == ("10m", "16Mi")
    assert bounds.max is not None and (bounds.max.cpu, bounds.max.memory) == ("2", "2Gi")
    explicit = lab(limit_range={"max": {"cpu": "1", "memory": "1Gi"}}).limit_range.max
    assert explicit is not None and explicit.cpu == "1"


@pytest.mark.parametrize(("limit_range", "message"), [
    ({"min": {"cpu": "200m", "memory": "16Mi"}}, "min.cpu (200m) is above default_request.cpu (100m)"),
    ({"min": {"cpu": "10m", "memory": "1Gi"}}, "min.memory (1Gi) is above default_request.memory (128Mi)"),
    ({"max": {"cpu": "250m", "memory": "1Gi"}}, "default_limit.cpu (500m) is above max.cpu (250m)"),
    ({"max": {"cpu": "4", "memory": "1Gi"}}, "limit_range.max.cpu (4) is above the lab's cpu quota (2)"),
    ({"default_limit": {"cpu": "500m", "memory": "3Gi"}}, "limit_range.default_limit.memory (3Gi) is above"),
])
def test_limit_range_bounds_out_of_order_are_named(limit_range: dict[str, Any], message: str) -> None:
    assert message in error_of(limit_range=limit_range)


# --- network ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cidr", "message"), [
    ("10.0.0.1/8", "with its host bits zero"),
    ("not-a-cidr", "is not a CIDR block"),
    ("169.254.0.0/16", "where cloud metadata services answer"),
    ("169.254.169.254/32", "where cloud metadata services answer"),
    ("fd00:ec2::254/128", "where cloud metadata services answer"),
])
def test_egress_blocks_must_be_networks_away_from_metadata(cidr: str, message: str) -> None:
    assert message in error_of(network={"egress": [{"cidr": cidr}]})


def test_metadata_addresses_are_cut_out_of_wide_blocks() -> None:
    assert metadata_exceptions("0.0.0.0/0") == ["169.254.169.254/32"]
    assert metadata_exceptions("::/0") == ["fd00:ec2::254/128"]
    assert metadata_exceptions("10.0.0.0/8") == []


def test_service_types_are_clusterip_by_default_and_never_external_name() -> None:
    assert lab().network.service_types == ["ClusterIP"]
    assert "Input should be 'ClusterIP', 'NodePort' or 'LoadBalancer'" in error_of(
        network={"service_types": ["ExternalName"]})


# --- rendered objects ---------------------------------------------------------------------------------------------


def objects(made: Lab, *, frozen: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    spec = SandboxSpec(session_id="demo-1", lab=made, learner_id="ada", namespace="demo-1", expires_at=now,
                       budget_usd=1.0, started_at=now)
    return {(o["kind"], o["metadata"]["name"]): o for o in render.sandbox_objects(spec, MANIFESTS, frozen=frozen)}


def test_the_namespace_carries_the_policy_parameters_and_the_policy_selects_by_it() -> None:
    made = objects(lab(priority_classes=["batch-low"], network={"service_types": ["ClusterIP", "NodePort"]}))
    annotations = made[("Namespace", "demo-1")]["metadata"]["annotations"]
    assert annotations["labctl.dev/allowed-service-types"] == "ClusterIP,NodePort"
    assert annotations["labctl.dev/allowed-priority-classes"] == "batch-low"
    policy = made[("ValidatingAdmissionPolicy", render.ADMISSION_POLICY)]
    binding = made[("ValidatingAdmissionPolicyBinding", render.ADMISSION_POLICY)]
    for shared in (policy, binding):
        assert shared["metadata"]["labels"] == render.MANAGED_BY  # all sessions share it: no session label
        assert "namespace" not in shared["metadata"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert {"key": render.SESSION_LABEL, "operator": "Exists"} in (
        binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"])


def test_the_limit_range_renders_min_and_max() -> None:
    limits = objects(lab())[("LimitRange", "sandbox")]["spec"]["limits"][0]
    assert limits["min"] == {"cpu": "10m", "memory": "16Mi"} and limits["max"] == {"cpu": "2", "memory": "2Gi"}


@pytest.mark.parametrize("frozen", [False, True], ids=["editable", "frozen"])
def test_the_role_names_every_resource(frozen: bool) -> None:
    rules = objects(lab(), frozen=frozen)[("Role", render.LEARNER)]["rules"]
    editable = objects(lab())[("Role", render.LEARNER)]["rules"]
    assert all("*" not in r["resources"] and "*" not in r["verbs"] and "*" not in r["apiGroups"] for r in rules)
    assert [(r["apiGroups"], r["resources"]) for r in rules] == [(r["apiGroups"], r["resources"]) for r in editable]
    writes = {res for r in rules if "create" in r["verbs"] for res in r["resources"]}
    assert not writes & {"endpoints", "endpointslices", "serviceaccounts", "serviceaccounts/token", "pods/exec",
                         "pods/attach", "pods/portforward", "pods/proxy", "services/proxy", "networkpolicies"}
    assert not {g for r in rules for g in r["apiGroups"]} & {"kwok.x-k8s.io", "rbac.authorization.k8s.io"}
    if frozen:
        assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in rules)


def test_shipped_labs_render_with_their_bounds() -> None:
    for made in loader.load_catalog(REPO_ROOT / "labs", MANIFESTS).values():
        if made.provider != "kubernetes":
            continue  # a cloud lab has no namespace to render
        rendered = objects(made)
        assert rendered[("ResourceQuota", "sandbox")]["spec"]["hard"] == made.quota
        assert rendered[("NetworkPolicy", "egress")]["spec"]["policyTypes"] == ["Egress"]


def test_templates_are_compiled_once_per_directory_and_again_when_edited(tmp_path: Path) -> None:
    (tmp_path / "t.yaml.j2").write_text("kind: A\nname: {{ namespace }}\n")
    env = loader.environment(tmp_path)
    assert loader.environment(tmp_path) is env
    first = env.get_template("t.yaml.j2")
    assert env.get_template("t.yaml.j2") is first  # compiled once, kept
    assert loader.render_templates(["t.yaml.j2"], tmp_path, {"namespace": "n1"}) == [{"kind": "A", "name": "n1"}]
    (tmp_path / "t.yaml.j2").write_text("kind: B\nname: {{ namespace }}\n")
    stat = (tmp_path / "t.yaml.j2").stat()
    os.utime(tmp_path / "t.yaml.j2", (stat.st_atime, stat.st_mtime + 10))  # a later edit, whatever the clock's grain
    assert loader.render_templates(["t.yaml.j2"], tmp_path, {"namespace": "n2"}) == [{"kind": "B", "name": "n2"}]


def test_rendered_yaml_is_parsed_like_the_safe_loader() -> None:
    text = "a: 1\nb: [on, off, 1e3, '1e3', 0o17, 2026-12-01]\n---\n---\nc: ~\n"
    assert yamldoc.load_all(text) == [d for d in yaml.safe_load_all(text) if d is not None]
    with pytest.raises(yaml.YAMLError):
        yamldoc.load_all("a: [1\n")
    with pytest.raises(yaml.YAMLError):  # no Python objects, as with the safe loader
        yamldoc.load_all("!!python/object/apply:os.system ['true']\n")


# --- a warm pool's sandbox handed over to its learner ---------------------------------------------------------------


def _full_diff(spec: SandboxSpec, previous: SandboxSpec, manifests: Path) -> list[dict[str, Any]]:
    """Every object rendered for both, those of ``spec`` that differ: what a hand-over must write."""
    out: list[dict[str, Any]] = []
    for now, before in ((render.sandbox_objects(spec, manifests), render.sandbox_objects(previous, manifests)),
                        (render.starter_objects(spec, manifests), render.starter_objects(previous, manifests))):
        out.extend(obj for obj in now if obj not in before)
    return out


def _pooled_and_claimed(made: Lab) -> tuple[SandboxSpec, SandboxSpec]:
    pooled_at, claimed_at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC), datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    pooled = SandboxSpec(session_id="demo-1", lab=made, learner_id="", namespace="demo-1",
                         expires_at=pooled_at.replace(hour=9), budget_usd=1.0, started_at=pooled_at)
    claimed = SandboxSpec(session_id="demo-1", lab=made, learner_id="ada", namespace="demo-1",
                          expires_at=claimed_at.replace(hour=10), budget_usd=0.75, started_at=claimed_at)
    return pooled, claimed


def test_a_hand_over_writes_the_namespace_only_when_no_starter_names_the_learner() -> None:
    made = loader.load_catalog(REPO_ROOT / "labs", MANIFESTS)["tag-for-showback"]
    pooled, claimed = _pooled_and_claimed(made)
    written = render.handed_over(claimed, pooled, MANIFESTS)
    assert [(o["kind"], o["metadata"]["name"]) for o in written] == [("Namespace", "demo-1")]
    meta = written[0]["metadata"]
    assert meta["labels"][render.LEARNER_LABEL] == "ada"
    assert meta["annotations"]["labctl.dev/budget-usd"] == "0.75"
    assert meta["annotations"]["labctl.dev/expires-at"] == claimed.expires_at.isoformat()
    assert written == _full_diff(claimed, pooled, MANIFESTS)


def test_a_starter_that_names_the_learner_is_written_again_at_the_hand_over(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    (manifests / "sandbox").mkdir(parents=True)
    for template in (MANIFESTS / "sandbox").glob("*.yaml.j2"):
        (manifests / "sandbox" / template.name).write_text(template.read_text())
    (manifests / "owner.yaml.j2").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\ndata: {learner: '{{ learner_id }}'}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fixed}\ndata: {lab: '{{ lab_id }}'}\n")
    pooled, claimed = _pooled_and_claimed(lab(starter=["owner.yaml.j2"]))
    written = render.handed_over(claimed, pooled, manifests)
    assert [(o["kind"], o["metadata"]["name"]) for o in written] == [("Namespace", "demo-1"), ("ConfigMap", "owner")]
    assert written[1]["data"] == {"learner": "ada"} and written[1]["metadata"]["namespace"] == "demo-1"
    assert written == _full_diff(claimed, pooled, manifests)
