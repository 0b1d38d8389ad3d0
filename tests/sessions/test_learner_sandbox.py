"""A learner's sandbox seen through the kubeconfig labctl issues, with the real kubectl and the real apiserver."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from tests.support.server import Server
from tests.support.wait import eventually


@pytest.fixture(scope="module")
def two_sessions(server: Server) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    with server.client() as c:
        a = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "ada"})
        b = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "grace"})
        assert a.status_code == 201, a.text
        assert b.status_code == 201, b.text
        yield a.json(), b.json()


@pytest.fixture(scope="module")
def learner_kubeconfig(server: Server, two_sessions: tuple[dict[str, Any], dict[str, Any]],
                       tmp_path_factory: pytest.TempPathFactory) -> Path:
    with server.client() as c:
        r = c.get(f"/v1/sessions/{two_sessions[0]['id']}/kubeconfig")
    assert r.status_code == 200, r.text
    path = tmp_path_factory.mktemp("learner") / "kubeconfig.yaml"
    path.write_text(r.text)
    return path


@pytest.fixture
def as_learner(local_cluster: LocalCluster, learner_kubeconfig: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    # A bare environment, as on a learner's laptop: only the kubeconfig labctl issued, HOME in a scratch dir.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(local_cluster.tools.kubectl), "--kubeconfig", str(learner_kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, timeout=60, env=env)
    return run


def _deployment(name: str, cpu: str = "100m", replicas: int = 1) -> str:
    pod_security = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"name": "app", "image": "registry.k8s.io/pause:3.10",
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                 "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}, "limits": {"cpu": cpu, "memory": "64Mi"}}}
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"securityContext": pod_security, "containers": [container]}}}})


def _pod(name: str, cpu: str) -> str:
    doc = yaml.safe_load(_deployment(name, cpu))["spec"]["template"]
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": doc["spec"]})


def test_kubeconfig_targets_the_session_namespace(learner_kubeconfig: Path,
                                                   two_sessions: tuple[dict[str, Any], ...]) -> None:
    cfg = yaml.safe_load(learner_kubeconfig.read_text())
    assert cfg["contexts"][0]["context"]["namespace"] == two_sessions[0]["namespace"]
    assert cfg["users"][0]["user"]["token"]
    assert cfg["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")


def test_learner_can_deploy_in_own_namespace_and_read_node_labels(as_learner, kube: client.ApiClient,  # type: ignore[no-untyped-def]
                                                                  two_sessions: tuple[dict[str, Any], ...]) -> None:
    created = as_learner("apply", "-f", "-", stdin=_deployment("mine"))
    assert created.returncode == 0, created.stderr
    ns = two_sessions[0]["namespace"]
    eventually(lambda: client.AppsV1Api(kube).read_namespaced_deployment("mine", ns).status.ready_replicas == 1,
               timeout=60)
    nodes = as_learner("get", "nodes", "-L", "karpenter.sh/capacity-type", "-o", "json")
    assert nodes.returncode == 0, nodes.stderr
    labels = [n["metadata"]["labels"] for n in json.loads(nodes.stdout)["items"]]
    assert any(lb.get("karpenter.sh/capacity-type") == "spot" for lb in labels)


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (("get", "pods", "-n", "{other}"), None, "forbidden"),
        (("apply", "-n", "{other}", "-f", "-"), "deployment", "forbidden"),
        (("patch", "resourcequota", "sandbox", "-p", '{"spec":{"hard":{"pods":"1000"}}}'), None, "forbidden"),
        (("delete", "limitrange", "sandbox"), None, "forbidden"),
        (("patch", "rolebinding", "learner", "-p", '{"metadata":{"labels":{"x":"y"}}}'), None, "forbidden"),
        (("delete", "networkpolicy", "deny-from-other-namespaces"), None, "forbidden"),
        (("create", "namespace", "learner-made"), None, "forbidden"),
        (("create", "clusterrole", "mine", "--verb=get", "--resource=pods"), None, "forbidden"),
        (("apply", "-f", "-"), "greedy-pod", "exceeded quota"),
    ],
    ids=["read-other-ns", "write-other-ns", "edit-quota", "delete-limitrange", "edit-rolebinding",
         "delete-netpol", "create-namespace", "create-clusterrole", "exceed-quota"],
)
def test_learner_is_refused(as_learner, two_sessions: tuple[dict[str, Any], ...], args: tuple[str, ...],  # type: ignore[no-untyped-def]
                            stdin: str | None, expected: str) -> None:
    other = two_sessions[1]["namespace"]
    # 3 CPUs: within the LimitRange's per-container max (the whole quota), over what the starter leaves free.
    body = {"deployment": _deployment("intruder"), "greedy-pod": _pod("greedy", cpu="3")}.get(stdin or "")
    proc = as_learner(*(a.replace("{other}", other) for a in args), stdin=body)
    assert proc.returncode != 0
    assert expected in proc.stderr.lower()


def test_learner_may_read_but_not_change_its_quota(as_learner) -> None:  # type: ignore[no-untyped-def]
    proc = as_learner("get", "resourcequota", "sandbox", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spec"]["hard"]


def test_namespace_is_labelled_annotated_and_guarded(kube: client.ApiClient,
                                                      two_sessions: tuple[dict[str, Any], ...]) -> None:
    session = two_sessions[0]
    core = client.CoreV1Api(kube)
    ns = core.read_namespace(session["namespace"])
    labels, annotations = ns.metadata.labels, ns.metadata.annotations
    assert labels["labctl.dev/session"] == session["id"]
    assert labels["labctl.dev/lab"] == "tag-for-showback"
    assert labels["labctl.dev/learner"] == "ada"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert annotations["labctl.dev/expires-at"].startswith(session["expires_at"][:16])
    assert float(annotations["labctl.dev/budget-usd"]) == session["budget_usd"]
    policies = client.NetworkingV1Api(kube).list_namespaced_network_policy(session["namespace"]).items
    assert sorted(p.metadata.name for p in policies) == ["deny-from-other-namespaces", "egress"]
    quota = core.read_namespaced_resource_quota("sandbox", session["namespace"])
    assert quota.status.hard  # computed by the controller-manager before the session said ready


def test_starter_workloads_are_seeded_and_run(kube: client.ApiClient,
                                               two_sessions: tuple[dict[str, Any], ...]) -> None:
    ns = two_sessions[1]["namespace"]
    deployments = client.AppsV1Api(kube).list_namespaced_deployment(ns).items
    assert deployments, "the lab's starter Deployments should be in the sandbox"
    assert all(d.metadata.labels["labctl.dev/session"] == two_sessions[1]["id"] for d in deployments)
    eventually(lambda: all((d.status.ready_replicas or 0) == d.spec.replicas
                           for d in client.AppsV1Api(kube).list_namespaced_deployment(ns).items), timeout=90)
