"""Warm pools on the real local cluster, on SQLite and PostgreSQL: concurrent starts claim distinct pooled sandboxes
and the one beyond the pool starts cold; the pool refills; the idle time before a claim is the pool's money, never
the learner's; a pooled sandbox another command holds is never claimed; a changed lab drains the pooled sandboxes
made from the old one.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from kubernetes import client
from sqlalchemy import func, select, text, update

from labctl import runtime
from labctl.localcluster.cluster import LocalCluster
from labctl.store.models import SandboxSession
from labctl.store.pool_ledger import PoolCharge
from tests.support.clock import FakeClock
from tests.support.pool_world import LAB, PLATFORM, database_url, pool_runtime, remove_all, write_labs
from tests.support.wait import eventually

WARM = 4


@dataclass
class World:
    rt: runtime.Runtime
    clock: FakeClock
    labs_dir: Path
    database: str
    data_dir: Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, local_cluster: LocalCluster,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("pools")
    labs_dir = write_labs(directory, warm=WARM)
    database = database_url(request, directory)
    with pool_runtime(local_cluster, labs_dir=labs_dir, database=database, data_dir=directory) as rt:
        assert isinstance(rt.sessions.clock, FakeClock)
        yield World(rt=rt, clock=rt.sessions.clock, labs_dir=labs_dir, database=database, data_dir=directory)
        remove_all(rt)


def pooled_ids(rt: runtime.Runtime) -> set[str]:
    with rt.store.session() as db:
        return set(db.scalars(select(SandboxSession.id).where(SandboxSession.state == "pooled")))


def test_concurrent_starts_claim_distinct_pooled_sandboxes_and_the_next_one_starts_cold(
        world: World, kube: client.ApiClient) -> None:
    rt = world.rt
    report = rt.pools.run_once()
    assert report.made == WARM, report
    pool = pooled_ids(rt)
    assert len(pool) == WARM
    assert rt.pools.view(LAB).pooled == WARM

    learners = [f"claimer-{i}" for i in range(WARM + 1)]
    with ThreadPoolExecutor(max_workers=len(learners)) as workers:
        started = list(workers.map(lambda who: rt.sessions.start(lab_id=LAB, learner_id=who, principal=PLATFORM),
                                   learners))
    rows = [row for row, created in started]
    assert all(created for _, created in started)
    assert all(row.state == "ready" for row in rows), [(r.id, r.state, r.reason) for r in rows]
    claimed = [row.id for row in rows if row.id in pool]
    assert len(claimed) == WARM and len(set(claimed)) == WARM, "every pooled sandbox claimed exactly once"
    cold = [row for row in rows if row.id not in pool]
    assert len(cold) == 1, "the start beyond the pool provisions a sandbox of its own"
    core = client.CoreV1Api(kube)
    for row in rows:  # each sandbox now names its learner, where the cost tools read it
        assert core.read_namespace(row.namespace).metadata.labels["labctl.dev/learner"] == row.learner_id
    assert not pooled_ids(rt)

    refill = rt.pools.run_once()
    assert refill.made == WARM, refill
    fresh = pooled_ids(rt)
    assert len(fresh) == WARM and not fresh & {row.id for row in rows}


def test_the_idle_time_before_a_claim_is_the_pools_not_the_learners(world: World) -> None:
    rt, clock = world.rt, world.clock
    if len(pooled_ids(rt)) < WARM:
        rt.pools.run_once()

    def burn_rates() -> set[Decimal]:
        """Meter the pool (the fake clock stands still: no time is charged) and read each sandbox's burn rate."""
        rt.pools.run_once()
        with rt.store.session() as db:
            return set(db.scalars(select(SandboxSession.burn_rate_usd_per_hour).where(
                SandboxSession.state == "pooled")))

    # The starter's pods appear a moment after the sandbox holds (Deployment, ReplicaSet, pods): meter until each
    # pooled sandbox burns the same.
    def settled() -> set[Decimal] | None:
        rates = burn_rates()
        return rates if len(rates) == 1 and min(rates) > 0 else None

    burn = set(eventually(settled, timeout=60, interval=1)).pop()
    assert burn > 0, "the starter's pods cost money while they wait"
    before = rt.pools.view(LAB).idle_cost_usd

    clock.advance(hours=2)
    assert rt.pools.run_once().metered == WARM
    row, created = rt.sessions.start(lab_id=LAB, learner_id="late-learner", principal=PLATFORM)
    assert created and row.state == "ready"
    claimed_at = clock.now

    # The pool paid two hours of every pooled sandbox; the claimed one's account was closed at the claim.
    idle = rt.pools.view(LAB).idle_cost_usd - before
    assert abs(idle - WARM * 2 * burn) < Decimal("0.00001"), (idle, burn)
    with rt.store.session() as db:
        charged = db.scalar(select(func.count()).select_from(PoolCharge).where(PoolCharge.session_id == row.id))
    assert charged, "the claimed sandbox's pooled hours are in the pool's ledger"

    # The learner starts at the claim: no money, the whole budget, the clock and the timeline begin now.
    assert row.accrued_usd == 0 and row.created_at == claimed_at and row.ready_at == claimed_at
    lab = rt.sessions.lab(LAB)
    assert row.budget_usd == lab.budget.usd
    assert [e.kind for e in rt.sessions.events(row.id, principal=PLATFORM)] == ["created", "ready"]

    clock.advance(minutes=30)
    rt.sweeper.meter(row.id, rt.sweeper.prices())
    metered = rt.sessions.row_of(row.id)
    assert abs(Decimal(metered.accrued_usd) - burn / 2) < Decimal("0.000001"), (metered.accrued_usd, burn)


