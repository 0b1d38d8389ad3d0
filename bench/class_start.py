"""A class starting at once: N concurrent ``POST /v1/sessions`` through a real ``labctl serve`` (on SQLite, on
PostgreSQL, or each in turn), cold and from a warm pool, beside the same rendered objects applied by a ``kubectl
apply`` loop (one at a time and 8 side by side) and the apiserver's raw write ceiling (plain creates, 32 side by
side); then ``/healthz`` timed while the N sessions are deleted.

Run: ``.venv/bin/python -m bench.class_start [--sizes 50,200,500] [--kubectl-sessions 50] [--cluster NAME]
[--stores sqlite,postgresql] [--database-url URL] [--profile DIR]``. It uses (or brings up) the local cluster ``NAME``
(default ``bench-class``; ``labctl cluster down --name NAME`` after) on a fleet with room for the class
(:mod:`bench.fleet`), one ``labctl serve`` per run on a fresh store
(a SQLite file; on PostgreSQL a fresh database on the server of ``--database-url``, or, without it, on a throwaway
server started as the tests start theirs: Debian's ``postgresql`` binaries), and removes every sandbox it made.
``--profile DIR``: ``py-spy record`` attached to the serve process during the starts and during the deletes of each
run (collapsed stacks in ``DIR``), and the frames that hold the most samples printed under each run's row (py-spy is
no dependency of labctl: ``.venv/bin/pip install py-spy`` first).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from bench import fleet
from bench.cpu import cost_line, cpu_line, cpu_used, part_pids, settle
from bench.serve import BenchServer, HealthProbe
from labctl.catalog import loader
from labctl.localcluster.cluster import LocalCluster
from labctl.ports import SandboxSpec
from labctl.providers.kubernetes import render
from labctl.providers.kubernetes.client import api_client
from labctl.settings import REPO_ROOT, Settings
from tests.support.postgres import fresh_database, private_postgres

LAB = "tag-for-showback"
PY_SPY = str(Path(sys.executable).parent / "py-spy")
TOKEN = "bench-admin-token-0123456789abcdef0123456789"  # noqa: S105 - the bench server's own admin token
MANIFESTS = REPO_ROOT / "manifests"


@dataclass
class Starts:
    label: str
    n: int
    wall_s: float
    answers_s: list[float]
    statuses: dict[int, int]

    @property
    def per_s(self) -> float:
        return self.n / self.wall_s

    def pct(self, q: float) -> float:
        ordered = sorted(self.answers_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Serve(BenchServer):
    """``labctl serve`` on a fresh data dir, its labs a copy of the shipped lab with ``pool: {warm: N}`` when asked."""

    def __init__(self, cluster: LocalCluster, directory: Path, *, warm: int, database_url: str | None) -> None:
        labs = directory / "labs"
        shutil.copytree(REPO_ROOT / "labs" / LAB, labs / LAB)
        if warm:
            path = labs / LAB / "lab.yaml"
            data = yaml.safe_load(path.read_text())
            data["pool"] = {"warm": warm}
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        super().__init__(directory, {
            "LABCTL_KUBECONFIG": str(cluster.kubeconfig), "LABCTL_ADMIN_TOKEN": TOKEN,
            "LABCTL_SWEEP_INTERVAL_S": "3600",  # the pool fills at start
            "LABCTL_LABS_DIR": str(labs), "LABCTL_SIMULATE_DEMAND": "false", "LABCTL_GRADER_UNJAILED_FALLBACK": "true",
            **({"LABCTL_DATABASE_URL": database_url} if database_url else {})})

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def wait_pool(self, n: int, *, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            view = httpx.get(f"{self.url}/v1/labs/{LAB}/pool", headers=self.headers(), timeout=30).json()
            if view["pooled"] >= n:
                return time.monotonic() - started
            time.sleep(1)
        raise RuntimeError(f"the pool did not fill to {n} in {timeout_s:.0f}s")


async def _starts(url: str, headers: dict[str, str], n: int, label: str) -> tuple[Starts, list[str]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as c:
        async def one(i: int) -> tuple[float, int, str | None]:
            t = time.perf_counter()
            r = await c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": f"bench-{label}-{i}"})
            return time.perf_counter() - t, r.status_code, r.json().get("id") if r.status_code < 300 else None

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for _, code, _ in results:
        statuses[code] = statuses.get(code, 0) + 1
    return (Starts(label=label, n=n, wall_s=wall, answers_s=[r[0] for r in results], statuses=statuses),
            [r[2] for r in results if r[2]])


@contextmanager
def profiled(pid: int, out: Path | None, *, idle: bool = False, rate: int = 100) -> Iterator[None]:
    """``py-spy record`` of process ``pid`` into ``out`` for the block (its running threads; ``idle``: waiting ones
    too, so a path's shares are of its wall time); nothing when ``out`` is None."""
    if out is None:
        yield
        return
    spy = subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                            "--nonblocking", "--threads", "-o", str(out), *(["--idle"] if idle else [])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the block starts
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        spy.wait(timeout=60)


def hot_frames(path: Path, *, top: int = 12) -> list[tuple[str, float, float]]:
    """(frame, share of samples with it on the stack, share with it on top) from py-spy's collapsed stacks, the
    ``top`` frames with the highest inclusive share (the thread and process frames left out)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        total += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
        if frames:
            own[frames[-1]] += int(count)
    plumbing = ("(threading.py)", "(concurrent/futures/", "(anyio/", "(typer/", "(click/", "(asyncio/", "<module>")
    ranked = [(f, n) for f, n in inclusive.most_common() if not any(p in f for p in plumbing)]
    return [(f, n / max(total, 1), own[f] / max(total, 1)) for f, n in ranked[:top]]


def print_profile(label: str, path: Path) -> None:
    if not path.exists():
        print(f"    {label}: py-spy wrote nothing")
        return
    print(f"    profile of the {label} ({path}): share on stack / on top")
    for frame, incl, top in hot_frames(path):
        print(f"      {incl:6.1%} {top:6.1%}  {frame[:140]}")


def health_while_deleting(serve: Serve, ids: list[str], core: client.CoreV1Api) -> tuple[float, float, float]:
    """(p95, max) ms of /healthz polled every 50 ms (:class:`HealthProbe`) while the sessions are deleted, and the
    seconds until every namespace is gone."""
    started = time.monotonic()
    with HealthProbe(serve.url) as probe:
        with httpx.Client(base_url=serve.url, headers=serve.headers(), timeout=600) as c, \
                ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(lambda i: c.delete(f"/v1/sessions/{i}"), ids))
        wanted = set(ids)
        while time.monotonic() - started < 900:
            left = {ns.metadata.name for ns in core.list_namespace(label_selector=f"{render.LAB_LABEL}={LAB}").items}
            if not left & wanted:
                break
            time.sleep(1)
        gone = time.monotonic() - started
        time.sleep(0.5)
    ordered = sorted(probe.samples)
    return ordered[int(0.95 * (len(ordered) - 1))], ordered[-1], gone


def rendered(n: int) -> list[list[dict[str, Any]]]:
    """The objects of ``n`` sandboxes as labctl renders them (namespace, policy, quota, network, RBAC, starter)."""
    lab = loader.load_catalog(REPO_ROOT / "labs", MANIFESTS)[LAB]
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        sid = f"{LAB}-k{secrets.token_hex(4)}"
        spec = SandboxSpec(session_id=sid, lab=lab, learner_id=f"kubectl-{i}", namespace=sid,
                           expires_at=now + timedelta(hours=1), budget_usd=2.0, started_at=now)
        out.append(render.sandbox_objects(spec, MANIFESTS) + render.starter_objects(spec, MANIFESTS))
    return out


def kubectl_loop(cluster: LocalCluster, sandboxes: list[list[dict[str, Any]]], *, width: int,
                 directory: Path) -> float:
    """Sessions per second of ``kubectl apply --server-side`` of each sandbox's file, ``width`` side by side."""
    files = []
    for index, objects in enumerate(sandboxes):
        path = directory / f"sandbox-{width}-{index}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        files.append(path)

    def apply(path: Path) -> None:
        cluster.kubectl(["apply", "--server-side", "--force-conflicts", "-f", str(path)], timeout=120)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=width) as pool:
        list(pool.map(apply, files))
    return len(files) / (time.perf_counter() - started)


