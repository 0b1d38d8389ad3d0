"""Two real local clusters for the placement tests, and three small labs whose room in them is known.

Cluster ``a`` is cheap and small: one spot m5.xlarge (4 cores). Cluster ``b`` is dearer and larger: two on-demand
m5.xlarge and one g5.xlarge with one whole GPU (tainted, as clouds taint GPU nodes). The ``tiny-web`` lab starts one
pod of 1.5 cores and 1 GiB under a quota of 2 cores and 2 GiB, so ``a`` holds two sandboxes (the third pod no
longer fits in the 1 core left) and ``b`` several more; the ``one-gpu`` lab's pod takes a whole GPU, of which only
``b`` has one; the ``two-gpu`` lab's pod takes two GPUs, which no node of either has.
The clusters are named ``<LABCTL_TEST_CLUSTER>-a`` and ``-b`` and, like the suite's cluster, are left
running for the next run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import REPO_ROOT

FLEET_A = """
pools:
  - {name: small-spot, count: 1, instance_type: m5.xlarge, region: us-east-1, zone: us-east-1a,
     capacity_type: spot, cpu: "4", memory: 16Gi}
"""
FLEET_B = """
pools:
  - {name: cpu-ondemand, count: 2, instance_type: m5.xlarge, region: us-east-1, zone: us-east-1b,
     capacity_type: on-demand, cpu: "4", memory: 16Gi}
  - name: gpu-one
    count: 1
    instance_type: g5.xlarge
    region: us-east-1
    zone: us-east-1b
    capacity_type: on-demand
    cpu: "4"
    memory: 16Gi
    gpu: {product: NVIDIA-A10G, count: 1, memory_mib: 24576}
    taints:
      - {key: nvidia.com/gpu, value: present, effect: NoSchedule}
"""

POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@dataclass(frozen=True)
class Pair:
    a: LocalCluster
    b: LocalCluster

    def env(self) -> dict[str, str]:
        """``LABCTL_CLUSTERS`` naming both, ``a`` first."""
        return {"LABCTL_CLUSTERS": f"a={self.a.kubeconfig},b={self.b.kubeconfig}"}


def bring_up(workdir: Path, *, prefix: str) -> Pair:
    """Both clusters up (or reused), each with its own fleet file, cleared of sandboxes an earlier run left."""
    fleets = workdir / "fleets"
    fleets.mkdir(parents=True, exist_ok=True)
    made = []
    for suffix, fleet in (("a", FLEET_A), ("b", FLEET_B)):
        path = fleets / f"{prefix}-{suffix}.yaml"
        path.write_text(fleet)
        cluster = LocalCluster(workdir=workdir, fleet_file=path, name=f"{prefix}-{suffix}")
        cluster.up()
        cluster.kubectl(["delete", "namespace", "-l", "app.kubernetes.io/managed-by=labctl", "--ignore-not-found",
                         "--timeout=170s"], check=False, timeout=180)
        made.append(cluster)
    return Pair(a=made[0], b=made[1])


def _deployment(name: str, *, requests: dict[str, str], limits: dict[str, object] | None = None,
                gpu: bool = False) -> dict[str, object]:
    container = {"name": name, "image": "registry.k8s.io/pause:3.10", "securityContext": CONTAINER_SECURITY,
                 "resources": {"requests": requests, "limits": limits or requests}}
    spec: dict[str, object] = {"securityContext": POD_SECURITY, "containers": [container]}
    if gpu:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "{{ namespace }}",
                         "labels": {"app": name, "team": "t", "cost-center": "cc", "env": "dev"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def labs(tmp: Path) -> tuple[Path, Path]:
    """A labs directory with ``tiny-web`` and ``one-gpu``, and a manifests directory with their starters."""
    labs_dir, manifests = tmp / "labs", tmp / "manifests"
    shutil.copytree(REPO_ROOT / "manifests" / "sandbox", manifests / "sandbox")
    base = yaml.safe_load((REPO_ROOT / "labs" / "tag-for-showback" / "lab.yaml").read_text())
    for key in ("node_pools", "solution", "demand"):
        base.pop(key, None)
    base["graders"] = [{"id": "within-budget", "script": "graders/budget.py", "weight": 1,
                        "params": {"max_spend_percent": 100}}]
    starters = {
        "tiny-web": (_deployment("web", requests={"cpu": "1500m", "memory": "1Gi"}),
                     {"cpu": "2", "memory": "2Gi", "pods": "5"}),
        "one-gpu": (_deployment("infer", requests={"cpu": "1", "memory": "1Gi"},
                                limits={"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 1}, gpu=True),
                    {"cpu": "2", "memory": "4Gi", "pods": "5", "requests.nvidia.com/gpu": "1"}),
        "two-gpu": (_deployment("train", requests={"cpu": "1", "memory": "1Gi"},
                                limits={"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 2}, gpu=True),
                    {"cpu": "2", "memory": "4Gi", "pods": "5", "requests.nvidia.com/gpu": "2"}),
    }
    for lab_id, (starter, quota) in starters.items():
        (manifests / "labs" / lab_id).mkdir(parents=True)
        (manifests / "labs" / lab_id / "starter.yaml.j2").write_text(yaml.safe_dump(starter, sort_keys=False))
        (labs_dir / lab_id).mkdir(parents=True)
        doc = {**base, "title": f"{lab_id} (placement test)", "quota": quota,
               "cost_labels": {**base["cost_labels"], "labctl.dev/lab": lab_id},
               "starter": [f"labs/{lab_id}/starter.yaml.j2"]}
        (labs_dir / lab_id / "lab.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return labs_dir, manifests
