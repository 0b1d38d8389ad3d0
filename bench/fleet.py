"""The fleet the class benchmarks run on: the shipped pools, with CPU pools large enough for every starter pod of a
class of hundreds (kwok nodes cost nothing). On the shipped fleet (24 schedulable cores) a class of 50
``tag-for-showback`` starters (half a core each) does not fit: the last starts wait out provisioning's bounded wait
for their starter's pods, and a benchmark would time the full cluster, not labctl."""

from __future__ import annotations

from pathlib import Path

import yaml

from labctl.settings import REPO_ROOT

POOL_CPU = "128"
POOL_MEMORY = "512Gi"
POOL_PODS = 1000  # 500 sessions x 5 starter pods fit on the untainted on-demand pool alone


def roomy(directory: Path) -> Path:
    """Write the shipped fleet with room for a class into ``directory``; its path."""
    doc = yaml.safe_load((REPO_ROOT / "labs" / "fleet.yaml").read_text())
    for pool in doc["pools"]:
        if pool["name"].startswith("cpu-"):
            pool.update(cpu=POOL_CPU, memory=POOL_MEMORY, pods=POOL_PODS)
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
