"""The learner's Role, probed as the learner: ``kubectl auth can-i`` and real create / patch attempts.

The Role (manifests/sandbox/30-rbac.yaml.j2) names every resource: the learner writes its workloads and their
configuration, reads quota, limits, network policy, endpoints and metrics, and nothing else. No endpoints or endpoint
slices (a selector-less Service could be pointed anywhere), no ServiceAccount tokens, no pod proxy / exec / attach /
port-forward, nothing in kwok's API groups (its usage objects are what the meter reads), no RBAC, no impersonation.
A frozen sandbox (a submission) keeps the reads and has no write at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labctl.localcluster.cluster import LocalCluster
from tests.support.sandbox import LearnerSandbox, lab_variant, learner_sandbox
from tests.support.wait import eventually

READ = ["get", "list", "watch"]
WRITE = sorted([*READ, "create", "update", "patch", "delete", "deletecollection"])
WORKLOADS = {"pods", "services", "configmaps", "secrets", "persistentvolumeclaims", "deployments.apps",
             "deployments.apps/scale", "statefulsets.apps", "statefulsets.apps/scale", "replicasets.apps",
             "daemonsets.apps", "jobs.batch", "cronjobs.batch", "poddisruptionbudgets.policy",
             "horizontalpodautoscalers.autoscaling", "ingresses.networking.k8s.io"}
READ_ONLY = {"pods/log", "pods/status", "endpoints", "events", "resourcequotas", "limitranges", "serviceaccounts",
             "networkpolicies.networking.k8s.io", "endpointslices.discovery.k8s.io", "events.events.k8s.io"}
# What every authenticated user may do (system:basic-user): ask the apiserver about itself.
SELF_REVIEWS = {"selfsubjectaccessreviews.authorization.k8s.io", "selfsubjectrulesreviews.authorization.k8s.io",
                "selfsubjectreviews.authentication.k8s.io"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "bind", "escalate", "impersonate", "*"}


@pytest.fixture(scope="module")
def sandbox(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerSandbox]:
    with learner_sandbox(local_cluster, lab_variant("move-batch-to-spot"), tmp_path_factory.mktemp("rbac")) as box:
        yield box


def written(rules: list[dict[str, object]]) -> set[str]:
    return {str(r["resource"]) for r in rules if WRITE_VERBS & set(r["verbs"])}  # type: ignore[arg-type]


def test_the_role_lists_every_resource_and_writes_only_workloads(sandbox: LearnerSandbox) -> None:
    rules = sandbox.can_i_list()
    assert not [r for r in rules if r["resource"].startswith("*") or "*" in r["verbs"]], rules
    assert written(rules) == WORKLOADS | SELF_REVIEWS
    verbs = {r["resource"]: r["verbs"] for r in rules}
    assert all(verbs[name] == WRITE for name in WORKLOADS), verbs
    assert all(verbs[name] == READ for name in READ_ONLY), verbs
    assert verbs["pods.metrics.k8s.io"] == ["get", "list"]  # kubectl top pod; metrics.k8s.io has no writes


@pytest.mark.parametrize("question", [
    ("create", "endpoints"), ("patch", "endpoints"), ("create", "endpointslices.discovery.k8s.io"),
    ("create", "serviceaccounts", "--subresource=token"), ("create", "serviceaccounts"),
    ("create", "pods", "--subresource=exec"), ("get", "pods", "--subresource=exec"),
    ("create", "pods", "--subresource=attach"), ("create", "pods", "--subresource=portforward"),
    ("get", "pods", "--subresource=proxy"), ("get", "services", "--subresource=proxy"),
    ("create", "pods", "--subresource=binding"), ("patch", "pods", "--subresource=status"),
    ("create", "pods", "--subresource=ephemeralcontainers"),
    ("create", "resourceusages.kwok.x-k8s.io"), ("patch", "resourceusages.kwok.x-k8s.io"),
    ("create", "clusterresourceusages.kwok.x-k8s.io"), ("create", "metrics.kwok.x-k8s.io"),
    ("create", "stages.kwok.x-k8s.io"), ("create", "attaches.kwok.x-k8s.io"), ("create", "execs.kwok.x-k8s.io"),
    ("create", "pods.metrics.k8s.io"), ("patch", "pods.metrics.k8s.io"), ("create", "nodes.metrics.k8s.io"),
    ("create", "roles"), ("create", "rolebindings"), ("bind", "roles"), ("bind", "clusterroles"),
    ("escalate", "roles"), ("impersonate", "users"), ("impersonate", "serviceaccounts"), ("impersonate", "groups"),
    ("patch", "resourcequotas"), ("delete", "limitranges"), ("create", "networkpolicies.networking.k8s.io"),
    ("patch", "namespaces"), ("create", "validatingadmissionpolicies.admissionregistration.k8s.io"),
    ("patch", "nodes"), ("create", "priorityclasses.scheduling.k8s.io"), ("create", "leases.coordination.k8s.io"),
], ids=lambda q: "-".join(q).replace("--subresource=", ""))
def test_the_learner_may_not(sandbox: LearnerSandbox, question: tuple[str, ...]) -> None:
    proc = sandbox.kubectl("auth", "can-i", *question)
    assert proc.stdout.strip() == "no", (question, proc.stdout, proc.stderr)


ENDPOINTS = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
             "subsets": [{"addresses": [{"ip": "169.254.169.254"}], "ports": [{"port": 80}]}]}
SLICE = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-1",
         "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
         "endpoints": [{"addresses": ["10.96.0.1"]}], "ports": [{"port": 443}]}
USAGE = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ResourceUsage", "metadata": {"name": "forged"},
         "spec": {"usages": [{"usage": {"cpu": {"value": "1m"}, "memory": {"value": "1Mi"}}}]}}


@pytest.mark.parametrize(("doc", "what"), [
    (ENDPOINTS, 'cannot create resource "endpoints"'),
    (SLICE, 'cannot create resource "endpointslices"'),
    (USAGE, 'cannot create resource "resourceusages"'),
], ids=["endpoints", "endpointslice", "kwok-usage"])
def test_forging_endpoints_or_usage_is_forbidden(sandbox: LearnerSandbox, doc: dict[str, object], what: str) -> None:
    proc = sandbox.create(doc)
    assert proc.returncode != 0
    assert what in proc.stderr, proc.stderr


@pytest.mark.parametrize("args", [
    ("create", "token", "learner"),
    ("create", "token", "default"),
    ("create", "rolebinding", "me-admin", "--clusterrole=admin", "--serviceaccount={ns}:learner"),
    ("create", "role", "more", "--verb=*", "--resource=*"),
    ("get", "pods", "--as=system:admin"),
    ("get", "pods", "--as=system:serviceaccount:kube-system:default"),
    ("patch", "limitrange", "sandbox", "-p", '{"spec":{"limits":[{"type":"Container","min":{"cpu":"0"}}]}}'),
    ("delete", "networkpolicy", "egress"),
], ids=["token-for-itself", "token-for-default", "bind-admin", "make-role", "impersonate-admin",
        "impersonate-sa", "zero-limitrange-min", "delete-egress-policy"])
def test_escalation_attempts_are_forbidden(sandbox: LearnerSandbox, args: tuple[str, ...]) -> None:
    proc = sandbox.kubectl(*(a.replace("{ns}", sandbox.namespace) for a in args))
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr.lower(), proc.stderr


def test_a_frozen_sandbox_reads_the_same_resources_and_writes_nothing(sandbox: LearnerSandbox) -> None:
    editable = {r["resource"] for r in sandbox.can_i_list()}
    sandbox.provider.freeze(sandbox.spec)
    try:
        # The authorizer sees the new Role through its informer: a moment after the apply.
        def read_only() -> list[dict[str, object]] | None:
            rules = sandbox.can_i_list()
            return rules if written(rules) == SELF_REVIEWS else None

        frozen = eventually(read_only, timeout=15)
        assert not [r for r in frozen if r["resource"].startswith("*") or "*" in r["verbs"]], frozen
        assert {r["resource"] for r in frozen} == editable
        refused = sandbox.kubectl("create", "configmap", "late", "--from-literal=a=b")
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
        assert sandbox.kubectl("get", "pods").returncode == 0
    finally:
        sandbox.provider.freeze(sandbox.spec, frozen=False)
    allowed = eventually(lambda: sandbox.kubectl("create", "configmap", "again", "--from-literal=a=b").returncode == 0,
                         timeout=15)
    assert allowed
