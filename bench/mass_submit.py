"""An exam ends: N learners with live sessions submit in the same moment, through a real ``labctl serve`` (SQLite).

Run: ``.venv/bin/python -m bench.mass_submit [-n 200] [--cluster NAME] [--replay-max-s 10] [--replay-step-s 5]``.

It uses (or brings up) the local cluster ``NAME`` (default ``bench-submit``; ``labctl cluster down --name NAME``
after) with a fleet of its own: the shipped pools with room for every starter pod, so nothing stays Pending. The lab
is a copy of ``tag-for-showback`` (6 pods, 3 graders) given a demand on its ``web-frontend``, so each submission
freezes the sandbox, replays the grading window on it, runs the graders in the jail and writes the grade and its
webhook event, as an exam's submissions do. The window is compressed to ``--replay-max-s`` real seconds
(``LABCTL_REPLAY_MAX_S``, set small here; a real lab replays for minutes) in steps of ``--replay-step-s``.

The N sessions are started first (not timed), then all submit at once (``POST .../submissions``, 202) and each
submission is polled until it is graded. Printed: grades/s (N over the time from the first submit to the last
grade), p50 / p95 / max of each submission's time from submit to graded (the server's ``created_at`` and
``graded_at``), the answers' statuses, ``/healthz`` latency (called every 50 ms during the burst) and that of the
polls (``GET /v1/submissions/{id}``, a route that takes a request thread). Beside them,
measured in the same run on the same machine:

- the replay's floor: the window as configured (no submission can be graded sooner);
- the interpreters' limit: as many jailed grader interpreters started (``python -S -c pass`` in the bubblewrap jail,
  with a grader's options, one per grader per submission) as the N submissions need, as many side by side as the
  machine has cores: no design that runs each grader as its own jailed process can grade faster;
- the limit of the whole: N / (the replay's floor + the interpreters' time), every replay overlapped with the others
  and the graders then run back to back on every core. "of the limit" is grades/s over it;
- the graders' limit: the lab's own graders (``runner.grade`` in the jail, on the lab's reference solution's
  snapshot) run N times, as many side by side as cores, in the benchmark's small process, plus the replay's floor:
  what grading itself costs beyond starting interpreters. "of graders" is grades/s over it;
- the cores each part kept busy during the burst (``bench.cpu``: the server, its children (the graders), the
  control plane, the benchmark's own polling, the machine).

Bounded: every wait has a deadline (starts 20 min, the burst ``--deadline-s``, default 10 min: what is still
grading then is counted as such, and the figures are over the rest; the clean-up 15 min). It removes what it made:
the sessions are stopped through the API, their namespaces waited for, the server stopped, its files deleted.
``--profile FILE`` records the server with py-spy during the burst (``--py-spy PATH``): a flame graph for ``.svg``,
else py-spy's collapsed stacks (one line a stack and its samples). ``--serve-log FILE`` keeps the server's log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from bench import fleet
from bench.class_start import remove_sandboxes
from bench.cpu import cost_line, cpu_line, cpu_used, part_pids, settle
from bench.serve import BenchServer, HealthProbe
from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.grading import jail as jail_mod
from labctl.grading import runner
from labctl.grading.runner import default_jail
from labctl.grading.snapshot import Snapshot
from labctl.localcluster.cluster import LocalCluster
from labctl.providers.kubernetes import render
from labctl.providers.kubernetes.client import api_client
from labctl.settings import REPO_ROOT, Settings

LAB = "tag-for-showback"
TOKEN = "bench-submit-token-0123456789abcdef0123456789"  # noqa: S105 - the bench server's own admin token
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
START_DEADLINE_S = 1200.0
CLEANUP_DEADLINE_S = 900.0
POLL_EVERY_S = 2.0
SOLUTION = REPO_ROOT / "tests" / "grading" / "fixtures" / f"{LAB}-solution.json"  # the graders' limit grades it

# A day of demand on the starter's web-frontend (2 replicas of 100m): low at night, busy in the day.
DEMAND = {
    "time_scale": 288, "start": "Mon 00:00", "grading_window": "1d",
    "workloads": [{"workload": "Deployment/web-frontend",
                   "daily": {"00:00": 2, "06:00": 10, "12:00": 16, "18:00": 8},
                   "per_request": {"cpu_core_seconds": 0.01}}],
}


@dataclass(frozen=True)
class Burst:
    """What the mass submit measured."""

    n: int
    accepted: dict[int, int]               # status of each POST .../submissions -> how many
    states: dict[str, int]                 # final state of each submission -> how many
    latencies_s: list[float]               # each submission's graded_at - created_at
    wall_s: float                          # first created_at to last graded_at
    health_ms: list[float]
    health_statuses: dict[int, int]
    poll_ms: list[float]                   # each GET /v1/submissions/{id} of the polling (a blocking route)
    extra_submissions: int                 # submissions beyond one per session (must be 0)
    tracebacks: int                        # tracebacks in the server's log during the burst
    cpu: dict[str, float]                  # CPU seconds each part used during the burst (bench.cpu)

    @property
    def per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s > 0 else 0.0  # those finished in time


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] if ordered else float("nan")


def bench_labs(directory: Path) -> Path:
    """Only the bench's lab: tag-for-showback with a demand on its web-frontend."""
    labs = directory / "labs"
    labs.mkdir()
    shutil.copytree(REPO_ROOT / "labs" / LAB, labs / LAB)
    path = labs / LAB / "lab.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["demand"] = DEMAND
    doc["attempts"] = 1
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return labs


