"""How long the local control plane takes to start: a fresh cluster (create) beside a reused one (health check).

Run: ``.venv/bin/python -m bench.cluster_start [--runs N]``. Each fresh start uses its own workdir and cluster name
and is torn down afterwards, so the developer's cluster is untouched. The binaries must be built (``make binaries``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from labctl.localcluster.cluster import LocalCluster
from labctl.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    fresh: list[float] = []
    reused: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
            cluster = LocalCluster(workdir=Path(tmp), fleet_file=settings.fleet_file, name=f"bench-{run}")
            try:
                started = time.monotonic()
                result = cluster.up()
                fresh.append(time.monotonic() - started)
                assert result.created
                started = time.monotonic()
                again = cluster.up()
                reused.append(time.monotonic() - started)
                assert not again.created
            finally:
                cluster.down()
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}; command: python -m bench.cluster_start --runs {args.runs}")
    print(f"{'':28}{'median s':>10}{'max s':>10}")
    print(f"{'fresh cluster (create)':28}{statistics.median(fresh):>10.1f}{max(fresh):>10.1f}")
    print(f"{'baseline: reuse healthy one':28}{statistics.median(reused):>10.1f}{max(reused):>10.1f}")
    print(f"nodes: {result.nodes}; a fresh start includes etcd, kube-apiserver, controller-manager, scheduler, "
          "kwok and the fleet Ready")


if __name__ == "__main__":
    main()
