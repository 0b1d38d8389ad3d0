"""Three `labctl serve` replicas over one PostgreSQL database and one cluster: work spread over them happens once.

One world for the module: a database of its own on the test session's PostgreSQL server, three real replicas
(distinct ``LABCTL_REPLICA_ID``, sweeps and webhook delivery every second, a 3 s leader lease) started at the same
moment (so they also race to migrate the empty database), a `standardwebhooks` receiver subscribed to every event,
and the labs of ``tests/replicas/labs`` (one small worker each; ``replica-expiry`` lives 30 s and warns 25 s before
its end, a window wide enough for a sweep on a busy machine). Every request names the replica it goes to; every
figure is read back from the API, the store, the cluster (kubectl) or the receiver.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from labctl.localcluster.cluster import LocalCluster
from labctl.outbox.inbound import sign_request
from labctl.outbox.signing import new_secret
from labctl.settings import REPO_ROOT
from labctl.store.db import Store, open_store
from labctl.store.models import Lease
from labctl.store.webhook_models import OutboxEvent
from tests.support.postgres import fresh_database
from tests.support.server import Server, every_session
from tests.support.wait import eventually
from tests.webhooks.receiver import Receiver

HERE = Path(__file__).resolve().parent
LEASE_TTL_S = 3.0
SWEEP_S = 1  # seconds between sweeps
REPLICAS = 3
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class World:
    servers: list[Server]
    store: Store  # the replicas' database, read directly to check what they wrote
    receiver: Receiver
    exam_secret: str
    expiring: list[str]  # sessions of replica-expiry, started with the world so they expire while others run

    def client(self, replica: int) -> httpx.Client:
        return self.servers[replica].client()

    def alive(self) -> list[int]:
        return [i for i, s in enumerate(self.servers) if s.proc is not None and s.proc.poll() is None]

    def leader(self) -> tuple[str, datetime]:
        with self.store.session() as db:
            lease = db.scalars(select(Lease).where(Lease.name == "sweeps")).one()
            return lease.holder, lease.expires_at


def _manifests(root: Path) -> Path:
    """The product's sandbox templates beside the test labs' starters."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sandbox").symlink_to(REPO_ROOT / "manifests" / "sandbox")
    (root / "labs").symlink_to(HERE / "manifests" / "labs")
    return root


