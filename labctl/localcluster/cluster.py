"""Run the local control plane: a kwokctl cluster (binary runtime) on 127.0.0.1 with the simulated fleet.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and metrics-server are the real upstream programs built
by :mod:`labctl.localcluster.build`; kwok simulates the kubelets of the nodes in ``labs/fleet.yaml`` and serves their
resource metrics from usage only labctl writes (:mod:`labctl.localcluster.metrics`). Every path points at the cache so
nothing is ever downloaded, and the cluster lives in its own ``KWOK_WORKDIR`` under labctl's data directory, away from
``~/.kube/config``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from labctl.localcluster import build as build_mod
from labctl.localcluster import fleet as fleet_mod
from labctl.localcluster import metrics as metrics_mod

USAGE_CRDS = ("Metric", "ResourceUsage", "ClusterResourceUsage")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller",
              "metrics-server")
USAGE_KINDS = ("clusterresourceusages.kwok.x-k8s.io", "resourceusages.kwok.x-k8s.io")


class ClusterError(RuntimeError):
    """The local cluster could not be brought up or inspected; the message says why and what to do."""


@dataclass(frozen=True)
class Component:
    name: str
    pid: int | None
    running: bool


@dataclass(frozen=True)
class NodeSummary:
    name: str
    ready: bool
    pool: str
    instance_type: str
    capacity_type: str
    extended: dict[str, str]


@dataclass
class Status:
    exists: bool
    apiserver_ready: bool = False
    server: str | None = None
    version: str | None = None
    components: list[Component] = field(default_factory=list)
    nodes: list[NodeSummary] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.exists and self.apiserver_ready and all(c.running for c in self.components)

    def to_dict(self) -> dict[str, object]:
        return {
            "exists": self.exists,
            "healthy": self.healthy,
            "apiserver_ready": self.apiserver_ready,
            "server": self.server,
            "version": self.version,
            "components": [c.__dict__ for c in self.components],
            "nodes": [n.__dict__ for n in self.nodes],
        }


@dataclass(frozen=True)
class UpResult:
    created: bool
    seconds: float
    kubeconfig: Path
    nodes: int


class LocalCluster:
    """One named kwokctl cluster in ``workdir``."""

    def __init__(self, *, workdir: Path, fleet_file: Path, tools: build_mod.Toolset | None = None,
                 name: str = "labctl") -> None:
        self.workdir = workdir
        self.fleet_file = fleet_file
        self.tools = tools or build_mod.toolset()
        self.name = name

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    def env(self) -> dict[str, str]:
        """The environment for kwokctl and kubectl: our binaries first in PATH, our own workdir."""
        path = os.pathsep.join([str(self.tools.kube_bin), str(self.tools.kwok_bin), os.environ.get("PATH", "")])
        return {**os.environ, "PATH": path, "KWOK_WORKDIR": str(self.workdir)}

    @property
    def config_file(self) -> Path:
        return self.workdir / f"{self.name}.kwokctl.yaml"

    @property
    def metrics_manifest_dir(self) -> Path:
        """The kustomize directory of the metrics.k8s.io APIService that kwokctl installs."""
        return self.workdir / metrics_mod.kustomization_dirname()

    def kwokctl_config(self) -> dict[str, object]:
        """kwokctl's configuration: every binary local, loopback only, RBAC and admission on, usage CRDs on,
        metrics-server from the cache with its APIService from a local manifest, short metrics and HPA periods."""
        t = self.tools
        return {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": {
                "runtime": "binary",
                "kubeApiserverBinary": str(t.kube_bin / "kube-apiserver"),
                "kubeControllerManagerBinary": str(t.kube_bin / "kube-controller-manager"),
                "kubeSchedulerBinary": str(t.kube_bin / "kube-scheduler"),
                "kubectlBinary": str(t.kubectl),
                "etcdBinary": str(t.etcd),
                "kwokControllerBinary": str(t.kwok),
                "metricsServerBinary": str(t.metrics_server),
                "metricsServerManifests": [str(self.metrics_manifest_dir)],
                "enable": ["metrics-server"],
                "bindAddress": "127.0.0.1",
                "kubeAuthorization": True,
                "kubeAdmission": True,
                "enableCRDs": list(USAGE_CRDS),
            },
            "componentsPatches": metrics_mod.component_patches(),
        }

    def create_args(self) -> list[str]:
        """The ``kwokctl create cluster`` command line (the configuration file is written by :meth:`_write_config`)."""
        return [str(self.tools.kwokctl), "create", "cluster", "--name", self.name, "--config", str(self.config_file),
                "--runtime", "binary", "--kubeconfig", "", "--wait", "3m"]

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(self.kwokctl_config(), sort_keys=False))
        self.metrics_manifest_dir.mkdir(exist_ok=True)
        for name, text in metrics_mod.kustomization_files().items():
            (self.metrics_manifest_dir / name).write_text(text)

    def dry_run(self) -> str:
        """What ``create`` would run, as kwokctl prints it (used to prove that nothing is downloaded)."""
        self._write_config()
        proc = self._run([*self.create_args(), "--dry-run"], check=True, timeout=60)
        return proc.stdout

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def up(self) -> UpResult:
        """Bring the cluster up, or reuse it when it is healthy; apply the fleet either way (server-side apply)."""
        started = time.monotonic()
        fleet = fleet_mod.load(self.fleet_file)  # validate before touching anything
        build_mod.build()
        created = False
        status = self.status(with_nodes=False)
        if status.exists and not status.healthy:
            self._run([str(self.tools.kwokctl), "start", "cluster", "--name", self.name], check=False, timeout=180)
            status = self._wait_ready(60)
            if not status.healthy:
                self.down()
        if not self.status(with_nodes=False).healthy:
            self._write_config()
            proc = self._run(self.create_args(), check=False, timeout=300)
            if proc.returncode != 0:
                self.down()
                raise ClusterError(f"kwokctl create cluster failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            created = True
            if not self._wait_ready(60).healthy:
                raise ClusterError("the cluster was created but its apiserver is not ready; see "
                                   f"{self.cluster_dir}/logs")
        nodes = [metrics_mod.with_metrics_path(n) for n in fleet_mod.node_manifests(fleet)]
        self.apply(nodes)
        self._wait_nodes_ready([n["metadata"]["name"] for n in nodes], timeout_s=120)
        self._set_up_resource_metrics()
        return UpResult(created=created, seconds=time.monotonic() - started, kubeconfig=self.kubeconfig,
                        nodes=len(nodes))

    def down(self) -> None:
        """Stop every process of the cluster and remove its files; returns once the processes are gone."""
        started = [c.pid for c in self._components() if c.running and c.pid]  # kwokctl deletes the pid files
        if self.cluster_dir.exists():
            self._run([str(self.tools.kwokctl), "delete", "cluster", "--name", self.name], check=False, timeout=120)
        for pid in started:
            _terminate(pid)  # waits for a clean exit first, kills what does not go
        if self.cluster_dir.exists():
            shutil.rmtree(self.cluster_dir, ignore_errors=True)

    def status(self, *, with_nodes: bool = True) -> Status:
        if not self.kubeconfig.exists():
            return Status(exists=self.cluster_dir.exists(), components=self._components())
        st = Status(exists=True, components=self._components(), server=self._server())
        proc = self.kubectl(["version", "-o", "json", "--request-timeout=3s"], check=False, timeout=10)
        if proc.returncode == 0:
            info = json.loads(proc.stdout)
            st.version = info.get("serverVersion", {}).get("gitVersion")
            ready = self.kubectl(["get", "--raw", "/readyz", "--request-timeout=3s"], check=False, timeout=10)
            st.apiserver_ready = ready.returncode == 0 and ready.stdout.strip() == "ok"
        if with_nodes and st.apiserver_ready:
            st.nodes = self._nodes()
        return st

    def _set_up_resource_metrics(self) -> None:
        """kwok's resource-metrics endpoint, and no usage but labctl's: usage objects labctl did not write (such as
        kwok's stock rule that reads pod annotations) are deleted. Returns once metrics.k8s.io is available."""
        self.apply([metrics_mod.resource_metric()])
        for kind in USAGE_KINDS:
            self.kubectl(["delete", kind, "--all-namespaces", "-l", "app.kubernetes.io/managed-by!=labctl",
                          "--ignore-not-found", "--wait=false"], timeout=60)
        proc = self.kubectl(["wait", "--for=condition=Available", "apiservice/v1beta1.metrics.k8s.io",
                             "--timeout=90s"], check=False, timeout=100)
        if proc.returncode != 0:
            raise ClusterError("metrics.k8s.io did not become available within 90s; see "
                               f"{self.cluster_dir}/logs/metrics-server.log ({proc.stderr.strip()})")

    # -- helpers ---------------------------------------------------------------------------------------------------

    def kubectl(self, args: list[str], *, check: bool = True, timeout: float = 60,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *args], check=check,
                         timeout=timeout, stdin=stdin)

    def apply(self, objects: list[dict[str, object]]) -> None:
        """Server-side apply a list of objects as labctl's field manager."""
        doc = yaml.safe_dump_all(objects)
        self.kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=labctl", "-f", "-"],
                     stdin=doc, timeout=120)

    def _run(self, cmd: list[str], *, check: bool, timeout: float,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(cmd, env=self.env(), input=stdin, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"`{' '.join(cmd[:4])} ...` did not finish within {timeout:.0f}s") from exc
        if check and proc.returncode != 0:
            raise ClusterError(f"`{' '.join(cmd[:6])} ...` failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc

    def _server(self) -> str | None:
        try:
            cfg = yaml.safe_load(self.kubeconfig.read_text())
            return str(cfg["clusters"][0]["cluster"]["server"])
        except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
            return None

    def _components(self) -> list[Component]:
        pids = self.cluster_dir / "pids"
        found = []
        for name in COMPONENTS:
            pid_file = pids / f"{name}.pid"
            pid = _read_pid(pid_file)
            # A pid file outlives its process (a reboot, a killed session): only a live process that runs from this
            # cluster's directory is ours; anything else with a recycled pid must never be signalled.
            ours = pid is not None and _alive(pid) and str(self.cluster_dir) in _cmdline(pid)
            found.append(Component(name=name, pid=pid if ours else None, running=ours))
        return found

    def _wait_ready(self, timeout_s: float) -> Status:
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.status(with_nodes=False)
            if st.healthy or time.monotonic() > deadline:
                return st
            time.sleep(1)

    def _nodes(self) -> list[NodeSummary]:
        proc = self.kubectl(["get", "nodes", "-o", "json", "--request-timeout=5s"], check=False, timeout=15)
        if proc.returncode != 0:
            return []
        out = []
        for item in json.loads(proc.stdout)["items"]:
            labels = item["metadata"].get("labels", {})
            conditions = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
            capacity = item.get("status", {}).get("capacity", {})
            out.append(NodeSummary(
                name=item["metadata"]["name"],
                ready=conditions.get("Ready") == "True",
                pool=labels.get("labctl.dev/pool", ""),
                instance_type=labels.get("node.kubernetes.io/instance-type", ""),
                capacity_type=labels.get("karpenter.sh/capacity-type", ""),
                extended={k: v for k, v in capacity.items() if k.startswith("nvidia.com/")},
            ))
        return out

    def _wait_nodes_ready(self, names: list[str], *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        want = set(names)
        while True:
            ready = {n.name for n in self._nodes() if n.ready}
            if want <= ready:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"nodes not Ready after {timeout_s:.0f}s: {', '.join(sorted(want - ready))}")
            time.sleep(0.5)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie or a recycled pid is not our component: check the process is not defunct.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _terminate(pid: int, grace_s: float = 10) -> None:
    """Wait for ``pid`` to exit; SIGTERM it after a moment, SIGKILL it after ``grace_s``."""
    deadline = time.monotonic() + grace_s
    signalled = False
    while _alive(pid):
        now = time.monotonic()
        try:
            if now > deadline:
                os.kill(pid, signal.SIGKILL)
                return
            if not signalled and now > deadline - grace_s / 2:
                os.kill(pid, signal.SIGTERM)
                signalled = True
        except ProcessLookupError:
            return
        time.sleep(0.1)


