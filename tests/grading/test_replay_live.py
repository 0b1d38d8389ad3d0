"""The grading window replayed at submission on the live, frozen sandbox: the learner's HPA (made with the real
kubectl and the learner's kubeconfig) scales the Deployment up as the simulated day's demand rises and down as it
falls, while the learner can write nothing; the graded ``service`` figures are the replay window's ledger rows, and
each workload's cost is the sum of its steps (pods that came and went included). A replay is cancelled by a stop
without a 5xx, and one whose process was killed is replayed again by ``Submissions.reconcile`` without using an
attempt. On SQLite and PostgreSQL where the ledger is written.

A simulated day lasts 90 real seconds (30 s in the stop and kill tests), in steps of 5 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from labctl.catalog.models import Demand
from labctl.localcluster.cluster import LocalCluster
from labctl.service.sweeps import pod_rates
from labctl.settings import REPO_ROOT
from labctl.simulator import ledger, model
from labctl.store.models import SandboxSession, Submission
from tests.grading.replay_world import (
    HPA,
    INSTRUCTOR,
    WORKLOAD,
    World,
    database_url,
    make_world,
    running_world,
)
from tests.support.wait import eventually
from tests.sweeps.test_meter_and_timers import HEADERS, _pods_running

SELECTOR = "app=legacy-dashboard"


@pytest.fixture(params=["sqlite", "postgresql"])
def day_world(request: pytest.FixtureRequest, tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    yield from running_world(make_world(tmp_path, local_cluster, seconds_per_day=90,
                                        url=database_url(request, tmp_path)))


@pytest.fixture
def short_world(tmp_path: Path, local_cluster: LocalCluster) -> Iterator[World]:
    yield from running_world(make_world(tmp_path, local_cluster, seconds_per_day=30))


def _ready_with_hpa(world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path, learner: str,
                    ) -> tuple[str, str, Path]:
    session = world.start(learner)
    sid, ns = session["id"], session["namespace"]
    eventually(lambda: _pods_running(kube, ns, SELECTOR, 3), timeout=90)
    kubeconfig = tmp_path / f"{learner}.kubeconfig"
    kubeconfig.write_text(world.client.get(f"/v1/sessions/{sid}/kubeconfig", headers=HEADERS).text)
    made = kubectl("apply", "-f", "-", stdin=HPA, kubeconfig=kubeconfig)
    assert made.returncode == 0, made.stderr
    assert world.rt.sweeper.run_once().errors == []  # the first metering: the starter's figures are recorded
    return sid, ns, kubeconfig


def _expected_offered(world: World) -> Decimal:
    """What the window offers (pods do not change it): the exact integral of the day's curve, in real seconds."""
    lab_demand: Demand = world.rt.catalog["idle-hunter"].demand
    (whole,) = model.replay(lab_demand, [], node_cpu_cores={}, step_seconds=model.window_seconds(lab_demand),
                            anchor=world.clock())
    return ledger.to_ledger(whole.workload(WORKLOAD).offered)


def _window(world: World, sid: str, window: str) -> dict[str, Any]:
    with world.rt.store.session() as db:
        return {r.workload: r for r in ledger.ledger(db, session_id=sid, window=window)}