@pytest.fixture(scope="module")
def world(local_cluster: LocalCluster, postgres_url: str, kubectl: Kubectl,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("replicas")
    url = fresh_database(postgres_url, prefix="replicas")
    exam_secret = new_secret()
    env = {"LABCTL_DATABASE_URL": url, "LABCTL_SWEEP_INTERVAL_S": str(SWEEP_S), "LABCTL_LEADER_TTL_S": str(LEASE_TTL_S),
           "LABCTL_LABS_DIR": str(HERE / "labs"), "LABCTL_MANIFESTS_DIR": str(_manifests(tmp / "manifests")),
           "LABCTL_WEBHOOK_ALLOW": "127.0.0.1", "LABCTL_EXAM_WEBHOOK_SECRET": exam_secret}
    servers = [Server(data_dir=tmp / f"replica-{i}", kubeconfig=local_cluster.kubeconfig,
                      extra_env={**env, "LABCTL_REPLICA_ID": f"replica-{i}"}, ready_timeout_s=180)
               for i in range(REPLICAS)]
    for server in servers:
        server.data_dir.mkdir()
    receiver = Receiver().start()
    store = open_store(url)
    try:
        with ThreadPoolExecutor(max_workers=REPLICAS) as pool:  # at once: they race to migrate the empty database
            list(pool.map(lambda s: s.start(), servers))
        with servers[0].client() as c:
            made = c.post("/v1/webhooks/endpoints", json={"url": receiver.url, "events": ["*"]})
            assert made.status_code == 201, made.text
            receiver.secrets.append(made.json()["secret"])

        def start_expiring(i: int) -> str:
            with servers[i].client() as c:
                started = c.post("/v1/sessions", json={"lab_id": "replica-expiry", "learner_id": f"timer-{i}"})
            assert started.status_code == 201, started.text
            sid: str = started.json()["id"]
            return sid

        with ThreadPoolExecutor(max_workers=REPLICAS) as pool:
            expiring = list(pool.map(start_expiring, range(REPLICAS)))
        yield World(servers=servers, store=store, receiver=receiver, exam_secret=exam_secret, expiring=expiring)
    finally:
        for server in servers:
            server.stop()
        receiver.stop()
        # The module's sandboxes go with it (the cluster finishes the deletion; the next modules need the room).
        with store.engine.connect() as conn:
            left = [sid for (sid,) in conn.execute(text("SELECT id FROM sessions WHERE state <> 'terminated'"))]
        if left:
            selector = f"labctl.dev/session in ({','.join(left)})"
            for kind in ("namespace", "clusterrolebinding"):
                kubectl("delete", kind, "-l", selector, "--ignore-not-found", "--wait=false", check=True)
        store.engine.dispose()


def _namespaces(kubectl: Kubectl) -> Counter[str]:
    """Session id -> how many namespaces carry its label in the cluster."""
    got = kubectl("get", "namespaces", "-l", "labctl.dev/session", "-o", "json", check=True)
    return Counter(ns["metadata"]["labels"]["labctl.dev/session"] for ns in json.loads(got.stdout)["items"])


def _arrivals(world: World, event_type: str, session_id: str) -> list[str]:
    """The webhook ids of every arrival (duplicates kept) of ``event_type`` about ``session_id``."""
    return [a.msg_id for a in world.receiver.arrivals
            if a.event["type"] == event_type and a.event["data"].get("session_id") == session_id]


def _events(world: World, session_id: str) -> list[dict[str, Any]]:
    with world.client(world.alive()[0]) as c:
        answer = c.get(f"/v1/sessions/{session_id}/events")
        answer.raise_for_status()
        events: list[dict[str, Any]] = answer.json()
        return events


def test_a_class_start_spread_over_the_replicas_makes_one_session_per_learner(world: World,
                                                                              kubectl: Kubectl) -> None:
    learners = [f"learner-{i:02d}" for i in range(24)]
    # Round robin, and six learners asked for twice on two different replicas: 30 starts at once.
    starts = [(i % REPLICAS, learner) for i, learner in enumerate(learners)]
    starts += [((i + 1) % REPLICAS, learner) for i, learner in enumerate(learners[:6])]

    def start(job: tuple[int, str]) -> tuple[str, int, dict[str, Any]]:
        replica, learner = job
        with world.client(replica) as c:
            answer = c.post("/v1/sessions", json={"lab_id": "replica-drill", "learner_id": learner})
        return learner, answer.status_code, answer.json()

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(start, starts))
    assert {status for _, status, _ in answers} <= {200, 201}, [a for a in answers if a[1] not in (200, 201)]
    ids: dict[str, set[str]] = {}
    for learner, _, body in answers:
        ids.setdefault(learner, set()).add(body["id"])
    assert all(len(found) == 1 for found in ids.values()), ids  # a learner asked twice got the same session
    assert sum(status == 201 for _, status, _ in answers) == len(learners)
    sessions = {next(iter(found)) for found in ids.values()}

    def all_ready() -> bool:
        with world.client(1) as c:
            rows = [s for s in every_session(c) if s["id"] in sessions]
        assert {s["state"] for s in rows} == {"ready"}, Counter(s["state"] for s in rows)
        return True

    eventually(all_ready, timeout=180, interval=2)
    with world.client(2) as c:
        live = [s for s in every_session(c) if s["lab_id"] == "replica-drill" and s["state"] == "ready"]
    assert sorted(s["learner_id"] for s in live) == learners  # one live session per learner, whoever asked
    in_cluster = _namespaces(kubectl)
    assert all(in_cluster[sid] == 1 for sid in sessions), {sid: in_cluster[sid] for sid in sessions}

    # session.ready went out once per session, from whichever replica delivers, and once only.
    eventually(lambda: all(_arrivals(world, "session.ready", sid) for sid in sessions), timeout=60)
    assert all(len(_arrivals(world, "session.ready", sid)) == 1 for sid in sessions)
    assert all(a.verified for a in world.receiver.arrivals)


def test_an_expiry_fires_once(world: World) -> None:
    def terminated() -> bool:
        with world.client(0) as c:
            states = {c.get(f"/v1/sessions/{sid}").json()["state"] for sid in world.expiring}
        assert states == {"terminated"}, states
        return True

    eventually(terminated, timeout=120, interval=1)
    for sid in world.expiring:
        events = _events(world, sid)
        expired = [e for e in events if e["kind"] == "terminating"]
        assert len(expired) == 1 and "expired at" in json.dumps(expired[0]["detail"]), events
        assert len([e for e in events if e["kind"] == "expiring"]) == 1, events
        eventually(lambda sid=sid: _arrivals(world, "session.terminated", sid), timeout=30)  # type: ignore[misc]
        assert len(_arrivals(world, "session.expiring", sid)) == 1
        assert len(_arrivals(world, "session.terminated", sid)) == 1


