"""The sandbox's network policies: stored with the right spec, and out of the learner's reach.

kwok runs no CNI, so the local cluster stores NetworkPolicies without enforcing them; what can be proven here is
that every sandbox holds a default-deny egress policy (its own pods, the cluster DNS and the lab's declared blocks
only, cloud metadata addresses cut out) beside the ingress one, and that the learner can read but not delete, patch
or outflank them with a policy of its own. On a real cluster a CNI that enforces NetworkPolicy does the rest
(docs/SECURITY.md, "The sandbox").
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from tests.support.sandbox import LearnerSandbox, lab_variant, learner_sandbox

IN_NAMESPACE = {"to": [{"podSelector": {}}]}
DNS = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
       "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


@pytest.fixture(scope="module")
def sandbox(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerSandbox]:
    """A lab that declares egress: HTTPS anywhere, and every port of one private block."""
    lab = lab_variant("tag-for-showback", network={"egress": [
        {"cidr": "0.0.0.0/0", "ports": [{"port": 443}]}, {"cidr": "10.20.0.0/16"}]})
    with learner_sandbox(local_cluster, lab, tmp_path_factory.mktemp("network")) as box:
        yield box


@pytest.fixture(scope="module")
def closed(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerSandbox]:
    """A shipped lab as it is: no egress declared."""
    with learner_sandbox(local_cluster, lab_variant("idle-hunter"), tmp_path_factory.mktemp("closed")) as box:
        yield box


def _policy(box: LearnerSandbox, name: str) -> dict[str, object]:
    proc = box.kubectl("get", "networkpolicy", name, "-o", "json")  # the learner may read its policies
    assert proc.returncode == 0, proc.stderr
    spec: dict[str, object] = json.loads(proc.stdout)["spec"]
    return spec


def test_egress_is_denied_but_for_the_namespace_and_dns(closed: LearnerSandbox) -> None:
    assert _policy(closed, "egress") == {"podSelector": {}, "policyTypes": ["Egress"],
                                          "egress": [IN_NAMESPACE, DNS]}
    assert _policy(closed, "deny-from-other-namespaces") == {"podSelector": {}, "policyTypes": ["Ingress"],
                                                              "ingress": [{"from": [{"podSelector": {}}]}]}


def test_declared_egress_is_added_with_metadata_addresses_cut_out(sandbox: LearnerSandbox) -> None:
    assert _policy(sandbox, "egress")["egress"] == [
        IN_NAMESPACE, DNS,
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
         "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
    ]


ALLOW_ALL = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "allow-all"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress", "Ingress"], "egress": [{}], "ingress": [{}]}}


@pytest.mark.parametrize("args", [
    ("delete", "networkpolicy", "egress"),
    ("delete", "networkpolicy", "--all"),
    ("patch", "networkpolicy", "egress", "--type=merge", "-p", '{"spec":{"egress":[{}]}}'),
    ("patch", "networkpolicy", "egress", "--type=merge", "-p", '{"spec":{"podSelector":{"matchLabels":{"x":"y"}}}}'),
    ("label", "networkpolicy", "egress", "labctl.dev/session-"),
], ids=["delete", "delete-all", "open-egress", "narrow-selector", "unlabel"])
def test_the_learner_cannot_change_the_policies(closed: LearnerSandbox, kube: client.ApiClient,
                                                args: tuple[str, ...]) -> None:
    proc = closed.kubectl(*args)
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr.lower(), proc.stderr
    names = [p.metadata.name for p in client.NetworkingV1Api(kube).list_namespaced_network_policy(
        closed.namespace).items]
    assert sorted(names) == ["deny-from-other-namespaces", "egress"]


def test_the_learner_cannot_add_a_policy_that_allows_everything(closed: LearnerSandbox) -> None:
    """Policies add up: one allow-all policy would open what the deny policies close."""
    proc = closed.create(ALLOW_ALL)
    assert proc.returncode != 0
    assert 'cannot create resource "networkpolicies"' in proc.stderr, proc.stderr
