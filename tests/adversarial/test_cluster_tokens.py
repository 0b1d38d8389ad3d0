"""Playing the learner across clusters: the kubeconfig labctl issued for a sandbox in cluster ``a`` opens nothing in
cluster ``b``, whichever server it is pointed at, and cannot reach a sandbox of ``b`` by its namespace.

The token is a TokenRequest token of the sandbox's ServiceAccount, signed by ``a``'s service-account key: ``b``'s
apiserver does not know that key and answers 401, with the real kubectl (the control: the same kubeconfig works on
``a``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.localcluster.cluster import LocalCluster
from tests.support.server import Server
from tests.support.two_clusters import Pair, labs


@pytest.fixture(scope="module")
def sessions(cluster_pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("cluster-tokens")
    labs_dir, manifests = labs(tmp)
    srv = Server(data_dir=tmp / "data", kubeconfig=None,
                 extra_env={**cluster_pair.env(), "LABCTL_LABS_DIR": str(labs_dir),
                            "LABCTL_MANIFESTS_DIR": str(manifests)})
    srv.data_dir.mkdir()
    srv.start()
    made: dict[str, Any] = {}
    with srv.client() as c:
        # a is the cheaper: two tiny sandboxes fill it, the third goes to b.
        for learner in ("mallory", "alice", "bob"):
            r = c.post("/v1/sessions", json={"lab_id": "tiny-web", "learner_id": learner})
            assert r.status_code == 201, r.text
            made[learner] = r.json()
        made["kubeconfig"] = c.get(f"/v1/sessions/{made['mallory']['id']}/kubeconfig").text
    assert made["mallory"]["cluster"] == "a" and made["bob"]["cluster"] == "b"
    yield made
    srv.close()


def _kubectl(cluster: LocalCluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.tools.kubectl), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "KUBECONFIG": ""}, check=False)


def _pointed_at(kubeconfig: str, cluster: LocalCluster, path: Path) -> Path:
    """The learner's kubeconfig with its server (and CA) replaced by ``cluster``'s: the learner's own edit."""
    doc = yaml.safe_load(kubeconfig)
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    doc["clusters"][0]["cluster"] = {"server": admin["server"], "insecure-skip-tls-verify": True}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_learners_kubeconfig_works_in_its_own_cluster(sessions: dict[str, Any], cluster_pair: Pair,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(sessions["kubeconfig"])
    own = _kubectl(cluster_pair.a, path, "get", "deployments", "-o", "name")
    assert own.returncode == 0 and "deployment.apps/web" in own.stdout, own.stderr


@pytest.mark.parametrize("namespace_of", ["mallory", "bob"])
def test_a_token_of_cluster_a_is_refused_by_cluster_b(sessions: dict[str, Any], cluster_pair: Pair, tmp_path: Path,
                                                      namespace_of: str) -> None:
    path = _pointed_at(sessions["kubeconfig"], cluster_pair.b, tmp_path / "to-b.yaml")
    namespace = sessions[namespace_of]["namespace"]  # its own namespace's name, or b's sandbox of another learner
    for args in (("get", "pods", "-n", namespace), ("auth", "can-i", "--list", "-n", namespace),
                 ("create", "configmap", "x", "-n", namespace, "--from-literal=a=b")):
        answer = _kubectl(cluster_pair.b, path, *args)
        assert answer.returncode != 0, (args, answer.stdout)
        assert "Unauthorized" in answer.stderr or "must be logged in" in answer.stderr, (args, answer.stderr)


def test_a_sandbox_of_b_is_not_in_cluster_a(sessions: dict[str, Any], cluster_pair: Pair, tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(sessions["kubeconfig"])
    other = _kubectl(cluster_pair.a, path, "get", "pods", "-n", sessions["bob"]["namespace"])
    assert other.returncode != 0 and "Forbidden" in other.stderr, other.stderr
    assert _kubectl(cluster_pair.a, cluster_pair.a.kubeconfig, "get", "namespace",
                    sessions["bob"]["namespace"]).returncode != 0  # the namespace exists in b only
