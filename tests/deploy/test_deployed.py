"""labctl deployed with its own least RBAC: the base applied to the real control plane, then a real ``labctl serve``
running as the ServiceAccount ``labctl`` (a TokenRequest token, not cluster-admin) through a whole session lifecycle;
and, one rule at a time taken out of its ClusterRoles, the operation that needs the rule failing clearly, never 5xx.

One ``labctl serve`` for the module. The lab is ``tag-for-showback`` (light; it has graders and a demand model, so the
sweep and the grading-window replay write kwok usage objects).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import usage
from labctl.providers.kubernetes.client import NO_CLUSTER, api_client, ping
from labctl.providers.kubernetes.leader import KubernetesLeader, LeaseError
from tests.deploy import world
from tests.support.server import Server
from tests.support.wait import eventually, namespace_gone

LAB = "tag-for-showback"
LABCTL = str(Path(sys.executable).parent / "labctl")
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def deployed(local_cluster: LocalCluster) -> Iterator[str]:
    """The base applied (kubectl apply -k) and its Deployment's two pods Running (kwok runs no containers)."""
    applied = world.apply_base(local_cluster)
    try:
        yield applied
    finally:
        world.remove_base(local_cluster)


@pytest.fixture(scope="module")
def learner_server(local_cluster: LocalCluster) -> str:
    """The apiserver under another name its certificate carries: what LABCTL_KUBE_LEARNER_SERVER gives learners."""
    server = yaml.safe_load(local_cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return str(server).replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def as_labctl(deployed: str, local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world.service_account_kubeconfig(local_cluster, tmp_path_factory.mktemp("sa") / "labctl.kubeconfig")


@pytest.fixture(scope="module")
def service(as_labctl: Path, learner_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("serve"), kubeconfig=as_labctl,
                 extra_env={"LABCTL_KUBE_LEARNER_SERVER": learner_server}).start()
    yield srv
    srv.close()


def sweep_once(service: Server) -> subprocess.CompletedProcess[str]:
    """``labctl sweep --once`` on the service's store and kubeconfig: the meter, the timers, the budget policy."""
    return subprocess.run([LABCTL, "sweep", "--once", "-o", "json"], env=service.env(), capture_output=True,
                          text=True, timeout=180)


def start(service: Server, learner: str) -> dict[str, Any]:
    with service.client() as c:
        r = c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": learner})
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


# -- the base --------------------------------------------------------------------------------------------------------


def test_the_base_is_accepted_and_its_pods_run(deployed: str, kube: client.ApiClient) -> None:
    for made in ("namespace/labctl", "serviceaccount/labctl", "clusterrole.rbac.authorization.k8s.io/labctl-controller",
                 "clusterrole.rbac.authorization.k8s.io/labctl-learner-grants", "configmap/labctl-settings",
                 "service/labctl", "deployment.apps/labctl", "poddisruptionbudget.policy/labctl"):
        assert made in deployed, deployed
    # Pod Security `restricted` on the namespace admitted the pods: the securityContext meets it.
    pods = eventually(lambda: [p for p in client.CoreV1Api(kube).list_namespaced_pod(
        world.NAMESPACE, label_selector="app.kubernetes.io/name=labctl").items if p.status.phase == "Running"],
        timeout=90)
    assert len(pods) == 2
    assert {p.spec.service_account_name for p in pods} == {"labctl"}
    status = eventually(lambda: (d := client.AppsV1Api(kube).read_namespaced_deployment(
        "labctl", world.NAMESPACE).status).available_replicas == 2 and d, timeout=90)
    assert status.ready_replicas == 2


def test_the_grader_jail_component_passes_the_apiservers_validation(deployed: str, local_cluster: LocalCluster,
                                                                    tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (tmp_path / "base").symlink_to(world.BASE)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../base"], "components": ["../base/grader-jail"]}))
    done = local_cluster.kubectl(["apply", "-k", str(overlay), "--dry-run=server"], check=False)
    assert done.returncode == 0, done.stderr
    # The control: the apiserver does validate these fields (an unmasked /proc without a user namespace is refused).
    rendered = local_cluster.kubectl(["kustomize", str(overlay)]).stdout
    deployment = next(d for d in yaml.safe_load_all(rendered) if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["hostUsers"] = True
    refused = local_cluster.kubectl(["apply", "--dry-run=server", "-f", "-"], stdin=yaml.safe_dump(deployment),
                                    check=False)
    assert refused.returncode != 0 and "hostUsers" in refused.stderr, refused.stderr


def test_in_cluster_configuration_talks_as_the_pods_service_account(as_labctl: Path, tmp_path: Path) -> None:
    """What a pod has: the token and CA files, KUBERNETES_SERVICE_HOST/PORT; no kubeconfig."""
    cluster = yaml.safe_load(as_labctl.read_text())
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(cluster["users"][0]["user"]["token"])
    (mounted / "ca.crt").write_bytes(base64.b64decode(
        cluster["clusters"][0]["cluster"]["certificate-authority-data"]))
    host, port = cluster["clusters"][0]["cluster"]["server"].removeprefix("https://").rsplit(":", 1)
    pod_env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    assert ping(None, service_account_dir=mounted, environ=pod_env).startswith("v1.")
    with api_client(None, service_account_dir=mounted, environ=pod_env) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview(metadata=client.V1ObjectMeta()))
        assert review.status.user_info.username == world.IDENTITY
        with pytest.raises(ApiException) as refused:  # as labctl, not as an admin: no other ClusterRole
            client.RbacAuthorizationV1Api(api).read_cluster_role("cluster-admin", _request_timeout=10)
        assert refused.value.status == 403
    with pytest.raises(RuntimeError) as outside:  # not in a pod and no kubeconfig: what to set
        ping(None, service_account_dir=tmp_path / "missing", environ={})
    assert NO_CLUSTER in str(outside.value)


# -- a whole session as labctl's ServiceAccount -------------------------------------------------------------------


def test_a_whole_session_lifecycle_under_the_least_role(service: Server, kube: client.ApiClient, kubectl: Any,
                                                        learner_server: str, tmp_path: Path) -> None:
    apps = client.AppsV1Api(kube)
    session = start(service, "deployed-ada")
    sid, ns = session["id"], session["namespace"]
    assert session["state"] == "ready", session
    starters = {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items}
    assert starters

    with service.client() as c:
        # The learner's kubeconfig: a TokenRequest labctl made, naming the address learners reach.
        kubeconfig = c.get(f"/v1/sessions/{sid}/kubeconfig")
        assert kubeconfig.status_code == 200, kubeconfig.text
        learner = yaml.safe_load(kubeconfig.text)
        assert learner["clusters"][0]["cluster"]["server"] == learner_server
        path = tmp_path / "learner.kubeconfig"
        path.write_text(kubeconfig.text)
        pods = kubectl("get", "deployments", "-o", "name", kubeconfig=path, check=True)
        assert {f"deployment.apps/{name}" for name in starters} == set(pods.stdout.split())

        # The meter: usage written into kwok's objects, the sandbox priced.
        swept = sweep_once(service)
        assert swept.returncode == 0, swept.stdout + swept.stderr
        report = json.loads(swept.stdout)
        assert report["metered"] >= 1 and report["errors"] is None, report
        usages = client.CustomObjectsApi(kube).list_cluster_custom_object(
            usage.GROUP, usage.VERSION, usage.PLURAL, label_selector=f"{usage.NAMESPACE_LABEL}={ns}")["items"]
        assert usages, "the sweep wrote no usage objects"
        assert c.get(f"/v1/sessions/{sid}").json()["cost"]["burn_rate_usd_per_hour"] > 0

        suspended = c.post(f"/v1/sessions/{sid}/suspend")
        assert suspended.status_code == 200 and suspended.json()["state"] == "suspended", suspended.text
        assert {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items} == dict.fromkeys(
            starters, 0)
        resumed = c.post(f"/v1/sessions/{sid}/resume")
        assert resumed.status_code == 200 and resumed.json()["state"] == "ready", resumed.text
        assert {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(ns).items} == starters

        submitted = c.post(f"/v1/sessions/{sid}/submissions")
        assert submitted.status_code == 202, submitted.text
        sub_id = submitted.json()["id"]
        graded = eventually(lambda: (s := c.get(f"/v1/submissions/{sub_id}").json())["state"] != "grading" and s,
                            timeout=120, interval=1)
        assert graded["state"] == "graded", graded
        assert graded["max_score"] > 0 and graded["checks"], graded
        assert eventually(lambda: c.get(f"/v1/sessions/{sid}").json()["state"] == "ready", timeout=30)

        before = client.CoreV1Api(kube).read_namespace(ns).metadata.uid
        reset = c.post(f"/v1/sessions/{sid}/reset")
        assert reset.status_code == 200 and reset.json()["state"] == "ready", reset.text
        assert client.CoreV1Api(kube).read_namespace(ns).metadata.uid != before

        stopped = c.delete(f"/v1/sessions/{sid}")
        assert stopped.status_code == 202, stopped.text
        assert eventually(lambda: c.get(f"/v1/sessions/{sid}").json()["state"] == "terminated", timeout=120)
        kinds = [e["kind"] for e in c.get(f"/v1/sessions/{sid}/events").json()]
    assert "failed" not in kinds and "cleanup_failed" not in kinds, kinds
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(kube).read_namespace(ns)
    assert gone.value.status == 404
    assert client.RbacAuthorizationV1Api(kube).list_cluster_role_binding(
        label_selector=f"labctl.dev/session={sid}").items == []


# -- controls: one rule missing -------------------------------------------------------------------------------------


def _failed_start(service: Server, learner: str, kube: client.ApiClient) -> str:
    """A start that Kubernetes refuses: no 5xx, the session ``failed`` with the refusal as its reason, nothing left
    in the cluster, and its kubeconfig a problem document. Returns the reason."""
    session = start(service, learner)
    assert session["state"] == "failed", session
    with service.client() as c:
        events = c.get(f"/v1/sessions/{session['id']}/events").json()
        is_problem(c.get(f"/v1/sessions/{session['id']}/kubeconfig"), 409)
    reason = next(e["detail"]["reason"] for e in events if e["kind"] == "failed")
    assert "Kubernetes refused the request (403 Forbidden)" in reason, reason
    assert eventually(lambda: namespace_gone(kube, session["namespace"]), timeout=120)
    return str(reason)


def test_without_rolebindings_the_start_fails_clearly(service: Server, kube: client.ApiClient) -> None:
    probe = lambda: world.allowed(kube, verb="patch", resource="rolebindings",  # noqa: E731
                                  group="rbac.authorization.k8s.io", name="learner")
    with world.without_rule(kube, "labctl-controller", resource="rolebindings", group="rbac.authorization.k8s.io",
                            probe=probe):
        reason = _failed_start(service, "no-rolebindings", kube)
    assert 'cannot patch resource "rolebindings"' in reason, reason
    assert start(service, "after-rolebindings")["state"] == "ready"  # the rule back: it works again


def test_without_the_learners_rules_the_escalation_check_refuses_the_role(service: Server,
                                                                          kube: client.ApiClient) -> None:
    """labctl may write a Role only with rules it holds itself: without Secrets in labctl-learner-grants, the
    learner's Role (which grants them) is refused by Kubernetes' RBAC escalation check."""
    probe = lambda: world.allowed(kube, verb="deletecollection", resource="secrets")  # noqa: E731
    with world.without_rule(kube, "labctl-learner-grants", resource="secrets", probe=probe):
        reason = _failed_start(service, "no-secret-grants", kube)
    assert "is attempting to grant RBAC permissions not currently held" in reason, reason
    assert "secrets" in reason, reason


def test_without_patching_quotas_a_suspend_is_a_problem_and_changes_nothing(service: Server,
                                                                            kube: client.ApiClient) -> None:
    session = start(service, "no-quota-patch")
    assert session["state"] == "ready", session
    probe = lambda: world.allowed(kube, verb="patch", resource="resourcequotas",  # noqa: E731
                                  namespace=session["namespace"], name="sandbox")
    with world.without_rule(kube, "labctl-controller", resource="resourcequotas", verbs=frozenset({"patch"}),
                            probe=probe), service.client() as c:
        body = is_problem(c.post(f"/v1/sessions/{session['id']}/suspend"), 409)
        assert 'cannot patch resource "resourcequotas"' in body["detail"], body
        assert c.get(f"/v1/sessions/{session['id']}").json()["state"] == "ready"
    quota = client.CoreV1Api(kube).read_namespaced_resource_quota("sandbox", session["namespace"])
    assert quota.spec.hard["pods"] != "0"


def test_without_token_requests_the_kubeconfig_is_a_problem(service: Server, kube: client.ApiClient) -> None:
    session = start(service, "no-token-requests")
    assert session["state"] == "ready", session
    probe = lambda: world.allowed(kube, verb="create", resource="serviceaccounts",  # noqa: E731
                                  subresource="token", namespace=session["namespace"], name="learner")
    with world.without_rule(kube, "labctl-controller", resource="serviceaccounts/token", probe=probe), \
            service.client() as c:
        body = is_problem(c.get(f"/v1/sessions/{session['id']}/kubeconfig"), 409)
        assert 'cannot create resource "serviceaccounts/token"' in body["detail"], body
    with service.client() as c:
        assert c.get(f"/v1/sessions/{session['id']}/kubeconfig").status_code == 200


def test_without_kwok_usage_objects_the_sweep_names_the_refusal(service: Server, kube: client.ApiClient) -> None:
    session = start(service, "no-usage-objects")
    assert session["state"] == "ready", session
    probe = lambda: world.allowed(kube, verb="patch", resource="clusterresourceusages",  # noqa: E731
                                  group=usage.GROUP, namespace="")
    with world.without_rule(kube, "labctl-controller", resource="clusterresourceusages", group=usage.GROUP,
                            probe=probe):
        refused = sweep_once(service)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    errors = json.loads(refused.stdout)["errors"]
    assert any(session["id"] in e and "clusterresourceusages" in e and "403" in e for e in errors), errors
    with service.client() as c:  # the session is untouched by the failed reading (fail-closed counts it)
        assert c.get(f"/v1/sessions/{session['id']}").json()["state"] == "ready"


def test_the_service_talks_as_labctls_service_account(service: Server) -> None:
    """The control of the controls: the service's kubeconfig is the ServiceAccount's token, not the admin's."""
    with api_client(Path(service.env()["LABCTL_KUBECONFIG"])) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview(metadata=client.V1ObjectMeta()))
    assert review.status.user_info.username == world.IDENTITY


def test_the_leader_lease_is_labctls_to_take_and_no_other(as_labctl: Path, deployed: str) -> None:
    """The replicas' leader lock under the least role: the Lease labctl-sweeps in labctl's namespace is taken and
    renewed; a Lease elsewhere is refused."""
    now = datetime.now(UTC)
    lock = KubernetesLeader(as_labctl, name="labctl-sweeps", namespace="labctl", holder="replica-a")
    assert lock.acquire(ttl=timedelta(seconds=15), now=now)
    assert lock.acquire(ttl=timedelta(seconds=15), now=now + timedelta(seconds=5))  # renewed
    other = KubernetesLeader(as_labctl, name="labctl-sweeps", namespace="default", holder="replica-a")
    with pytest.raises(LeaseError, match="403"):
        other.acquire(ttl=timedelta(seconds=15), now=now)
    lock.release(now=now + timedelta(seconds=6))