class Serve(BenchServer):
    """``labctl serve`` on a fresh data dir with the bench's labs, the real grader jail and no periodic sweep."""

    def __init__(self, cluster: LocalCluster, directory: Path, labs: Path, *, replay_max_s: float,
                 replay_step_s: float) -> None:
        super().__init__(directory, {
            "LABCTL_KUBECONFIG": str(cluster.kubeconfig), "LABCTL_ADMIN_TOKEN": TOKEN,
            "LABCTL_SWEEP_INTERVAL_S": "3600", "LABCTL_LABS_DIR": str(labs),
            "LABCTL_FLEET_FILE": str(cluster.fleet_file), "LABCTL_REPLAY_MAX_S": f"{replay_max_s:g}",
            "LABCTL_REPLAY_STEP_S": f"{replay_step_s:g}"}, ready_timeout_s=90)


async def start_sessions(url: str, n: int) -> list[str]:
    """N sessions, 32 starts in flight at a time; every one must answer 201 and be ready."""
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=600, limits=limits) as c:
        async def one(i: int) -> str:
            async with gate:
                r = await c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": f"exam-{i:04d}"})
            if r.status_code != 201 or r.json()["state"] != "ready":
                raise RuntimeError(f"start {i} answered {r.status_code}: {r.text[:300]}")
            return str(r.json()["id"])

        return list(await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), START_DEADLINE_S))


async def submit_all(url: str, ids: list[str], *, deadline_s: float,
                     ) -> tuple[dict[int, int], dict[str, dict[str, Any]], int, list[float]]:
    """Every session submits at once; then every submission is polled until it is graded or failed, or the deadline
    passed: (statuses of the submits, the finished submissions, how many were still grading, each poll's ms)."""
    limits = httpx.Limits(max_connections=len(ids), max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=600, limits=limits) as c:
        answers = await asyncio.gather(*(c.post(f"/v1/sessions/{sid}/submissions") for sid in ids))
        accepted: dict[int, int] = {}
        for r in answers:
            accepted[r.status_code] = accepted.get(r.status_code, 0) + 1
        open_ids = [str(r.json()["id"]) for r in answers if r.status_code == 202]
        final: dict[str, dict[str, Any]] = {}
        polls: list[float] = []
        gate = asyncio.Semaphore(8)  # the poll is light: it must not be what loads the server

        async def look(sub_id: str) -> None:
            async with gate:
                t = time.perf_counter()
                try:
                    r = await c.get(f"/v1/submissions/{sub_id}")
                except httpx.TransportError:  # a kept-alive connection the server closed: asked again next round
                    return
                polls.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"GET /v1/submissions/{sub_id} answered {r.status_code}: {r.text[:300]}")
            if r.json()["state"] != "grading":
                final[sub_id] = r.json()

        deadline = time.monotonic() + deadline_s
        while len(final) < len(open_ids) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_EVERY_S)
            await asyncio.gather(*(look(s) for s in open_ids if s not in final))
        return accepted, final, len(open_ids) - len(final), polls


def count_submissions(url: str, ids: list[str]) -> int:
    """Submissions beyond one per session (a submission graded twice or opened twice would show here)."""
    extra = 0
    with httpx.Client(base_url=url, headers=HEADERS, timeout=120) as c:
        for sid in ids:
            extra += len(c.get(f"/v1/sessions/{sid}/submissions").json()) - 1
    return extra


