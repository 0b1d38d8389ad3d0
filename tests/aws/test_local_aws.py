"""`labctl serve` with aws labs enabled: the local AWS stand-in, readiness per provider, and a start refused with a
503 naming the provider when its cloud does not answer (nothing recorded), while Kubernetes labs still start."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT
from tests.support import aws
from tests.support.server import ADMIN_TOKEN, Server

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _labs(tmp_path: Path) -> Path:
    """An aws lab with guardrails beside a shipped Kubernetes lab."""
    labs = tmp_path / "labs"
    (labs / "aws-test").mkdir(parents=True)
    lab = aws.aws_lab(guardrails={"required_tags": ["team"], "on_violation": "stop"})
    (labs / "aws-test" / "lab.yaml").write_text(yaml.safe_dump(lab.model_dump(mode="json", exclude={"id"},
                                                                              exclude_none=True)))
    shutil.copytree(REPO_ROOT / "labs" / "tag-for-showback", labs / "tag-for-showback")
    return labs


def _refuses(url: str) -> bool:
    host, _, port = url.removeprefix("http://").partition(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("LABCTL_AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # --local-aws must bring its own endpoint and keys
    return {"LABCTL_LABS_DIR": str(_labs(tmp_path)), "LABCTL_PROVIDERS": "kubernetes,aws",
            "LABCTL_FLEET_FILE": str(REPO_ROOT / "labs" / "fleet.yaml")}


def test_local_aws_serves_the_aws_labs_and_stops_with_labctl(local_cluster: LocalCluster, tmp_path: Path,
                                                             env: dict[str, str]) -> None:
    srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig, extra_env=env,
                 args=["--local-aws"]).start()
    try:
        with srv.client() as http:
            ready = http.get("/readyz").json()
            assert ready["status"] == "ready" and set(ready["checks"]) == {"store", "cluster", "aws"}
            detail = ready["checks"]["aws"]["detail"]
            assert "at http://127.0.0.1:" in detail
            moto_url = detail.rpartition(" at ")[2]
            started = http.post("/v1/sessions", json={"lab_id": "aws-test", "learner_id": "ada"})
            assert started.status_code == 201, started.text
            assert started.json()["state"] == "ready"
            assert aws.env_of(http.get(f"/v1/sessions/{started.json()['id']}/kubeconfig").text)[
                "AWS_ENDPOINT_URL"] == moto_url
    finally:
        srv.stop()
    assert srv.proc is not None and srv.proc.returncode == 0
    assert _refuses(moto_url)  # moto went with labctl
    assert "stopped the local AWS stand-in" in (tmp_path / "serve.log").read_text()


def test_a_cloud_that_does_not_answer_refuses_only_its_labs(local_cluster: LocalCluster, tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    dead = {**env, "LABCTL_AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing"}
    srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig, extra_env=dead).start(wait_ready=False)
    try:
        with srv.client() as http:
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert {name: c["ok"] for name, c in ready.json()["checks"].items()} == {
                "store": True, "cluster": True, "aws": False}

            refused = http.post("/v1/sessions", json={"lab_id": "aws-test", "learner_id": "ada"})
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            detail = refused.json()["detail"]
            assert detail.startswith("the aws backend is unreachable, so no sandbox can be made now for lab aws-test")
            assert "127.0.0.1" not in detail
            assert http.get("/v1/sessions", params={"lab_id": "aws-test"}).json() == []  # nothing recorded

            kube = http.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "ada"})
            assert kube.status_code == 201, kube.text
        srv.stop_all_sessions()
    finally:
        srv.stop()
