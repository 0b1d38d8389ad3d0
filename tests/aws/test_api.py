"""An AWS lab served by a real `labctl serve` on moto: start, the learner's credentials, a cloud refusal as a problem
document carrying AWS's message, stop."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import yaml

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.aws.sandbox import role_name
from labctl.settings import REPO_ROOT
from tests.support import aws
from tests.support.moto import TEST_ENV
from tests.support.server import ADMIN_TOKEN, Server
from tests.support.wait import eventually

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def served(local_cluster: LocalCluster, moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    labs = tmp_path_factory.mktemp("labs")
    (labs / "aws-test").mkdir()
    lab = aws.aws_lab().model_dump(mode="json", exclude={"id"}, exclude_none=True)
    (labs / "aws-test" / "lab.yaml").write_text(yaml.safe_dump(lab))
    srv = Server(data_dir=tmp_path_factory.mktemp("serve"), kubeconfig=local_cluster.kubeconfig, extra_env={
        **TEST_ENV, "LABCTL_LABS_DIR": str(labs), "LABCTL_FLEET_FILE": str(REPO_ROOT / "labs" / "fleet.yaml"),
        "LABCTL_AWS_ENDPOINT_URL": moto_url, "LABCTL_AWS_REGION": "us-east-1",
        "LABCTL_PROVIDERS": "kubernetes,aws"}).start()
    yield srv
    srv.stop()


def test_an_aws_lab_through_the_api(served: Server, moto_url: str) -> None:
    with httpx.Client(base_url=served.url, headers=AUTH, timeout=60) as http:
        started = http.post("/v1/sessions", json={"lab_id": "aws-test", "learner_id": "ada"})
        assert started.status_code == 201, started.text
        session = started.json()
        assert (session["provider"], session["state"]) == ("aws", "ready")
        sid = session["id"]

        creds = http.get(f"/v1/sessions/{sid}/kubeconfig")
        assert creds.status_code == 200, creds.text
        env = aws.env_of(creds.text)
        assert env["AWS_ENDPOINT_URL"] == moto_url and env["AWS_SESSION_TOKEN"]
        instance = aws.launch(aws.learner_ec2(creds.text), sid, instance_type="g4dn.xlarge", spot=True)

        # the role removed behind labctl's back: AWS's refusal reaches the caller as a problem document, not a 500
        iam = aws.admin_session().client("iam", endpoint_url=moto_url)
        for name in iam.list_role_policies(RoleName=role_name(sid))["PolicyNames"]:
            iam.delete_role_policy(RoleName=role_name(sid), PolicyName=name)
        iam.delete_role(RoleName=role_name(sid))
        refused = http.get(f"/v1/sessions/{sid}/kubeconfig")
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "AWS refused to read the session role (NoSuchEntity)" in refused.json()["detail"]

        assert http.delete(f"/v1/sessions/{sid}").status_code == 202
        eventually(lambda: http.get(f"/v1/sessions/{sid}").json()["state"] == "terminated", timeout=60)
    admin_ec2 = aws.admin_session().client("ec2", endpoint_url=moto_url)
    state = admin_ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "terminated"