def test_the_hpa_follows_the_replayed_day_and_the_grade_reads_the_window(
        day_world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path) -> None:
    world = day_world
    sid, ns, kubeconfig = _ready_with_hpa(world, kube, kubectl, tmp_path, "replayer")
    rt = world.rt
    live_before = {k: (r.offered, r.cost_usd) for k, r in _window(world, sid, ledger.LIVE).items()}
    accrued_before = Decimal(rt.sessions.row_of(sid).accrued_usd)

    steps: list[tuple[str, model.Step, dict[str, Decimal], bool]] = []
    record = rt.sweeper.record

    def watched(session_id: str, taken: Any, sheet: Any, **kw: Any) -> Any:
        """What each metering recorded (a spy on the real call, which goes on unchanged)."""
        snap = record(session_id, taken, sheet, **kw)
        if kw.get("step") is not None:
            steps.append((kw.get("window", ledger.LIVE), kw["step"], pod_rates(snap), kw.get("fresh", True)))
        return snap

    rt.sweeper.record = watched
    sub = rt.submissions.submit(sid, principal=INSTRUCTOR)
    grading = threading.Thread(target=rt.submissions.grade, args=(sub.id,))
    grading.start()
    apps = client.AppsV1Api(kube)
    seen: list[tuple[float, int]] = []  # (replay seconds done, the Deployment's replicas)
    progress: list[dict[str, Any]] = []
    refused = None
    while grading.is_alive():
        body = world.submission(sub.id)
        if body["progress"]:
            progress.append(body["progress"])
            seen.append((body["progress"]["done_s"], int(apps.read_namespaced_deployment(
                "legacy-dashboard", ns).spec.replicas)))
        if refused is None and body["progress"]:
            refused = kubectl("scale", "deployment/legacy-dashboard", "--replicas=1", kubeconfig=kubeconfig)
        time.sleep(1)
    grading.join()
    done = world.submission(sub.id)
    assert done["state"] == "graded", done
    assert done["progress"] is None

    # The learner could write nothing during the replay; the controller-manager could.
    assert refused is not None and refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    assert progress[0]["phase"] == "replaying" and progress[-1]["total_s"] == 90
    assert {p["simulated_at"][:3] for p in progress} <= {"Mon", "Tue"}
    peak = max(r for _, r in seen)
    rise = [r for s, r in seen if 20 <= s <= 50]
    late = [r for s, r in seen if s >= 75]
    assert peak >= 4, seen                    # up as the morning's demand came (80/s on 0.125 cores a pod)
    assert rise and max(rise) == peak, seen   # ... during the day
    assert late and min(late) < peak, seen    # ... and down again as the evening's fell

    # The graded figures are the replay window's ledger rows, and nothing else.
    window = _window(world, sid, sub.id)
    row = window[WORKLOAD]
    (graded,) = done["receipt"]["service"]
    mine = graded["learner"]
    snapshot_service = rt.submissions._row(sub.id).snapshot["service"]
    assert snapshot_service == [mine]
    assert (Decimal(str(mine["offered"])), Decimal(str(mine["served"])), Decimal(str(mine["dropped"]))) == \
        (row.offered, row.served, row.dropped)
    assert Decimal(str(mine["cost_usd"])) == row.cost_usd
    assert row.offered == _expected_offered(world)
    assert row.served + row.dropped == row.offered and row.served > 0
    assert mine["cost_per_1000_requests"] == pytest.approx(float(row.cost_usd / row.served * 1000))

    # Each workload's cost is the sum of its steps: its pods of that step x their rate x the step's seconds.
    replayed = [(step, rates) for w, step, rates, fresh in steps if w == sub.id and fresh]
    assert len(replayed) == 18
    assert row.cost_usd == sum((ledger.workload_costs(step, rates)[WORKLOAD] for step, rates in replayed), Decimal(0))
    counts = {len(step.workload(WORKLOAD).pods) for step, _ in replayed}
    assert len(counts) > 1, counts  # pods came and went, and every step's were counted
    assert row.cost_usd > 0

    # The starter's figures beside them: its 3 fixed replicas played over the same window by the pure model.
    starter = graded["starter"]
    assert starter is not None and starter["offered"] == pytest.approx(mine["offered"])
    assert starter["served_share"] == pytest.approx(1.0)
    assert "starter" in done["receipt"]["text"] and WORKLOAD in done["receipt"]["text"]

    # The money of the replay is the session's (real cost meanwhile); the live window counted nothing meanwhile.
    assert Decimal(rt.sessions.row_of(sid).accrued_usd) > accrued_before
    assert {k: (r.offered, r.cost_usd) for k, r in _window(world, sid, ledger.LIVE).items()} == live_before


def test_a_stop_during_the_replay_ends_it_without_a_5xx_and_uses_no_attempt(
        short_world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path) -> None:
    world = short_world
    sid, _, _ = _ready_with_hpa(world, kube, kubectl, tmp_path, "stopper")
    rt = world.rt
    sub = rt.submissions.submit(sid, principal=INSTRUCTOR)
    grading = threading.Thread(target=rt.submissions.grade, args=(sub.id,))
    grading.start()
    eventually(lambda: (world.submission(sub.id)["progress"] or {}).get("done_s", 0) >= 5, timeout=60)
    stopped = world.client.delete(f"/v1/sessions/{sid}", headers=HEADERS)
    assert stopped.status_code == 202, stopped.text
    grading.join(timeout=120)
    assert not grading.is_alive()
    body = world.submission(sub.id)
    assert body["state"] == "error", body
    assert "no attempt was used" in body["error"] and body["progress"] is None
    again = world.client.get(f"/v1/sessions/{sid}/submissions", headers=HEADERS)
    assert again.status_code == 200 and [s["state"] for s in again.json()] == ["error"]


def test_a_replay_killed_with_its_process_is_replayed_by_reconcile(
        short_world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path) -> None:
    world = short_world
    sid, _, _ = _ready_with_hpa(world, kube, kubectl, tmp_path, "crasher")
    rt = world.rt
    sub = rt.submissions.submit(sid, principal=INSTRUCTOR)
    settings = world.settings.model_dump(mode="json", include={
        "data_dir", "kubeconfig", "labs_dir", "fleet_file", "database_url", "replay_step_s", "replay_max_s"})
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.grading.replay_child", json.dumps(settings), sub.id, world.clock().isoformat()],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def replayed_a_while() -> bool:
            with rt.store.session() as db:
                row = db.get(Submission, sub.id)
                return bool(row and row.progress and float(str(row.progress["done_s"])) >= 10)
        eventually(replayed_a_while, timeout=90, interval=0.5)
    finally:
        child.send_signal(signal.SIGKILL)  # no clean-up of any kind: the process is gone mid-replay
        out = child.communicate(timeout=30)[0]
    assert child.returncode == -signal.SIGKILL, out
    half = _window(world, sid, sub.id)[WORKLOAD]
    assert Decimal(0) < half.offered < _expected_offered(world)
    assert world.submission(sub.id)["state"] == "grading"

    assert rt.submissions.reconcile() == 0          # its heartbeat is recent: it might still be running elsewhere
    world.clock.advance(minutes=6)
    assert rt.submissions.reconcile() >= 1         # stale: replayed from the start and graded
    body = world.submission(sub.id)
    assert body["state"] == "graded", body
    row = _window(world, sid, sub.id)[WORKLOAD]
    assert row.offered == _expected_offered(world)  # one window, not one and a half
    assert body["receipt"]["service"][0]["learner"]["offered"] == float(row.offered)
    assert body["attempt"] == 1
    with rt.store.session() as db:
        assert db.get(SandboxSession, sid).state in ("ready", "graded")