def test_a_grade_asked_of_every_replica_at_once_is_graded_once(world: World) -> None:
    with world.client(0) as c:
        session = next(s for s in every_session(c) if s["learner_id"] == "learner-00" and s["state"] == "ready")
    sid = session["id"]
    body = json.dumps({"type": "grade.requested", "data": {"learner_id": "learner-00", "lab_id": "replica-drill"}})

    def ask(replica: int) -> httpx.Response:
        with world.client(replica) as c:
            if replica == 2:  # the course site's submit, beside the exam platform's two signed requests
                return c.post(f"/v1/sessions/{sid}/submissions")
            headers = sign_request(secret=world.exam_secret, msg_id=f"msg_{secrets.token_hex(6)}", body=body,
                                   timestamp=datetime.now(UTC))
            return c.post("/v1/hooks/exam", content=body, headers=headers)

    with ThreadPoolExecutor(max_workers=REPLICAS) as pool:
        answers = list(pool.map(ask, range(REPLICAS)))
    assert all(a.status_code in (200, 202, 409) for a in answers), [(a.status_code, a.text) for a in answers]
    refused = [a for a in answers if a.status_code == 409]
    assert all(a.headers["content-type"] == "application/problem+json" for a in refused)

    def graded() -> list[dict[str, Any]]:
        with world.client(1) as c:
            subs: list[dict[str, Any]] = c.get(f"/v1/sessions/{sid}/submissions").json()
        assert [s["state"] for s in subs] == ["graded"], subs
        return subs

    subs = eventually(graded, timeout=120, interval=1)
    made = {a.json()["result"]["submission_id"] for a in answers[:2] if a.status_code == 200}
    made |= {a.json()["id"] for a in answers[2:] if a.status_code == 202}
    assert made == {subs[0]["id"]}  # every answer that named a submission named the one there is
    eventually(lambda: [a for a in world.receiver.arrivals if a.event["type"] == "submission.graded"
                        and a.event["data"].get("session_id") == sid], timeout=30)
    time.sleep(2 * LEASE_TTL_S)  # room for a second grading or a second delivery, were there one
    assert len(_arrivals(world, "submission.graded", sid)) == 1
    with world.store.session() as db:
        graded_events = db.scalars(select(OutboxEvent).where(OutboxEvent.type == "submission.graded")).all()
    assert [e.payload["data"]["session_id"] for e in graded_events] == [sid]


def test_killing_the_leader_hands_the_jobs_over_within_the_lease(world: World) -> None:
    def quiet() -> bool:  # no delivery in flight: the kill cuts no attempt (whose retry would be a duplicate)
        with world.store.engine.connect() as conn:
            open_ = conn.execute(text("SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'")).scalar()
        return open_ == 0

    eventually(quiet, timeout=60)
    holder, _ = world.leader()
    victim = int(holder.rpartition("-")[2])
    world.servers[victim].kill()  # SIGKILL mid-run: sweeps and deliveries were going every second
    killed_at = time.monotonic()

    def taken_over() -> str:
        now_holder, expires = world.leader()
        return now_holder if now_holder != holder and expires > datetime.now(UTC) else ""

    successor = eventually(taken_over, timeout=4 * LEASE_TTL_S, interval=0.1)
    handover = time.monotonic() - killed_at
    assert handover <= LEASE_TTL_S + 2.0, handover  # the lease, plus a job's interval and a poll
    assert successor in {f"replica-{i}" for i in world.alive()}

    # Nothing lost: the successor meters on, and a stop asked of any survivor is finished and announced, once.
    survivors = world.alive()
    with world.client(survivors[0]) as c:
        live = [s for s in every_session(c) if s["lab_id"] == "replica-drill" and s["state"] == "ready"]
    def metered() -> dict[str, datetime]:
        with world.store.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, last_metered_at FROM sessions WHERE state = 'ready' "
                                     "AND lab_id = 'replica-drill'")).all()
        return {sid: at for sid, at in rows}

    before = metered()
    eventually(lambda: all(at > before[sid] for sid, at in metered().items() if sid in before), timeout=30)

    stopped = [s["id"] for s in live[:6]]
    for n, sid in enumerate(stopped):
        with world.client(survivors[n % len(survivors)]) as c:
            assert c.delete(f"/v1/sessions/{sid}").status_code == 202
    eventually(lambda: all(_arrivals(world, "session.terminated", sid) for sid in stopped), timeout=120, interval=1)

    # Nothing doubled: every event in the outbox reached the receiver exactly once; no ledger ran ahead of time.
    eventually(quiet, timeout=60)
    with world.store.session() as db:
        event_ids = set(db.scalars(select(OutboxEvent.id)))
    arrived = Counter(a.msg_id for a in world.receiver.arrivals)
    assert set(arrived) == event_ids
    assert set(arrived.values()) == {1}, [m for m, n in arrived.items() if n > 1]
    with world.store.engine.connect() as conn:
        ledgers = conn.execute(text(
            "SELECT id, accrued_usd, burn_rate_usd_per_hour, ready_at, last_metered_at FROM sessions "
            "WHERE lab_id = 'replica-drill' AND ready_at IS NOT NULL AND last_metered_at IS NOT NULL")).all()
    for sid, accrued, rate, ready_at, metered_at in ledgers:
        seconds = (metered_at - ready_at).total_seconds()
        most = float(rate) * seconds / 3600
        # Each reading's accrual is kept at the ledger's 6 places: with a reading a second, up to half a millionth
        # of a dollar more each (a reading of $0.0000009 is kept as $0.000001).
        rounding = (seconds / SWEEP_S + 1) * 5e-7
        assert float(accrued) <= most * 1.05 + rounding + 1e-6, (sid, accrued, most, rounding)