@contextmanager
def writes_held(rt: runtime.Runtime) -> Iterator[None]:
    """Every claim waits while the block runs: SQLite's write turn held, or PostgreSQL's sessions table locked against
    ``SELECT ... FOR UPDATE`` (reads go on)."""
    with rt.store.session(writes=True) as db:  # on SQLite: the write turn from the start
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("LOCK TABLE sessions IN EXCLUSIVE MODE"))
        yield


def test_the_claims_queued_behind_a_write_are_claimed_together_and_a_repeated_start_gets_its_session(
        world: World, kube: client.ApiClient) -> None:
    """One start claims alone while the others queue behind it; the queue (two starts of one learner among them, or
    one beside the first's) is one transaction, which the repeated start's unique key fails, so each is claimed again
    by itself: the repeated start gets the learner's one session, every other learner a pooled sandbox of their
    own."""
    rt = world.rt
    if len(pooled_ids(rt)) < WARM:
        rt.pools.run_once()
    pool = pooled_ids(rt)
    assert len(pool) == WARM
    learners = ["burst-0", "burst-1", "burst-1", "burst-2", "burst-3"]

    def start(who: str) -> tuple[SandboxSession, bool]:
        return rt.sessions.start(lab_id=LAB, learner_id=who, principal=PLATFORM)

    with ThreadPoolExecutor(max_workers=len(learners)) as workers:
        with writes_held(rt):
            starts = [workers.submit(start, who) for who in learners]
            # One claims (and waits for the store), the others queue behind it.
            eventually(lambda: rt.sessions._claims.waiting == len(learners) - 1, timeout=25, interval=0.05)
        answers = [f.result() for f in starts]
    rows = [row for row, _ in answers]
    assert rows[1].id == rows[2].id and sorted(created for _, created in answers[1:3]) == [False, True]
    distinct = {row.id for row in rows}
    # The repeated start answers the session as it was then (its hand-over may still have been running).
    finals = [rt.sessions.row_of(i) for i in distinct]
    assert all(row.state == "ready" for row in finals), [(r.id, r.state, r.reason) for r in finals]
    assert distinct == pool, "every learner of the burst claimed a pooled sandbox, none claimed twice"
    core = client.CoreV1Api(kube)
    for row in rows:
        assert core.read_namespace(row.namespace).metadata.labels["labctl.dev/learner"] == row.learner_id
    assert not pooled_ids(rt)


def test_a_pooled_sandbox_another_replica_holds_is_never_claimed(world: World) -> None:
    """A drain (here: of another replica, seen only through the rows' leases) holds a pooled sandbox before it stops
    it: a start meanwhile takes a pooled sandbox nobody holds, or, with every one held, makes its own."""
    rt, clock = world.rt, world.clock
    if len(pooled_ids(rt)) < WARM:
        rt.pools.run_once()
    pool = sorted(pooled_ids(rt))
    held, free = pool[:-1], pool[-1]

    def lease(ids: list[str], holder: str | None) -> None:
        with rt.store.session() as db:
            db.execute(update(SandboxSession).where(SandboxSession.id.in_(ids)).values(
                lease_holder=holder, lease_expires_at=clock.now + timedelta(minutes=10) if holder else None))

    lease(held, "stop@another-replica")
    try:
        first, _ = rt.sessions.start(lab_id=LAB, learner_id="beside-a-drain", principal=PLATFORM)
        assert first.id == free and first.state == "ready", "the one pooled sandbox nobody holds"
        second, _ = rt.sessions.start(lab_id=LAB, learner_id="during-a-drain", principal=PLATFORM)
        assert second.id not in pool and second.state == "ready", "every pooled one is held: a sandbox of its own"
        assert pooled_ids(rt) == set(held)
        assert first.lease_holder is None and second.lease_holder is None, "a start's last write ends its lease"
    finally:
        lease(held, None)


def test_a_changed_lab_drains_the_pooled_sandboxes_made_from_the_old_one(world: World,
                                                                         local_cluster: LocalCluster,
                                                                         kube: client.ApiClient) -> None:
    old = pooled_ids(world.rt)
    assert old
    labs_dir = write_labs(world.data_dir / "changed", warm=WARM, summary="The same lab, reworded.")
    with pool_runtime(local_cluster, labs_dir=labs_dir, database=world.database, data_dir=world.data_dir,
                      clock=world.clock) as changed:
        assert changed.sessions.pool_hashes[LAB] != world.rt.sessions.pool_hashes[LAB]
        report = changed.pools.run_once()
        assert report.drained == len(old) and report.made == WARM, report
        fresh = pooled_ids(changed)
        assert len(fresh) == WARM and not fresh & old
        for session_id in old:
            assert changed.sessions.row_of(session_id).state == "terminated"
        core = client.CoreV1Api(kube)
        names = {ns.metadata.name for ns in core.list_namespace(label_selector="labctl.dev/lab=" + LAB).items}
        assert not names & old, "the stale sandboxes' namespaces are gone"
        # A start now claims only a sandbox of the lab as it is.
        row, _ = changed.sessions.start(lab_id=LAB, learner_id="after-change", principal=PLATFORM)
        assert row.id in fresh
        eventually(lambda: changed.pools.view(LAB).stale == 0, timeout=5)
