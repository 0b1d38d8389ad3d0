"""The capacity summary and a lab's needs, from Kubernetes JSON (pure), and LABCTL_CLUSTERS parsed with errors that
name the entry."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from labctl.catalog import loader
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes import capacity, render
from labctl.settings import REPO_ROOT, Settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
GI = Decimal(2**30)


def _node(name: str, *, cpu: str = "4", gpus: int = 0, cordoned: bool = False, ready: bool = True) -> dict[str, object]:
    allocatable = {"cpu": cpu, "memory": "16Gi", "pods": "110", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {"metadata": {"name": name, "labels": {"labctl.dev/pool": "p"}},
            "spec": {"unschedulable": cordoned, "taints": [{"key": "k", "effect": "PreferNoSchedule"},
                                                           {"key": "nvidia.com/gpu", "value": "present",
                                                            "effect": "NoSchedule"}]},
            "status": {"allocatable": allocatable,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _pod(namespace: str, node: str | None, *, phase: str = "Running", **requests: str) -> dict[str, object]:
    return {"metadata": {"namespace": namespace},
            "spec": {"nodeName": node, "containers": [{"resources": {"requests": requests}}]},
            "status": {"phase": phase}}


def test_a_room_counts_bound_live_pods_only_and_cordoned_or_unready_nodes_are_not_schedulable() -> None:
    got = capacity.room("a", nodes=[_node("n0", gpus=2), _node("n1", cordoned=True), _node("n2", ready=False)],
                        pods=[_pod("s1", "n0", cpu="1", memory="1Gi", **{"nvidia.com/gpu": "1"}),
                              _pod("s1", "n0", cpu="500m"), _pod("s2", None, cpu="3"),
                              _pod("s3", "n0", phase="Succeeded", cpu="3")], taken_at=NOW)
    n0, n1, n2 = got.nodes
    assert n0.free("cpu") == Decimal("2.5") and n0.free("memory") == 15 * GI and n0.free("nvidia.com/gpu") == 1
    assert n0.schedulable and not n1.schedulable and not n2.schedulable
    assert [t.key for t in n0.taints] == ["nvidia.com/gpu"]  # PreferNoSchedule never keeps a pod off
    assert got.bound == {"s1": 2}


def test_a_labs_needs_are_its_starters_pods_with_defaults_and_limits_as_requests_and_its_quota_compute() -> None:
    lab = loader.load_catalog(REPO_ROOT / "labs", REPO_ROOT / "manifests")["gpu-rightsizing"]
    starters = [
        {"kind": "Deployment", "metadata": {"name": "d"},
         "spec": {"replicas": 2, "template": {"spec": {
             "nodeSelector": {"karpenter.sh/capacity-type": "on-demand"},
             "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
             "containers": [{"resources": {"limits": {"cpu": "2", "nvidia.com/gpu": 1}}}]}}}},
        {"kind": "Job", "metadata": {"name": "j"}, "spec": {"parallelism": 3, "completions": 2,
                                                            "template": {"spec": {"containers": [{}]}}}},
        {"kind": "CronJob", "metadata": {"name": "c"}, "spec": {}},
        {"kind": "Service", "metadata": {"name": "s"}, "spec": {}},
    ]
    needs = capacity.needs(lab, starters)
    assert [p.name for p in needs.pods] == ["Deployment/d#1", "Deployment/d#2", "Job/j#1", "Job/j#2"]
    first = needs.pods[0]
    assert first.requests == {"cpu": Decimal(2), "memory": 128 * Decimal(2**20),
                              "nvidia.com/gpu": Decimal(1)}
    assert first.node_selector == {"karpenter.sh/capacity-type": "on-demand"}
    assert first.tolerations[0].key == "nvidia.com/gpu"
    assert needs.pods[2].requests == {"cpu": Decimal("0.1"), "memory": 128 * Decimal(2**20)}
    assert needs.quota["nvidia.com/gpu"] == 2 and needs.quota["nvidia.com/mig-1g.10gb"] == 3
    assert needs.quota["cpu"] == 20 and "pods" not in needs.quota


def test_the_shipped_labs_starters_all_give_needs() -> None:
    catalog = loader.load_catalog(REPO_ROOT / "labs", REPO_ROOT / "manifests")
    for lab in catalog.values():
        if lab.provider != "kubernetes":
            continue
        spec = SandboxSpec(session_id="s", lab=lab, learner_id="l", namespace="s", expires_at=NOW, budget_usd=1,
                           started_at=NOW)
        needs = capacity.needs(lab, render.starter_objects(spec, REPO_ROOT / "manifests"))
        assert needs.pods, lab.id
        assert all(p.requests.get("cpu", 0) > 0 for p in needs.pods), lab.id


def test_without_labctl_clusters_there_is_one_cluster_named_default(tmp_path: Path) -> None:
    config = tmp_path / "k.yaml"
    config.write_text("{}")
    (only,) = Settings(kubeconfig=config, kube_learner_server="https://x.example:6443").cluster_list
    assert (only.name, only.kubeconfig, only.learner_server) == ("default", config, "https://x.example:6443")


def test_labctl_clusters_lists_name_and_kubeconfig_in_order(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text("{}")
    monkeypatch.setenv("LABCTL_CLUSTERS", f"gpu={tmp_path / 'b.yaml'}, eu-1={tmp_path / 'a.yaml'}")
    assert [(c.name, c.kubeconfig) for c in Settings().cluster_list] == [("gpu", tmp_path / "b.yaml"),
                                                                        ("eu-1", tmp_path / "a.yaml")]


def test_a_labctl_clusters_entry_may_name_the_address_learners_reach_it_at(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text("{}")
    monkeypatch.setenv("LABCTL_CLUSTERS", f"eu={tmp_path / 'a.yaml'}@https://eu.k8s.example.com:6443,"
                                          f"gpu={tmp_path / 'b.yaml'}")
    assert [(c.name, c.kubeconfig, c.learner_server) for c in Settings().cluster_list] == [
        ("eu", tmp_path / "a.yaml", "https://eu.k8s.example.com:6443"), ("gpu", tmp_path / "b.yaml", None)]


@pytest.mark.parametrize(("value", "message"), [
    ("a", "LABCTL_CLUSTERS entry 1 ('a') must be name=kubeconfig"),
    ("a=@https://a.example.com", "entry 1 ('a=@https://a.example.com') must be name=kubeconfig"),
    ("a={k}@https://a.example.com/api", "the learners' address 'https://a.example.com/api' must be "
                                        "https://host"),
    ("a={k}@https://", "the learners' address 'https://' must be https://host"),
    ("a={k},B={k}", "entry 2 ('B={k}'): the name 'B' must be 1-32 lowercase letters"),
    ("a={k},a={k}", "entry 2 ('a={k}'): the name 'a' is used twice"),
    ("a={k},b=/nonexistent/b.yaml", "entry 2 ('b=/nonexistent/b.yaml'): the kubeconfig /nonexistent/b.yaml is not a "
                                    "readable file"),
    (" , ", "names no cluster"),
])
def test_labctl_clusters_errors_name_the_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str,
                                               message: str) -> None:
    kubeconfig = tmp_path / "k.yaml"
    kubeconfig.write_text("{}")
    monkeypatch.setenv("LABCTL_CLUSTERS", value.format(k=kubeconfig))
    with pytest.raises(ValidationError, match=message.format(k=kubeconfig).replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        Settings()


def test_labctl_clusters_refuses_the_single_cluster_settings_beside_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "k.yaml"
    kubeconfig.write_text("{}")
    monkeypatch.setenv("LABCTL_CLUSTERS", f"a={kubeconfig}")
    with pytest.raises(ValidationError, match="unset LABCTL_KUBECONFIG and LABCTL_KUBE_LEARNER_SERVER"):
        Settings(kubeconfig=kubeconfig)