def write_ceiling(kube: client.ApiClient, *, objects: int, width: int) -> float:
    """Objects per second of plain ConfigMap creates through the API, ``width`` side by side, in one namespace."""
    core = client.CoreV1Api(kube)
    ns = f"bench-ceiling-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={"labctl.dev/test": "1"})))
    try:
        def create(i: int) -> None:
            core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}"),
                                                                     data={"k": "v"}))

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=width) as pool:
            list(pool.map(create, range(objects)))
        return objects / (time.perf_counter() - started)
    finally:
        core.delete_namespace(ns)


def remove_sandboxes(core: client.CoreV1Api, *, prefix: str) -> None:
    """Delete the namespaces and node bindings of sandboxes whose name starts with ``prefix``."""
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    for ns in core.list_namespace(label_selector=f"{render.LAB_LABEL}={LAB}").items:
        if ns.metadata.name.startswith(prefix) and ns.metadata.deletion_timestamp is None:
            core.delete_namespace(ns.metadata.name)
    for binding in rbac.list_cluster_role_binding().items:
        if binding.metadata.name.startswith(render.node_binding_name(prefix)):
            rbac.delete_cluster_role_binding(binding.metadata.name)


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """The PostgreSQL server the runs on PostgreSQL use: ``url`` as given, a throwaway one when it is None (stopped
    and deleted after), none when it is empty (no run on PostgreSQL)."""
    if url is not None:
        yield url
        return
    with private_postgres() as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="50,200,500")
    parser.add_argument("--kubectl-sessions", type=int, default=50)
    parser.add_argument("--cluster", default="bench-class")
    parser.add_argument("--modes", default="cold,warm")
    parser.add_argument("--stores", default="sqlite", help="sqlite, postgresql, or both in turn: sqlite,postgresql")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server's URL for --stores postgresql (each run gets a fresh database on "
                             "it); default: a throwaway server started for the run")
    parser.add_argument("--profile", type=Path, default=None, help="directory for py-spy's collapsed stacks")
    parser.add_argument("--profile-idle", action="store_true", help="profile waiting threads too (wall time)")
    args = parser.parse_args()
    # Stopped (SIGTERM) mid-run, it still stops its labctl serve and removes its sandboxes (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="labctl-class-fleet-") as fleet_dir:  # read by `up` only
        cluster = LocalCluster(workdir=settings.local_cluster_workdir, fleet_file=fleet.roomy(Path(fleet_dir)),
                               name=args.cluster)
        cluster.up()
    sizes = [int(s) for s in args.sizes.split(",")]
    stores = args.stores.split(",")
    if set(stores) - {"sqlite", "postgresql"}:
        parser.error(f"--stores: sqlite and/or postgresql, not {args.stores}")
    if args.profile is not None:
        if not Path(PY_SPY).exists():
            parser.error(f"--profile needs py-spy at {PY_SPY}: .venv/bin/pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
    per_session = len(rendered(1)[0])
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}; command: python -m bench.class_start --sizes {args.sizes} "
          f"--kubectl-sessions {args.kubectl_sessions} --modes {args.modes} --stores {args.stores}")
    print(f"lab {LAB}: {per_session} objects a session (sandbox + starter)")
    with api_client(cluster.kubeconfig) as kube, tempfile.TemporaryDirectory(prefix="labctl-class-") as tmp, \
            postgres_server(args.database_url if "postgresql" in stores else "") as pg_server:
        core = client.CoreV1Api(kube)
        ceiling = write_ceiling(kube, objects=3000, width=32)
        print(f"raw write ceiling: {ceiling:.0f} objects/s (3000 ConfigMap creates, 32 side by side)")
        for label, width in (("kubectl apply loop, sequential", 1), ("kubectl apply loop, 8 wide", 8)):
            if args.kubectl_sessions:  # 0: no kubectl baselines (a profiling run)
                rate = kubectl_loop(cluster, rendered(args.kubectl_sessions), width=width, directory=Path(tmp))
                remove_sandboxes(core, prefix=f"{LAB}-k")
                print(f"{label:34} {rate:6.1f} sessions/s  {rate * per_session / ceiling:5.2f} of the ceiling")
        print(f"{'store':11}{'run':7}{'N':>5}{'sessions/s':>12}{'p50 s':>8}{'p95 s':>8}{'max s':>8}{'ceiling':>9}"
              f"{'healthz p95/max ms':>20}{'deleted in s':>14}  statuses")
        for store, n, mode in itertools.product(stores, sizes, args.modes.split(",")):
            directory = Path(tmp) / f"{store}-{mode}-{n}"
            directory.mkdir()
            database = fresh_database(pg_server, prefix="bench") if store == "postgresql" else None
            serve = Serve(cluster, directory, warm=n if mode == "warm" else 0, database_url=database)
            try:
                filled = serve.wait_pool(n, timeout_s=1800) if mode == "warm" else 0.0
                settled = settle()  # the controllers done with the pool's (or the last run's) sandboxes
                starts_out, delete_out = ((args.profile / f"{store}-{mode}-{n}-{what}.txt"
                                           for what in ("starts", "delete")) if args.profile else (None, None))
                used: dict[str, float] = {}
                with profiled(serve.proc.pid, starts_out, idle=args.profile_idle), \
                        cpu_used(part_pids(cluster, serve.proc.pid), used):
                    result, ids = asyncio.run(_starts(serve.url, serve.headers(), n, f"{mode}{n}"))
                with profiled(serve.proc.pid, delete_out, idle=args.profile_idle):
                    p95h, maxh, gone = health_while_deleting(serve, ids, core)
            finally:
                serve.stop()
                remove_sandboxes(core, prefix=LAB)  # what a stopped serve left (none but a refill's)
            filling = f"pool filled in {filled:.0f}s, " if mode == "warm" else ""
            extra = f" ({filling}settled {settled:.0f}s before)"
            print(f"{store:11}{mode:7}{n:>5}{result.per_s:>12.1f}{result.pct(0.5):>8.2f}{result.pct(0.95):>8.2f}"
                  f"{max(result.answers_s):>8.2f}{result.per_s * per_session / ceiling:>9.2f}"
                  f"{p95h:>11.0f}/{maxh:<8.0f}{gone:>14.0f}  {result.statuses}{extra}", flush=True)
            print(cpu_line(used, "the starts"), flush=True)
            print(cost_line(used, n, "start"), flush=True)
            if starts_out is not None and delete_out is not None:
                print_profile("starts", starts_out)
                print_profile("deletes", delete_out)


if __name__ == "__main__":
    main()
