"""The sandbox's admission policy, played by the learner with the kubeconfig labctl issues and the real kubectl.

The ValidatingAdmissionPolicy ``labctl-sandbox`` (manifests/sandbox/05-admission.yaml.j2) refuses, for requests of
the sandbox's ServiceAccounts: pods (and pod templates of every workload kind) with ``nodeName`` or a
``priorityClassName`` the lab does not name; Services with ``externalIPs``, of type ExternalName, or of a type the
lab does not allow; Secrets of type ``kubernetes.io/service-account-token``. Host namespaces and hostPath are refused
by Pod Security (the namespace enforces ``restricted``). labctl's own identity is not judged.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, dynamic

from labctl.catalog import loader
from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import render
from tests.support.sandbox import (
    MANIFESTS,
    LearnerSandbox,
    cronjob,
    deployment,
    lab_variant,
    learner_sandbox,
    pod,
    service,
    shipped_lab,
)
from tests.support.wait import eventually

POLICY = render.ADMISSION_POLICY
LOW_PRIORITY = "labctl-test-low"
SA_TOKEN_SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                   "metadata": {"name": "forever", "annotations": {"kubernetes.io/service-account.name": "learner"}}}


@pytest.fixture(scope="module")
def sandbox(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerSandbox]:
    """A sandbox of a shipped lab with the lab defaults: ClusterIP Services only, no priority classes."""
    lab = lab_variant("tag-for-showback")
    with learner_sandbox(local_cluster, lab, tmp_path_factory.mktemp("admission")) as box:
        yield box


@pytest.fixture(scope="module")
def permissive(local_cluster: LocalCluster, kube: client.ApiClient,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerSandbox]:
    """A lab that allows NodePort Services and one PriorityClass (made here by the admin)."""
    scheduling = client.SchedulingV1Api(kube)
    scheduling.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name=LOW_PRIORITY),
                                                            value=10))
    lab = lab_variant("tag-for-showback", priority_classes=[LOW_PRIORITY],
                      network={"service_types": ["ClusterIP", "NodePort"]},
                      quota={"services.nodeports": "3", "services.loadbalancers": "1"})
    try:
        with learner_sandbox(local_cluster, lab, tmp_path_factory.mktemp("permissive")) as box:
            yield box
    finally:
        scheduling.delete_priority_class(LOW_PRIORITY)


def refused_by_policy(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0, "the learner's request was admitted"
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in proc.stderr, proc.stderr
    assert needle in proc.stderr, proc.stderr


# --- what the policy refuses ------------------------------------------------------------------------------------------


def test_service_account_token_secret_is_refused_but_an_opaque_secret_is_not(sandbox: LearnerSandbox) -> None:
    refused_by_policy(sandbox.apply(SA_TOKEN_SECRET), "kubernetes.io/service-account-token")
    opaque = sandbox.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                            "stringData": {"password": "x"}})
    assert opaque.returncode == 0, opaque.stderr


@pytest.mark.parametrize("make", [
    lambda: pod("pinned", nodeName="cpu-ondemand-0"),
    lambda: deployment("pinned", nodeName="cpu-ondemand-0"),
    lambda: cronjob("pinned", nodeName="cpu-ondemand-0"),
], ids=["pod", "deployment-template", "cronjob-template"])
def test_node_name_is_refused_in_pods_and_pod_templates(sandbox: LearnerSandbox, make) -> None:  # type: ignore[no-untyped-def]
    refused_by_policy(sandbox.apply(make()), "placed by the scheduler")


def test_a_scheduled_pod_can_still_be_relabelled(sandbox: LearnerSandbox, kube: client.ApiClient) -> None:
    """The scheduler sets nodeName on every pod: an update of a running pod is not a request to place it."""
    created = sandbox.apply(pod("plain"))
    assert created.returncode == 0, created.stderr
    core = client.CoreV1Api(kube)
    eventually(lambda: core.read_namespaced_pod("plain", sandbox.namespace).spec.node_name, timeout=60)
    relabelled = sandbox.kubectl("label", "pod", "plain", "team=storefront")
    assert relabelled.returncode == 0, relabelled.stderr


@pytest.mark.parametrize("make", [
    lambda: pod("urgent", priorityClassName="system-node-critical"),
    lambda: deployment("urgent", priorityClassName="system-cluster-critical"),
], ids=["pod", "deployment-template"])
def test_priority_classes_the_lab_does_not_name_are_refused(sandbox: LearnerSandbox, make) -> None:  # type: ignore[no-untyped-def]
    refused_by_policy(sandbox.apply(make()), "is not one this lab allows (allowed: none)")


def test_a_priority_class_the_lab_names_is_admitted(permissive: LearnerSandbox) -> None:
    admitted = permissive.apply(pod("low", priorityClassName=LOW_PRIORITY))
    assert admitted.returncode == 0, admitted.stderr
    refused_by_policy(permissive.apply(pod("urgent", priorityClassName="system-node-critical")),
                      f"(allowed: {LOW_PRIORITY})")


@pytest.mark.parametrize(("spec", "needle"), [
    ({"externalIPs": ["203.0.113.10"]}, "may not set externalIPs"),
    ({"type": "ExternalName", "externalName": "kubernetes.default.svc.cluster.local", "selector": None},
     "may not be of type ExternalName"),
    ({"type": "NodePort"}, "Services of type NodePort are not allowed in this lab (allowed: ClusterIP)"),
    ({"type": "LoadBalancer"}, "Services of type LoadBalancer are not allowed"),
], ids=["external-ips", "external-name", "node-port", "load-balancer"])
def test_services_that_reach_outside_are_refused(sandbox: LearnerSandbox, spec: dict[str, object],
                                                 needle: str) -> None:
    doc = service("web", **spec)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    refused_by_policy(sandbox.apply(doc), needle)


def test_a_cluster_ip_service_cannot_be_turned_into_a_node_port(sandbox: LearnerSandbox) -> None:
    created = sandbox.apply(service("inner"))
    assert created.returncode == 0, created.stderr
    refused_by_policy(sandbox.kubectl("patch", "service", "inner", "-p", '{"spec":{"type":"NodePort"}}'),
                      "Services of type NodePort are not allowed")
    refused_by_policy(sandbox.kubectl("patch", "service", "inner", "-p",
                                      '{"spec":{"externalIPs":["203.0.113.10"]}}'), "externalIPs")


def test_service_types_the_lab_allows_and_types_labctl_made(permissive: LearnerSandbox) -> None:
    """NodePort is allowed by this lab; a LoadBalancer labctl made (a starter's) may be relabelled, not recreated."""
    node_port = permissive.apply(service("np", type="NodePort"))
    assert node_port.returncode == 0, node_port.stderr
    lb = {**service("orphan", type="LoadBalancer"), "metadata": {"name": "orphan", "namespace": permissive.namespace}}
    permissive.provider.apply([lb])  # as labctl applies a lab's starters
    relabelled = permissive.kubectl("label", "service", "orphan", "team=storefront")
    assert relabelled.returncode == 0, relabelled.stderr
    assert permissive.kubectl("delete", "service", "orphan").returncode == 0
    refused_by_policy(permissive.apply(service("orphan", type="LoadBalancer")),
                      "(allowed: ClusterIP, NodePort)")


@pytest.mark.parametrize("spec", [
    {"hostNetwork": True}, {"hostPID": True}, {"hostIPC": True},
    {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
], ids=["hostNetwork", "hostPID", "hostIPC", "hostPath"])
def test_host_namespaces_and_host_paths_are_refused_by_pod_security(sandbox: LearnerSandbox,
                                                                     spec: dict[str, object]) -> None:
    proc = sandbox.apply(pod("host", **spec))
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr


# --- whom the policy judges, and that it holds from the first request ----------------------------------------------


def test_labctl_itself_is_not_judged(sandbox: LearnerSandbox, kube: client.ApiClient) -> None:
    """The admin identity labctl runs as may do what the learner may not (a dry run: nothing is kept)."""
    core = client.CoreV1Api(kube)
    body = {**SA_TOKEN_SECRET, "metadata": {**SA_TOKEN_SECRET["metadata"], "namespace": sandbox.namespace}}
    made = core.create_namespaced_secret(sandbox.namespace, body, dry_run="All")
    assert made.type == "kubernetes.io/service-account-token"


@pytest.mark.parametrize("args", [
    ("delete", "validatingadmissionpolicy", POLICY),
    ("delete", "validatingadmissionpolicybinding", POLICY),
    ("patch", "validatingadmissionpolicybinding", POLICY, "--type=merge", "-p",
     '{"spec":{"validationActions":["Audit"]}}'),
    ("annotate", "namespace", "{ns}", "labctl.dev/allowed-service-types=ClusterIP,LoadBalancer", "--overwrite"),
    ("label", "namespace", "{ns}", "labctl.dev/session-", "--overwrite"),
], ids=["delete-policy", "delete-binding", "audit-only", "widen-parameters", "unbind-namespace"])
def test_the_learner_cannot_loosen_the_policy_or_its_parameters(sandbox: LearnerSandbox, args: tuple[str, ...]) -> None:
    proc = sandbox.kubectl(*(a.replace("{ns}", sandbox.namespace) for a in args))
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr.lower(), proc.stderr


def test_the_policy_is_applied_once_for_all_sandboxes_and_idempotently(sandbox: LearnerSandbox,
                                                                        kube: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(kube)
    policies = dyn.resources.get(api_version="admissionregistration.k8s.io/v1", kind="ValidatingAdmissionPolicy")
    before = dyn.get(policies, name=POLICY)
    assert before.metadata.labels.to_dict() == render.MANAGED_BY  # shared: no session's label
    sandbox.provider.apply([o for o in render.sandbox_objects(sandbox.spec, sandbox.provider.manifests_dir)
                            if o["kind"].startswith("ValidatingAdmissionPolicy")])
    after = dyn.get(policies, name=POLICY)
    assert after.metadata.resourceVersion == before.metadata.resourceVersion  # server-side apply: nothing changed
    assert {m.manager for m in after.metadata.managedFields if m.subresource != "status"} == {"labctl"}
    checked = eventually(lambda: (p := dyn.get(policies, name=POLICY)).status
                         and p.status.observedGeneration == p.metadata.generation and p, timeout=30)
    assert not (checked.status.typeChecking or {}).get("expressionWarnings"), checked.status.typeChecking


def test_a_fresh_policy_holds_from_the_learners_first_request(sandbox: LearnerSandbox, kube: client.ApiClient) -> None:
    """With the policy gone (as on a new cluster), a start makes it and returns only once it judges the sandbox."""
    dyn = dynamic.DynamicClient(kube)
    for kind in ("ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy"):
        dyn.delete(dyn.resources.get(api_version="admissionregistration.k8s.io/v1", kind=kind), name=POLICY)
    eventually(lambda: sandbox.apply(SA_TOKEN_SECRET).returncode == 0, timeout=30)  # unprotected now
    sandbox.kubectl("delete", "secret", "forever")
    sandbox.provider.provision(sandbox.spec)  # a retried start: the quota is ready, only the policy is new
    refused_by_policy(sandbox.apply(SA_TOKEN_SECRET), "kubernetes.io/service-account-token")


def test_the_shipped_labs_allow_no_service_type_beyond_cluster_ip() -> None:
    """idle-hunter's LoadBalancer is a starter labctl makes; no lab lets the learner make one."""
    for lab_id in ("tag-for-showback", "move-batch-to-spot", "gpu-rightsizing", "idle-hunter"):
        lab = shipped_lab(lab_id)
        assert lab.network.service_types == ["ClusterIP"] and lab.priority_classes == [], lab_id


def test_kubectl_debug_node_cannot_land_a_pod_on_a_node(sandbox: LearnerSandbox) -> None:
    """``kubectl debug node/...`` makes a pod with nodeName: with host namespaces Pod Security refuses it; with the
    ``restricted`` profile it passes Pod Security, and the policy refuses its nodeName."""
    debug = ("debug", "node/cpu-ondemand-0", "--image=registry.k8s.io/pause:3.10", "--attach=false")
    legacy = sandbox.kubectl(*debug, "--profile=legacy")
    assert legacy.returncode != 0 and "violates PodSecurity" in legacy.stderr, legacy.stderr
    refused_by_policy(sandbox.kubectl(*debug, "--profile=restricted"), "nodeName cpu-ondemand-0 is set")


@pytest.mark.parametrize("lab_id", ["tag-for-showback", "move-batch-to-spot", "gpu-rightsizing", "idle-hunter"])
def test_each_labs_reference_solution_is_admitted_for_the_learner(local_cluster: LocalCluster, tmp_path: Path,
                                                                  lab_id: str) -> None:
    """What a lab asks of the learner passes the learner's Role, the policy, Pod Security, the LimitRange and the
    quota: its reference solution, applied by the learner in a sandbox with its starter (the deletions its
    ``delete.yaml`` lists for real, then the manifests as a server-side dry run)."""
    lab = shipped_lab(lab_id)
    deletions = MANIFESTS / "labs" / lab_id / "solution" / "delete.yaml"
    refs = (yaml.safe_load(deletions.read_text()) or {}).get("delete", []) if deletions.is_file() else []
    with learner_sandbox(local_cluster, lab, tmp_path, learner="solver") as box:
        for ref in refs:
            deleted = box.kubectl("delete", ref.lower(), "--cascade=foreground", "--wait=true", "--timeout=120s")
            assert deleted.returncode == 0, deleted.stderr
        context = {"namespace": box.namespace, "session_id": box.spec.session_id, "lab_id": lab.id,
                   "learner_id": box.spec.learner_id}
        docs = loader.render_templates(lab.solution, MANIFESTS, context)
        proc = box.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
                           stdin=yaml.safe_dump_all(docs))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("(server dry run)") == len(docs), proc.stdout
