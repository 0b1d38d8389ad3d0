"""The usage objects labctl writes for kwok, and the local cluster's metrics wiring: pure shapes."""

from __future__ import annotations

import copy
import math

import pytest

from labctl.localcluster import metrics
from labctl.providers.kubernetes.usage import ContainerUsage, object_name, usage_object, usage_objects


def test_one_object_per_pod_selects_exactly_that_pod_with_static_values() -> None:
    obj = usage_object(namespace="lab-a", namespace_uid="uid-a", pod="web-1", containers={
        "app": ContainerUsage(cpu_cores=0.25, memory_bytes=128 * 2**20, other={"nvidia.com/gpu": 0.37}),
        "sidecar": ContainerUsage(cpu_cores=0.005, memory_bytes=1000),
    })
    assert obj["kind"] == "ClusterResourceUsage" and "namespace" not in obj["metadata"]
    assert obj["metadata"]["name"] == "usage.lab-a.web-1"
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "labctl",
                                         "labctl.dev/usage-namespace": "lab-a"}
    assert obj["spec"]["selector"] == {"matchNamespaces": ["lab-a"], "matchNames": ["web-1"]}
    # The namespace owns it, so the garbage collector removes it with the sandbox.
    assert obj["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Namespace", "name": "lab-a",
                                                   "uid": "uid-a"}]
    assert obj["spec"]["usages"] == [
        {"containers": ["app"], "usage": {"cpu": {"value": "250000000n"}, "memory": {"value": "134217728"},
                                          "nvidia.com/gpu": {"value": "370000000n"}}},
        {"containers": ["sidecar"], "usage": {"cpu": {"value": "5000000n"}, "memory": {"value": "1000"}}},
    ]
    assert "expression" not in str(obj)  # no CEL: kwok would cache every distinct program forever


def test_zero_usage_is_written_as_the_smallest_unit_so_metrics_server_keeps_the_pod() -> None:
    obj = usage_object(namespace="n", namespace_uid="u", pod="p",
                       containers={"c": ContainerUsage(cpu_cores=0.0, memory_bytes=0)})
    assert obj["spec"]["usages"][0]["usage"] == {"cpu": {"value": "1n"}, "memory": {"value": "1"}}


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_usage_must_be_a_finite_non_negative_number(bad: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        ContainerUsage(cpu_cores=bad, memory_bytes=1)
    with pytest.raises(ValueError, match=r"nvidia\.com/gpu"):
        ContainerUsage(cpu_cores=0.1, memory_bytes=1, other={"nvidia.com/gpu": bad})


def test_names_stay_valid_and_distinct_for_long_pod_names() -> None:
    long_a, long_b = "a" * 250, "a" * 249 + "b"
    names = {object_name("lab-x", long_a), object_name("lab-x", long_b)}
    assert len(names) == 2
    assert all(len(n) <= 253 and n.startswith("usage.lab-x.") for n in names)


def test_objects_of_a_namespace_are_sorted_by_pod() -> None:
    u = ContainerUsage(cpu_cores=0.1, memory_bytes=1)
    objs = usage_objects(namespace="n", namespace_uid="u", usage={"b": {"c": u}, "a": {"c": u}})
    assert [o["spec"]["selector"]["matchNames"] for o in objs] == [["a"], ["b"]]


def test_nodes_get_their_metrics_path_without_changing_the_fleet_manifest() -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cpu-0", "annotations": {"a": "b"}}}
    before = copy.deepcopy(node)
    annotated = metrics.with_metrics_path(node)
    assert node == before
    assert annotated["metadata"]["annotations"] == {
        "a": "b", "metrics.k8s.io/resource-metrics-path": "/metrics/nodes/cpu-0/metrics/resource"}


def test_resource_metric_serves_what_metrics_server_parses() -> None:
    metric = metrics.resource_metric()
    assert metric["spec"]["path"] == "/metrics/nodes/{nodeName}/metrics/resource"
    names = {m["name"]: m for m in metric["spec"]["metrics"]}
    for needed in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                   "container_start_time_seconds", "node_cpu_usage_seconds_total", "node_memory_working_set_bytes"):
        assert needed in names
    assert names["container_cpu_usage_seconds_total"]["kind"] == "counter"
    assert {lbl["name"] for lbl in names["container_cpu_usage_seconds_total"]["labels"]} == {
        "container", "namespace", "pod"}
    assert "annotations" not in str(metric)


def test_the_manifest_directory_name_follows_its_content(monkeypatch: pytest.MonkeyPatch) -> None:
    # kwokctl caches a built manifest by its source path: new content must mean a new path.
    assert "kind: APIService" in metrics.kustomization_files()["metrics-server.yaml"]
    before = metrics.kustomization_dirname()
    assert before == metrics.kustomization_dirname()
    monkeypatch.setattr(metrics, "apiservice_manifest", lambda: "kind: Service\n")
    assert metrics.kustomization_dirname() != before
