"""How long writing simulated usage takes for 200 sandboxes x 10 pods, beside two baselines, in one run.

Run: ``.venv/bin/python -m bench.usage_apply [--namespaces 200] [--pods 10]``. A fresh local cluster of its own
(temporary workdir, torn down afterwards) so the developer's cluster is untouched; the binaries must be built.

Rows (each a full sweep over every namespace):

- labctl, first write: :func:`~labctl.providers.kubernetes.usage.apply_usage` per namespace, creating one
  ``ClusterResourceUsage`` per pod (server-side apply, one request per object after one list and one read of the
  namespace, the objects' owner);
- labctl, every figure changed: the same, each object rewritten (the demand simulator's worst sweep);
- labctl, nothing changed: one list and one namespace read per namespace, no write (a steady sweep);
- baseline, one ``kubectl apply --server-side`` of the same per-pod objects (every figure changed);
- baseline, per-namespace objects carrying the figures in CEL (``{"pod": 0.25}[pod.metadata.name]``), one object
  per namespace, server-side applied; fewer writes, but kwok keeps every compiled expression, so not used.

Then kwok's memory: one namespace of 10 running pods whose figures change ``--rounds`` times, each change followed by
a scrape of kwok's resource-metrics endpoints (what metrics-server does every 10 s), written once as per-pod static
values and once as one per-namespace CEL object; the kwok controller's resident memory before and after each.
"""

from __future__ import annotations

import argparse
import os
import platform
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import usage as usage_mod
from labctl.providers.kubernetes.client import api_client
from labctl.settings import Settings

MiB = 2**20


def _figures(namespaces: int, pods: int, step: int) -> dict[str, dict[str, usage_mod.PodUsage]]:
    return {f"bench-{n:03d}": {f"web-{p}": {"app": usage_mod.ContainerUsage(
        cpu_cores=0.1 + 0.001 * ((n + p + step) % 500), memory_bytes=(64 + (p + step) % 64) * MiB)}
        for p in range(pods)} for n in range(namespaces)}


def _cel_object(namespace: str, pods: dict[str, usage_mod.PodUsage]) -> dict[str, Any]:
    """The per-namespace alternative: one object whose CEL carries every pod's figures."""
    def expr(resource: str) -> str:
        values = {p: (c["app"].cpu_cores if resource == "cpu" else float(c["app"].memory_bytes))
                  for p, c in pods.items()}
        table = "{" + ", ".join(f'"{p}": {v!r}' for p, v in sorted(values.items())) + "}"
        return f"pod.metadata.name in {table} ? {table}[pod.metadata.name] : 0.0"
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterResourceUsage",
            "metadata": {"name": f"bench-ns.{namespace}", "labels": {"labctl.dev/bench": "cel"}},
            "spec": {"selector": {"matchNamespaces": [namespace], "matchNames": sorted(pods)},
                     "usages": [{"containers": ["app"], "usage": {"cpu": {"expression": expr("cpu")},
                                                                 "memory": {"expression": expr("memory")}}}]}}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _kwok_memory(cluster: LocalCluster, api: client.ApiClient, *, rounds: int) -> dict[str, tuple[float, float]]:
    """kwok's RSS (MiB) before and after ``rounds`` changed figures for 10 scraped pods, per shape."""
    ns = "bench-kwok-memory"
    cluster.kubectl(["create", "namespace", ns])
    pod = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    cluster.apply([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": ns},
                    "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "app"}},
                             "template": {"metadata": {"labels": {"app": "app"}}, "spec": pod}}}])
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    deadline = time.monotonic() + 120
    while len(pods := [p for p in core.list_namespaced_pod(ns).items if p.status.phase == "Running"]) < 10:
        if time.monotonic() > deadline:
            raise RuntimeError("the benchmark's 10 pods did not run within 120 s")
        time.sleep(0.5)
    nodes = {p.spec.node_name for p in pods}
    ports = {n: core.read_node(n).status.daemon_endpoints.kubelet_endpoint.port for n in nodes}
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # kwok serves the admin certificate
    pid = next(c.pid for c in cluster.status(with_nodes=False).components if c.name == "kwok-controller")
    assert pid is not None
    result = {}
    for shape in ("per-pod static values", "per-namespace CEL"):
        before = _rss_mib(pid)
        for step in range(rounds):
            figures = {p.metadata.name: {"app": usage_mod.ContainerUsage(
                cpu_cores=0.1 + 1e-4 * step + 1e-6 * i, memory_bytes=64 * MiB + step)} for i, p in enumerate(pods)}
            if shape == "per-pod static values":
                usage_mod.apply_usage(api, namespace=ns, usage=figures)
            else:
                obj = _cel_object(ns, figures)
                custom.patch_cluster_custom_object(
                    usage_mod.GROUP, usage_mod.VERSION, usage_mod.PLURAL, obj["metadata"]["name"], obj,
                    field_manager="labctl", force=True, _content_type="application/apply-patch+yaml")
            time.sleep(0.3)  # kwok sees the change through its informer
            for node, port in ports.items():
                urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics/nodes/{node}/metrics/resource",
                                       context=insecure, timeout=10).read()
        result[shape] = (before, _rss_mib(pid))
        usage_mod.clear_usage(api, namespace=ns)
    return result


