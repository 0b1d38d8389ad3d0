"""How long one sweep's inventory + price step takes for N sandboxes x 10 pods, from the watch cache and two baselines.

Run: ``.venv/bin/python -m bench.sweep [--sessions 100,500,1000] [--pods 10] [--runs 3] [--profile]``. A fresh local
cluster of its own (temporary workdir, torn down afterwards) so the developer's cluster is untouched; the binaries
must be built. Its fleet is 10 kwok nodes of 1,100 pods each (m5.xlarge on-demand). The sandboxes are made straight
through the API, in parallel: namespaces with labctl's labels, and pods bound to a node (no scheduler, no quota, no
provisioning through labctl); the namespaces are added in steps, so each N is measured on the same cluster.

Rows, for each N (every row covers every sandbox):

- cache: :meth:`ClusterCache.inventory` -> :func:`snapshot.build` -> :func:`meter.price` per sandbox (the sweep's
  read and price step as labctl runs it now; the cache was synced beforehand, as it is between sweeps);
- cache, nodes priced per sandbox: the same, each snapshot's nodes copied so the meter prices them again for every
  sandbox (as it did before it priced each node once per node version and sheet);
- baseline, per-namespace reads: :func:`inventory.collect` (a dozen lists per namespace and every node again) ->
  build -> price per sandbox, as every sweep did before the cache;
- floor: one list per kind across the cluster (the cache's kinds, paged, JSON parsed, nothing built or priced): the
  least any sweep that reads the apiserver could cost.

``--profile`` prints what dominates the cache's sweep at the largest N (cProfile, top functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import platform
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from labctl.cost import meter
from labctl.cost.prices import PriceSheet, load_sheet
from labctl.grading.snapshot import BudgetInfo, SessionInfo
from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import cache, inventory, render, snapshot
from labctl.providers.kubernetes.client import api_client
from labctl.providers.kubernetes.inventory import Inventory
from labctl.settings import Settings

TIMEOUT = (5.0, 60.0)
NODES = 10
FLEET = {"pools": [{"name": "bench", "count": NODES, "instance_type": "m5.xlarge", "region": "us-east-1",
                    "zone": "us-east-1a", "capacity_type": "on-demand", "cpu": "1000", "memory": "4000Gi",
                    "pods": 1100}]}


def _namespace(index: int) -> str:
    return f"bench-sweep-{index:04d}"


def _make_sandbox(api: client.ApiClient, index: int, pods: int) -> None:
    """One sandbox as labctl labels it, with ``pods`` pods of a Deployment-like shape, bound to a node."""
    core = client.CoreV1Api(api)
    ns = _namespace(index)
    labels = {render.SESSION_LABEL: ns, render.LAB_LABEL: "bench", render.LEARNER_LABEL: f"learner-{index}",
              **render.MANAGED_BY}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels=labels)))
    for p in range(pods):
        body: dict[str, Any] = {"metadata": {"name": f"web-{p}", "labels": {"app": "web", "team": "ml"}},
                "spec": {"nodeName": f"bench-{(index + p) % NODES}", "containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                  "limits": {"cpu": "10m", "memory": "16Mi"}}}]}}
        _retried(functools.partial(core.create_namespaced_pod, ns, body))


def _retried(create: Callable[[], object]) -> None:
    """A pod created right after its namespace may be refused until the controller-manager made the namespace's
    default ServiceAccount: try again."""
    for attempt in range(50):
        try:
            create()
            return
        except client.ApiException as exc:
            if exc.status != 403 or "serviceaccount" not in str(exc.body) or attempt == 49:
                raise
            time.sleep(0.1)


def _price(inv: Inventory, ns: str, sheet: PriceSheet, now: datetime, *, nodes_again: bool = False) -> float:
    session = SessionInfo(id=ns, lab_id="bench", learner_id="bench", provider="kubernetes", namespace=ns,
                          started_at=now, taken_at=now)
    snap = snapshot.build(inv, session=session, budget=BudgetInfo(budget_usd=10.0), now=now)
    if nodes_again:  # copies of the nodes are new to the meter: priced again, as for every sandbox before
        snap = snap.model_copy(update={"nodes": [n.model_copy() for n in snap.nodes]})
    return float(meter.price(snap, sheet).burn_rate_usd_per_hour)


def _cache_sweep(watched: cache.ClusterCache, sessions: int, sheet: PriceSheet, *, nodes_again: bool = False) -> float:
    now = datetime.now(UTC)
    total = 0.0
    for i in range(sessions):
        held = watched.inventory(_namespace(i))
        if held is None:
            raise RuntimeError(f"the cache does not serve {_namespace(i)}")
        total += _price(held, _namespace(i), sheet, now, nodes_again=nodes_again)
    return total


def _direct_sweep(api: client.ApiClient, sessions: int, sheet: PriceSheet) -> float:
    now = datetime.now(UTC)
    return sum(_price(inventory.collect(api, _namespace(i)), _namespace(i), sheet, now) for i in range(sessions))


def _floor(api: client.ApiClient) -> int:
    """One list per kind across the cluster, paged and parsed: the objects seen."""
    seen = 0
    for kind in cache.KINDS:
        token = None
        while True:
            kwargs: dict[str, Any] = {"limit": cache.PAGE, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            page = json.loads(kind.lister(api)(**kwargs).data)
            seen += len(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
    return seen


def _timed(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _wait_cached(watched: cache.ClusterCache, sessions: int, pods: int, timeout_s: float = 600) -> None:
    """Until the cache holds every pod, Running (kwok has finished its status writes: a quiet cluster)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = [watched.inventory(_namespace(i)) for i in range(sessions)]
        if all(h is not None and len(h.pods) == pods
               and all((p.get("status") or {}).get("phase") == "Running" for p in h.pods) for h in held):
            time.sleep(5)  # kwok has marked every pod Running: let the last status writes land
            return
        time.sleep(0.5)
    raise RuntimeError(f"the cache did not hold {sessions} x {pods} Running pods within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="100,500,1000", help="comma-separated N")
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="timed sweeps per row (median); the baseline runs once")
    parser.add_argument("--profile", action="store_true", help="profile the cache's sweep at the largest N")
    args = parser.parse_args()
    steps = sorted(int(n) for n in args.sessions.split(","))
    settings = Settings()
    sheet = load_sheet(settings.prices_file)
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        fleet = Path(tmp) / "fleet.yaml"
        fleet.write_text(yaml.safe_dump(FLEET))
        cluster = LocalCluster(workdir=Path(tmp), fleet_file=fleet, name="bench-sweep")
        cluster.up()
        rows: list[tuple[int, float, float, float, float, int]] = []
        try:
            with api_client(cluster.kubeconfig, pool_size=64, timeout=TIMEOUT) as api:
                watched = cache.ClusterCache(api, timeout=TIMEOUT)
                made = 0
                for n in steps:
                    began = time.monotonic()
                    with ThreadPoolExecutor(max_workers=16) as pool:
                        list(pool.map(lambda i: _make_sandbox(api, i, args.pods), range(made, n)))
                    print(f"made sandboxes {made}..{n - 1} x {args.pods} pods in {time.monotonic() - began:.1f} s",
                          flush=True)
                    made = n
                    if not watched.ready:
                        watched.start()
                        watched.wait_ready(120)
                    _wait_cached(watched, n, args.pods)
                    cached = _timed(lambda: _cache_sweep(watched, n, sheet), args.runs)  # noqa: B023
                    again = _timed(lambda: _cache_sweep(watched, n, sheet, nodes_again=True), args.runs)  # noqa: B023
                    direct = _timed(lambda: _direct_sweep(api, n, sheet), 1)  # noqa: B023
                    seen = 0

                    def floor() -> None:
                        nonlocal seen
                        seen = _floor(api)

                    floored = _timed(floor, args.runs)
                    rows.append((n, cached, again, direct, floored, seen))
                    print(f"N={n}: cache {cached:.2f} s (nodes priced per sandbox {again:.2f} s), "
                          f"per-namespace reads {direct:.2f} s, "
                          f"one list per kind {floored:.2f} s ({seen} objects)", flush=True)
                if args.profile:
                    profiler = cProfile.Profile()
                    profiler.enable()
                    _cache_sweep(watched, steps[-1], sheet)
                    profiler.disable()
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
                    print(out.getvalue())
                watched.stop()
        finally:
            cluster.down()
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.pods} pods a sandbox; cache and floor: median of {args.runs}, baseline: one sweep\n")
    print("| sessions | cache (s) | ms a session | cache, nodes priced per sandbox (s) | per-namespace reads (s) "
          "| ms a session | one list per kind (s) |")
    print("|---|---|---|---|---|---|---|")
    for n, cached, again, direct, floored, _ in rows:
        print(f"| {n} | {cached:.2f} | {1000 * cached / n:.1f} | {again:.2f} | {direct:.2f} | {1000 * direct / n:.1f} "
              f"| {floored:.2f} |")


if __name__ == "__main__":
    main()
