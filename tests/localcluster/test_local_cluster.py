"""The local control plane itself: nothing downloaded, honest versions, idempotent up, a down that leaves nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from labctl.localcluster import fleet
from labctl.localcluster.cluster import COMPONENTS, LocalCluster


def test_create_downloads_nothing(local_cluster: LocalCluster, tmp_path: Path) -> None:
    probe = LocalCluster(workdir=tmp_path, fleet_file=local_cluster.fleet_file, name="dry")
    plan = probe.dry_run()
    assert "kube-apiserver" in plan
    # Every "download" kwokctl plans is a copy of a binary from labctl's cache.
    sources = re.findall(r"^# Download (\S+) to ", plan, flags=re.MULTILINE)
    assert len(sources) == 6
    assert all(src.startswith(str(local_cluster.tools.root) + "/") for src in sources), sources
    assert str(local_cluster.tools.metrics_server) in sources
    # metrics-server's APIService comes from a manifest labctl writes, built locally (kwokctl would fetch a URL).
    built = re.findall(r"^# Build (\S+) by kubectl kustomize to ", plan, flags=re.MULTILINE)
    assert built == [str(probe.metrics_manifest_dir)]
    assert "--metric-resolution=10s" in plan and "--horizontal-pod-autoscaler-sync-period=5s" in plan
    # No URL but loopback; the service-account issuer is an identifier written into tokens, never fetched.
    fetched = re.sub(r"--service-account-issuer=\S+", "", plan)
    hosts = set(re.findall(r"\b(?:https?|ftp)://([^/:\s\"']+)", fetched))
    assert hosts <= {"127.0.0.1", "localhost"}, f"kwokctl would reach {hosts - {'127.0.0.1', 'localhost'}}"
    for word in ("wget ", "curl ", "docker ", ".tar.gz", "dl.k8s.io", "github.com"):
        assert word not in plan
    assert not (tmp_path / "clusters" / "dry" / "pids").exists()  # a dry run starts nothing


def test_binaries_report_the_real_version(local_cluster: LocalCluster, kubectl) -> None:  # type: ignore[no-untyped-def]
    out = json.loads(kubectl("version", "-o", "json", check=True).stdout)
    assert out["clientVersion"]["gitVersion"] == "v1.36.3"
    assert out["serverVersion"]["gitVersion"] == "v1.36.3"
    etcd = subprocess.run([str(local_cluster.tools.etcd), "--version"], capture_output=True, text=True, check=True)
    assert "etcd Version: 3.6.16" in etcd.stdout
    metrics = subprocess.run([str(local_cluster.tools.metrics_server), "--version"], capture_output=True, text=True,
                             check=True)
    assert metrics.stdout.strip() == "v0.8.0"


def test_metrics_k8s_io_is_served(local_cluster: LocalCluster, kubectl) -> None:  # type: ignore[no-untyped-def]
    service = json.loads(kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json", check=True).stdout)
    available = {c["type"]: c["status"] for c in service["status"]["conditions"]}
    assert available["Available"] == "True", service["status"]
    # Every node tells metrics-server where kwok serves its resource metrics, and is reachable on loopback.
    nodes = json.loads(kubectl("get", "nodes", "-o", "json", check=True).stdout)["items"]
    for node in nodes:
        name = node["metadata"]["name"]
        assert node["metadata"]["annotations"]["metrics.k8s.io/resource-metrics-path"] == \
            f"/metrics/nodes/{name}/metrics/resource"
        assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]


def test_apiserver_listens_on_loopback_with_rbac_and_admission(local_cluster: LocalCluster) -> None:
    status = local_cluster.status()
    assert status.server is not None
    assert status.server.startswith("https://127.0.0.1:")
    cmdline = _cmdline(next(c.pid for c in status.components if c.name == "kube-apiserver"))
    assert "--authorization-mode=Node,RBAC" in cmdline or "--authorization-mode=RBAC" in " ".join(cmdline)
    assert not any(arg.startswith("--bind-address=0.0.0.0") for arg in cmdline)


def test_status_reports_every_component_and_the_whole_fleet(local_cluster: LocalCluster) -> None:
    status = local_cluster.status()
    assert status.healthy
    assert {c.name for c in status.components} == set(COMPONENTS)
    assert all(c.running for c in status.components)
    expected = {n["metadata"]["name"] for n in fleet.node_manifests(fleet.load(local_cluster.fleet_file))}
    assert {n.name for n in status.nodes if n.ready} == expected


def test_up_twice_starts_nothing_new(local_cluster: LocalCluster) -> None:
    before = {c.name: c.pid for c in local_cluster.status().components}
    result = local_cluster.up()
    after = {c.name: c.pid for c in local_cluster.status().components}
    assert result.created is False
    assert before == after


def test_fresh_up_then_down_leaves_nothing_running(local_cluster: LocalCluster, tmp_path: Path) -> None:
    other = LocalCluster(workdir=tmp_path / "kwok", fleet_file=local_cluster.fleet_file, name="labctl-downtest")
    try:
        result = other.up()
        assert result.created is True
        pids = [c.pid for c in other.status().components]
        assert all(pids)
    finally:
        other.down()
    assert not other.cluster_dir.exists()
    for pid in pids:
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def _cmdline(pid: int | None) -> list[str]:
    assert pid is not None
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