def _timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=150)
    args = parser.parse_args()
    settings = Settings()
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        cluster = LocalCluster(workdir=Path(tmp), fleet_file=settings.fleet_file, name="bench-usage")
        try:
            cluster.up()
            with api_client(cluster.kubeconfig, pool_size=8) as api:
                objects = args.namespaces * args.pods

                def sweep(step: int) -> Callable[[], object]:
                    figures = _figures(args.namespaces, args.pods, step)
                    return lambda: [usage_mod.apply_usage(api, namespace=ns, usage=u) for ns, u in figures.items()]

                cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                               for ns in _figures(args.namespaces, args.pods, 0)])
                rows.append(("labctl, first write", objects, _timed(sweep(0))))
                rows.append(("labctl, every figure changed", objects, _timed(sweep(1))))
                rows.append(("labctl, nothing changed", 0, _timed(sweep(1))))

                uids = {ns.metadata.name: ns.metadata.uid for ns in client.CoreV1Api(api).list_namespace().items}
                changed = [o for ns, u in _figures(args.namespaces, args.pods, 2).items()
                           for o in usage_mod.usage_objects(namespace=ns, namespace_uid=uids[ns], usage=u)]
                doc = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": changed})
                rows.append(("baseline: one kubectl apply", objects, _timed(lambda: cluster.kubectl(
                    ["apply", "--server-side", "--force-conflicts", "--field-manager=labctl", "-f", "-"],
                    stdin=doc, timeout=600))))

                custom = client.CustomObjectsApi(api)

                def cel_sweep(step: int) -> None:
                    for ns, u in _figures(args.namespaces, args.pods, step).items():
                        obj = _cel_object(ns, u)
                        custom.patch_cluster_custom_object(
                            usage_mod.GROUP, usage_mod.VERSION, usage_mod.PLURAL, obj["metadata"]["name"], obj,
                            field_manager="labctl", force=True, _content_type="application/apply-patch+yaml")

                cel_sweep(3)  # create them first, so the timed sweep compares with "every figure changed"
                rows.append(("baseline: per-namespace CEL", args.namespaces, _timed(lambda: cel_sweep(4))))
                clear = _timed(lambda: [usage_mod.clear_usage(api, namespace=ns)
                                        for ns in _figures(args.namespaces, args.pods, 0)])
                custom.delete_collection_cluster_custom_object(usage_mod.GROUP, usage_mod.VERSION, usage_mod.PLURAL,
                                                               label_selector="labctl.dev/bench=cel")
                memory = _kwok_memory(cluster, api, rounds=args.rounds)
        finally:
            cluster.down()
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}; command: python -m bench.usage_apply --namespaces {args.namespaces} "
          f"--pods {args.pods} --rounds {args.rounds}")
    print(f"{'one sweep over every namespace':34}{'writes':>8}{'seconds':>10}{'ms / namespace':>16}")
    for name, writes, seconds in rows:
        print(f"{name:34}{writes:>8}{seconds:>10.2f}{seconds * 1000 / args.namespaces:>16.1f}")
    print(f"clear_usage of every namespace (sandbox destroy): {clear:.2f} s")
    print(f"kwok controller memory, 10 pods whose figures change {args.rounds} times (each change scraped):")
    for shape, (before, after) in memory.items():
        print(f"  {shape:30}{before:>8.0f} MiB -> {after:>5.0f} MiB  ({after - before:+.0f} MiB)")


if __name__ == "__main__":
    main()