def burst(serve: Serve, ids: list[str], *, pids: dict[str, int], deadline_s: float, profile: Path | None,
          py_spy: str) -> Burst:
    recorder = None
    logged = (serve.directory / "serve.log").stat().st_size
    if profile is not None:
        recorder = subprocess.Popen([py_spy, "record", "--pid", str(serve.proc.pid), "--threads", "--idle",
                                     "--rate", "50", "--nonblocking", "--output", str(profile),
                                     "--format", "flamegraph" if profile.suffix == ".svg" else "raw"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1.0)
    used: dict[str, float] = {}
    with HealthProbe(serve.url) as probe, cpu_used(pids, used):
        accepted, final, left, polls = asyncio.run(submit_all(serve.url, ids, deadline_s=deadline_s))
    if recorder is not None:
        recorder.send_signal(2)  # SIGINT: py-spy writes its file and exits
        recorder.wait(timeout=120)
    states: dict[str, int] = {"grading": left} if left else {}
    latencies: list[float] = []
    created: list[datetime] = []
    graded: list[datetime] = []
    for body in final.values():
        states[body["state"]] = states.get(body["state"], 0) + 1
        start, end = datetime.fromisoformat(body["created_at"]), datetime.fromisoformat(body["graded_at"])
        created.append(start)
        graded.append(end)
        latencies.append((end - start).total_seconds())
    wall = (max(graded) - min(created)).total_seconds() if graded else 0.0
    return Burst(n=len(ids), accepted=accepted, states=states, latencies_s=latencies, wall_s=wall,
                 health_ms=probe.samples, health_statuses=probe.statuses, poll_ms=polls,
                 extra_submissions=count_submissions(serve.url, ids), tracebacks=tracebacks(serve, since=logged),
                 cpu=used)


def tracebacks(serve: Serve, *, since: int) -> int:
    """Tracebacks the server logged after byte ``since`` of its log."""
    with (serve.directory / "serve.log").open("rb") as log:
        log.seek(since)
        return sum(line.startswith(b"Traceback") for line in log)


def graders_limit(lab: Lab, count: int, *, width: int) -> float:
    """Seconds for ``count`` of ``lab``'s gradings (:func:`labctl.grading.runner.grade` on its reference solution's
    snapshot, in the jail), ``width`` side by side in this small process: what the graders alone cost."""
    snapshot = Snapshot.model_validate_json(SOLUTION.read_text(encoding="utf-8"))
    jail = default_jail()

    def one(_: int) -> None:
        runner.grade(lab, snapshot, REPO_ROOT / "graders", REPO_ROOT, jail=jail)

    return side_by_side(one, count, width=width)


def side_by_side(one: Callable[[int], None], count: int, *, width: int) -> float:
    """Seconds to run ``one`` ``count`` times, ``width`` at once, after one untimed run (the file caches warmed)."""
    one(0)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=width) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started


