"""PostgreSQL restarted under load: a private server stopped (``immediate``: every connection cut, as in a crash) and
started again while 10 clients start, extend, read and submit sessions through ``labctl serve`` and its sweeps meter
every second. Nothing is lost or counted twice:

- the ledger: at most one reading per session per metering moment, and each reading's accrual is the previous
  reading's burn rate x the time between them (a metering that failed accrued nothing and moved nothing);
- deliveries: one row per event and endpoint, all delivered, and the receiver (``standardwebhooks``) saw every event
  id (a retry after the outage carries the same id, which a receiver de-duplicates);
- grades: one submission per session that submitted, each graded or in error, none left grading (a submit answered
  503 may have committed before the store went away; its retry is told it is being graded). A grading the outage
  cut short stays ``grading`` until the reconciler's regrade takes it up, five minutes after its last heartbeat
  (``Submissions.reconcile``), which is most of this test's time.

During the outage the API answers 503 problems with ``Retry-After`` (the store did not answer), never a 500.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from labctl.localcluster.cluster import LocalCluster
from tests.support.postgres import PostgresServer, private_postgres
from tests.support.server import Server
from tests.support.wait import eventually
from tests.webhooks.receiver import Receiver

pytestmark = [pytest.mark.resilience, pytest.mark.cluster, pytest.mark.postgres]

LAB = "tag-for-showback"
CLIENTS = 10
DOWN_S = 6.0
VARYING = re.compile(r"tag-for-showback-[0-9a-f]+|sub-[0-9a-f]+|[0-9:T.+-]{19,}")  # ids and times, left out
ROUNDING = Decimal("0.000002")  # two roundings at the ledger's precision (Numeric(14, 6)) per reading


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    with private_postgres() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def serve(pg: PostgresServer, local_cluster: LocalCluster, tmp_path: Path) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path, kubeconfig=local_cluster.kubeconfig,
                 extra_env={"LABCTL_DATABASE_URL": pg.url, "LABCTL_SWEEP_INTERVAL_S": "1",
                            "LABCTL_SIMULATE_DEMAND": "false", "LABCTL_WEBHOOK_ALLOW": "127.0.0.1"}).start()
    try:
        yield srv
    finally:
        srv.close(timeout_s=240)


def _client_loop(srv: Server, i: int, submit_at: float, until: float,
                 answers: list[tuple[str, str, httpx.Response]], lock: threading.Lock) -> None:
    """One learner (its own token): start, then extend and read, and submit once (from ``submit_at``, so gradings
    run into the outage), until ``until``."""
    learner = f"pg-{i:02d}"
    sid: str | None = None
    submitted = False
    with srv.client() as admin:  # the learner's own token is checked against the store at the edge, every request
        made = admin.post("/v1/tokens", json={"name": learner, "role": "learner", "learner_id": learner})
        assert made.status_code == 201, made.text
    with srv.client(made.json()["token"]) as c:
        while time.monotonic() < until:
            try:
                if sid is None:
                    r = c.post("/v1/sessions", json={"lab_id": LAB, "learner_id": learner})
                    what = "start"
                    if r.status_code in (200, 201):
                        sid = r.json()["id"]
                elif not submitted and time.monotonic() > submit_at:
                    r = c.post(f"/v1/sessions/{sid}/submissions")
                    what = "submit"
                    submitted = r.status_code == 202
                else:
                    r = c.post(f"/v1/sessions/{sid}/extend", json={"seconds": 30}) if i % 2 else \
                        c.get(f"/v1/sessions/{sid}")
                    what = "extend" if i % 2 else "get"
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            with lock:
                answers.append((what, sid or learner, r))
            time.sleep(0.2)


def test_postgres_restarted_under_load_loses_and_duplicates_nothing(
        pg: PostgresServer, serve: Server, receiver: Receiver) -> None:
    with serve.client() as c:
        made = c.post("/v1/webhooks/endpoints", json={"url": receiver.url, "events": ["*"]})
        assert made.status_code == 201, made.text
        receiver.secrets.append(made.json()["secret"])

    answers: list[tuple[str, str, httpx.Response]] = []
    lock = threading.Lock()
    began = time.monotonic()
    clients = [threading.Thread(target=_client_loop, args=(serve, i, began + 7 + i * 0.2, began + 30, answers, lock))
               for i in range(CLIENTS)]
    for t in clients:
        t.start()
    time.sleep(8)  # the sessions are started, metered, and being submitted
    pg.stop()
    time.sleep(DOWN_S)
    pg.start()
    for t in clients:
        t.join()

    served = [(what, r) for what, _, r in answers]
    wrong = [f"{what}: {r.status_code} {r.text[:200]}" for what, r in served
             if r.status_code >= 500 and not (r.status_code == 503 and r.headers.get("retry-after"))]
    assert not wrong, "\n".join(wrong[:20])
    not_problems = [f"{what}: {r.status_code} {r.headers.get('content-type')}" for what, r in served
                    if r.status_code >= 400 and r.headers.get("content-type") != "application/problem+json"]
    assert not not_problems, not_problems[:20]
    statuses = Counter(f"{what} {r.status_code}" for what, r in served)
    refusals = Counter(f"{what} {r.status_code}: {VARYING.sub('…', r.json()['detail'])[:100]}" for what, r in served
                       if r.status_code >= 400)
    print("refusals:", *sorted(refusals.items(), key=lambda kv: -kv[1]), sep="\n  ")
    assert any(r.status_code == 503 for _, r in served), statuses  # the outage was felt ...
    accepted = Counter(sid for what, sid, r in answers if what == "submit" and r.status_code == 202)
    assert len(accepted) >= CLIENTS // 2, statuses  # ... and the work went on around it

    engine = create_engine(pg.url)
    try:
        def settled() -> bool:
            with engine.connect() as db:
                grading = db.execute(text("SELECT count(*) FROM submissions WHERE state = 'grading'")).scalar()
                pending = db.execute(text("SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'"))
                return grading == 0 and pending.scalar() == 0
        waited = time.monotonic()
        eventually(settled, timeout=480, interval=5)
        waited = time.monotonic() - waited
        with engine.connect() as db:
            readings = db.execute(text("SELECT session_id, at, accrued_usd, burn_rate_usd_per_hour FROM "
                                       "meter_readings ORDER BY session_id, at, id")).all()
            deliveries = db.execute(text("SELECT event_id, endpoint_id, state FROM webhook_deliveries")).all()
            events = {row[0] for row in db.execute(text("SELECT id FROM outbox_events")).all()}
            submissions = db.execute(text("SELECT session_id, state FROM submissions")).all()
    finally:
        engine.dispose()

    # The ledger: one reading per session and moment; each accrual = the previous burn rate x the time between.
    by_session: dict[str, list[Any]] = defaultdict(list)
    for row in readings:
        by_session[row[0]].append(row)
    twice = [(sid, at) for sid, rows in by_session.items() for (sid, at), n in Counter((r[0], r[1]) for r in rows)
             .items() if n > 1]
    assert not twice, twice
    off = []
    for sid, rows in by_session.items():
        for prev, cur in itertools.pairwise(rows):
            hours = Decimal((cur[1] - prev[1]).total_seconds()) / Decimal(3600)
            expected = Decimal(prev[3]) * hours
            if abs((Decimal(cur[2]) - Decimal(prev[2])) - expected) > ROUNDING:
                off.append((sid, prev[1], cur[1], Decimal(cur[2]) - Decimal(prev[2]), expected))
    assert not off, off[:10]
    assert len(by_session) >= CLIENTS // 2 and sum(len(r) for r in by_session.values()) > 2 * CLIENTS

    # Deliveries: one per event and endpoint, each delivered, every event id at the receiver.
    pairs = Counter((d[0], d[1]) for d in deliveries)
    assert all(n == 1 for n in pairs.values()), [p for p, n in pairs.items() if n > 1]
    assert {d[0] for d in deliveries} == events
    seen = {a.msg_id for a in receiver.unique()}
    assert events <= seen, events - seen
    # Grades: one submission per session that submitted, none left grading. A submit answered 503 may have been
    # committed before the store went away: its retry is then told it is being graded (409), never graded twice.
    per_session = Counter(s[0] for s in submissions)
    assert set(per_session.values()) == {1}, per_session
    assert set(accepted) <= set(per_session), (accepted, per_session)
    told_later = {sid for what, sid, r in answers if what == "submit" and r.status_code == 409}
    assert set(per_session) - set(accepted) <= told_later, (per_session, accepted, told_later)
    assert {s[1] for s in submissions} <= {"graded", "error"}
    print(f"{len(answers)} answers: {dict(statuses)}; {len(readings)} readings of {len(by_session)} sessions; "
          f"{len(events)} events, {len(receiver.arrivals)} arrivals; {len(submissions)} submissions; settled after "
          f"{waited:.0f}s; {len(set(per_session) - set(accepted))} submitted though answered 503")