def interpreters_limit(count: int, *, width: int) -> float:
    """Seconds to start ``count`` jailed Python interpreters (``python -S -c pass``, as graders start), ``width``
    side by side."""
    jail = default_jail()
    interpreter, libraries = jail_mod.python()
    scratch = Path(tempfile.mkdtemp(prefix="labctl-bench-jail-"))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": jail_mod.SCRATCH, "LANG": "C.UTF-8"}
    line = jail_mod.argv(jail, [str(interpreter), *runner.PYTHON_OPTIONS, "-c", "pass"], readable=libraries, env=env)

    def one(_: int) -> None:
        subprocess.run(line, check=True, cwd=scratch, env=jail_mod.launcher_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)

    try:
        return side_by_side(one, count, width=width)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stop_sessions(serve: Serve, ids: list[str], core: client.CoreV1Api) -> float:
    """Stop every session through the API and wait until its namespace is gone; seconds it took."""
    started = time.monotonic()
    with httpx.Client(base_url=serve.url, headers=HEADERS, timeout=600) as c, \
            ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda sid: c.delete(f"/v1/sessions/{sid}"), ids))
    wanted = set(ids)
    while time.monotonic() - started < CLEANUP_DEADLINE_S:
        left = {ns.metadata.name for ns in core.list_namespace(label_selector=f"{render.LAB_LABEL}={LAB}").items}
        if not left & wanted:
            break
        time.sleep(2)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mass_submit", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--learners", type=int, default=200, help="sessions that submit at once (1-1000)")
    parser.add_argument("--cluster", default="bench-submit")
    parser.add_argument("--replay-max-s", type=float, default=10.0, help="LABCTL_REPLAY_MAX_S of the server")
    parser.add_argument("--replay-step-s", type=float, default=5.0, help="LABCTL_REPLAY_STEP_S of the server")
    parser.add_argument("--deadline-s", type=float, default=600.0,
                        help="the longest the burst is waited for (what is still grading then is counted as such)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy record of the server during the burst (.svg: a flame graph)")
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable (with --profile)")
    parser.add_argument("--serve-log", type=Path, default=None, help="keep a copy of the server's log there")
    args = parser.parse_args(argv)
    n = max(1, min(args.learners, 1000))
    cores = len(os.sched_getaffinity(0))
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="labctl-mass-submit-") as tmp:
        directory = Path(tmp)
        cluster = LocalCluster(workdir=settings.local_cluster_workdir, fleet_file=fleet.roomy(directory),
                               name=args.cluster)
        cluster.up()
        labs = bench_labs(directory)
        lab = loader.load_catalog(labs, settings.manifests_dir, fleet_file=cluster.fleet_file)[LAB]
        graders = len(lab.graders)
        print(f"command: python -m bench.mass_submit {' '.join(argv if argv is not None else sys.argv[1:])}")
        print(f"machine: {os.cpu_count()} CPUs ({cores} usable), {platform.machine()}, Python "
              f"{platform.python_version()}; load average before: {os.getloadavg()[0]:.1f}")
        print(f"lab {LAB} with demand: {graders} graders a submission; replay window {args.replay_max_s:g} s "
              f"(LABCTL_REPLAY_MAX_S) in steps of {args.replay_step_s:g} s")
        interp_s = interpreters_limit(n * graders, width=cores)
        floor_s = args.replay_max_s
        limit = n / (floor_s + interp_s)
        print(f"interpreters' limit: {n * graders} jailed interpreters in {interp_s:.2f} s, {cores} side by side "
              f"({n / interp_s:.1f} grades/s of interpreters alone)")
        print(f"replay's floor: {floor_s:g} s a submission; limit of the whole: {n} / ({floor_s:g} + "
              f"{interp_s:.2f}) s = {limit:.2f} grades/s")
        grades_s = graders_limit(lab, n, width=cores)
        graders_whole = n / (floor_s + grades_s)
        print(f"graders' limit: {n} gradings of the lab's reference solution (runner.grade, jailed) in "
              f"{grades_s:.2f} s, {cores} side by side; with the replay's floor {graders_whole:.2f} grades/s")
        serve = Serve(cluster, directory, labs, replay_max_s=args.replay_max_s, replay_step_s=args.replay_step_s)
        ids: list[str] = []
        with api_client(cluster.kubeconfig) as kube:
            core = client.CoreV1Api(kube)
            try:
                t = time.monotonic()
                ids = asyncio.run(start_sessions(serve.url, n))
                ready = time.monotonic() - t
                print(f"{n} sessions ready in {ready:.0f} s, the machine quiet {settle(limit_s=60):.0f} s after (not "
                      "timed in the figures)", flush=True)
                result = burst(serve, ids, pids=part_pids(cluster, serve.proc.pid), deadline_s=args.deadline_s,
                               profile=args.profile, py_spy=args.py_spy)
            finally:
                gone = stop_sessions(serve, ids, core) if ids else 0.0
                serve.stop()
                if args.serve_log is not None:
                    shutil.copy(directory / "serve.log", args.serve_log)
                remove_sandboxes(core, prefix=LAB)
        print(f"stopped and removed in {gone:.0f} s")
        lat = result.latencies_s
        print()
        print(f"{'N':>5}{'grades/s':>10}{'of limit':>10}{'of graders':>11}{'p50 s':>8}{'p95 s':>8}{'max s':>8}"
              f"{'healthz p50/p95/max ms':>24}  submits / states / healthz statuses")
        print(f"{n:>5}{result.per_s:>10.2f}{result.per_s / limit:>10.2f}{result.per_s / graders_whole:>11.2f}"
              f"{pct(lat, 0.5):>8.2f}{pct(lat, 0.95):>8.2f}"
              f"{max(lat):>8.2f}{pct(result.health_ms, 0.5):>9.0f}/{pct(result.health_ms, 0.95):.0f}/"
              f"{max(result.health_ms):.0f}  {result.accepted} / {result.states} / {result.health_statuses}")
        print(cpu_line(result.cpu, "the burst"))
        print(cost_line(result.cpu, n, "submission"))
        print(f"GET /v1/submissions/{{id}} during the burst (a blocking route, 8 polls at a time): p50 / p95 / max "
              f"{pct(result.poll_ms, 0.5):.0f} / {pct(result.poll_ms, 0.95):.0f} / {max(result.poll_ms):.0f} ms")
        print(f"submissions beyond one per session: {result.extra_submissions}; tracebacks in the server's log "
              f"during the burst: {result.tracebacks}; load average after: {os.getloadavg()[0]:.1f}")
        if args.profile is not None:
            print(f"profile: {args.profile}")
        ok = (result.accepted == {202: n} and result.states == {"graded": n} and result.extra_submissions == 0)
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
