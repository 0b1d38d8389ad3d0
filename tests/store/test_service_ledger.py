"""The service ledger on SQLite and on a real PostgreSQL server: simulator steps accrue exactly (served + dropped ==
offered in every row), a repeated step counts once, an overlapping one is refused, rows go with their session, and
revision 0003_simulator comes off and back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select

from labctl.catalog.models import Demand
from labctl.simulator import economics, ledger, model
from labctl.simulator.model import PodState
from labctl.store.db import Store
from labctl.store.models import SandboxSession
from labctl.store.service_ledger import ServiceLedger
from tests.support.stores import clean_store

READY_AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
WEB, BATCH = "Deployment/web", "Deployment/batch"
# A simulated day in 5 minutes; web peaks at 100/s at noon, two pods serve 40/s at most; batch wants 7/s, a third
# of a request per second more than its one pod serves.
DEMAND = Demand.model_validate({"time_scale": 288, "workloads": [
    {"workload": WEB, "daily": {"00:00": 0, "12:00": 100}, "per_request": {"cpu_core_seconds": 0.1}},
    {"workload": BATCH, "rps": 7, "per_request": {"cpu_core_seconds": 0.3}},
]})
PODS = [PodState(name=f"web-{i}", container="app", node="n", ready=True, cpu_limit_cores=Fraction(2),
                 memory_limit_bytes=2**30, workload=WEB) for i in range(2)] + [
    PodState(name="batch-0", container="app", node="n", ready=True, cpu_limit_cores=Fraction(2),
             memory_limit_bytes=2**30, workload=BATCH)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = clean_store(request, tmp_path / "labctl.db")
    with s.session() as db:
        db.add(SandboxSession(id="s-1", lab_id="llm-serving", learner_id="ada", provider="kubernetes",
                              state="ready", budget_usd=5, created_at=READY_AT, ready_at=READY_AT))
    yield s
    s.engine.dispose()


def steps(count: int, seconds: int) -> list[model.Step]:
    return [model.step(DEMAND, PODS, node_cpu_cores={}, started_at=READY_AT,
                       now=READY_AT + timedelta(seconds=seconds * i), seconds=seconds) for i in range(1, count + 1)]


def test_steps_accrue_exactly_and_match_one_long_step(store: Store) -> None:
    # 300 s in 30 s sweeps: web's 10 steps cross its cap at different points, each integrated exactly.
    for one in steps(10, 30):
        with store.session() as db:
            ledger.accrue(db, session_id="s-1", step=one)
    with store.session() as db:
        rows = {r.workload: r for r in ledger.ledger(db, session_id="s-1")}
    assert sorted(rows) == [BATCH, WEB]
    web, batch = rows[WEB], rows[BATCH]
    assert (web.offered, web.served, web.dropped) == (Decimal(15000), Decimal(9600), Decimal(5400))
    assert batch.offered == Decimal(2100) and batch.served == Decimal(2000) and batch.dropped == Decimal(100)
    whole = steps(1, 300)[0].workload(WEB)
    assert (web.offered, web.served) == (ledger.to_ledger(whole.offered), ledger.to_ledger(whole.served))
    for row in rows.values():
        assert row.served + row.dropped == row.offered
        assert row.last_step_at == READY_AT + timedelta(seconds=300)
    assert economics.served_share(web.served, web.offered) == Decimal("0.64")
    assert economics.cost_per_1000_requests(Decimal("0.48"), web.served) == Decimal("0.05")


def test_counts_that_do_not_round_evenly_keep_the_row_exact(store: Store) -> None:
    # A pod serves 10/7 requests a second of 5 offered: each step's served is rounded to 6 places (1.428571), and
    # dropped is offered minus that, so the row stays exact while served drifts by the rounding alone.
    demand = Demand.model_validate({"workloads": [{"workload": WEB, "rps": 5,
                                                   "per_request": {"cpu_core_seconds": 0.7}}]})
    pod = PodState(name="w", container="app", node="n", ready=True, cpu_limit_cores=Fraction(1),
                   memory_limit_bytes=None, workload=WEB)
    for i in range(1, 8):
        one = model.step(demand, [pod], node_cpu_cores={}, started_at=READY_AT,
                         now=READY_AT + timedelta(seconds=i), seconds=1)
        with store.session() as db:
            ledger.accrue(db, session_id="s-1", step=one)
    with store.session() as db:
        (row,) = ledger.ledger(db, session_id="s-1")
    assert (row.offered, row.served, row.dropped) == (Decimal(35), Decimal("9.999997"), Decimal("25.000003"))
    assert row.served + row.dropped == row.offered
    assert row.offered.as_tuple().exponent == -6


def test_a_step_already_counted_counts_once_and_an_overlap_is_refused(store: Store) -> None:
    first, second = steps(2, 30)
    with store.session() as db:
        ledger.accrue(db, session_id="s-1", step=first)
    with store.session() as db:
        ledger.accrue(db, session_id="s-1", step=first)   # a retried sweep
    with store.session() as db:
        (web,) = [r for r in ledger.ledger(db, session_id="s-1") if r.workload == WEB]
        assert web.offered == ledger.to_ledger(first.workload(WEB).offered)
    overlap = model.step(DEMAND, PODS, node_cpu_cores={}, started_at=READY_AT,
                         now=READY_AT + timedelta(seconds=45), seconds=30)
    with pytest.raises(ValueError, match="overlaps the one already counted"), store.session() as db:
        ledger.accrue(db, session_id="s-1", step=overlap)
    with store.session() as db:
        ledger.accrue(db, session_id="s-1", step=second)
        (web,) = [r for r in ledger.ledger(db, session_id="s-1") if r.workload == WEB]
        assert web.offered == ledger.to_ledger(first.workload(WEB).offered + second.workload(WEB).offered)


def test_ledger_rows_go_with_their_session(store: Store) -> None:
    with store.session() as db:
        ledger.accrue(db, session_id="s-1", step=steps(1, 30)[0])
    with store.session() as db:
        session = db.get(SandboxSession, "s-1")
        assert session is not None
        db.delete(session)
    with store.session() as db:
        assert db.scalars(select(ServiceLedger)).all() == []


def test_migration_0003_comes_off_cleanly_and_back(store: Store) -> None:
    with store.session() as db:
        ledger.accrue(db, session_id="s-1", step=steps(1, 30)[0])
    with store.engine.begin() as conn:
        cfg = store.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    tables = set(inspect(store.engine).get_table_names())
    assert "service_ledger" not in tables and {"sessions", "outbox_events"} <= tables
    store.migrate()
    assert store.revision() == store.head()
    with store.session() as db:
        assert ledger.ledger(db, session_id="s-1") == []
        assert db.get(SandboxSession, "s-1") is not None


RATES = {"web-0": Decimal("0.048"), "web-1": Decimal("0.0168"), "batch-0": Decimal("0.123457")}


def test_each_step_accrues_its_workloads_pod_cost_exactly_per_window(store: Store) -> None:
    # 10 live steps of 30 s: web's two pods cost (0.048 + 0.0168) x 30 / 3600 = 0.00054 a step, batch's one pod
    # 0.123457 x 30 / 3600 = 0.00102880... -> 0.001029 a step (rounded once per step, as the money ledger is).
    live = steps(10, 30)
    for one in live:
        with store.session() as db:
            ledger.accrue(db, session_id="s-1", step=one, costs=ledger.workload_costs(one, RATES))
    # A submission's replay: its own window, the web pods only half as dear.
    half = {k: v / 2 for k, v in RATES.items()}
    replayed = model.replay(DEMAND, PODS, node_cpu_cores={}, step_seconds=30, anchor=READY_AT)
    for one in replayed:
        with store.session() as db:
            ledger.accrue(db, session_id="s-1", step=one, costs=ledger.workload_costs(one, half), window="sub-1")
    with store.session() as db:
        rows = {r.workload: r for r in ledger.ledger(db, session_id="s-1")}
        window = {r.workload: r for r in ledger.ledger(db, session_id="s-1", window="sub-1")}
    assert rows[WEB].cost_usd == Decimal("0.005400") and rows[BATCH].cost_usd == Decimal("0.010290")
    assert rows[WEB].offered == Decimal(15000)  # the replay did not touch the live window
    assert rows[WEB].cost_usd.as_tuple().exponent == -6
    # The replay's window: a simulated day at 288x is 300 s, 10 steps, each priced at half the rates.
    assert len(replayed) == 10
    assert window[WEB].cost_usd == Decimal("0.002700")
    assert window[BATCH].cost_usd == sum((ledger.workload_costs(s, half)[BATCH] for s in replayed), Decimal(0))
    with store.session() as db:
        assert ledger.clear(db, session_id="s-1", window="sub-1") == 2
    with store.session() as db:
        assert ledger.ledger(db, session_id="s-1", window="sub-1") == []
        assert len(ledger.ledger(db, session_id="s-1")) == 2
    with pytest.raises(ValueError, match="never cleared"), store.session() as db:
        ledger.clear(db, session_id="s-1", window=ledger.LIVE)


def test_migration_0005_keeps_the_live_rows_and_comes_off_cleanly(store: Store) -> None:
    with store.session() as db:
        ledger.accrue(db, session_id="s-1", step=steps(1, 30)[0])
        ledger.accrue(db, session_id="s-1", step=steps(1, 30)[0], window="sub-1")
    with store.engine.begin() as conn:
        cfg = store.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    columns = {c["name"] for c in inspect(store.engine).get_columns("service_ledger")}
    assert "window_id" not in columns and "cost_usd" not in columns
    store.migrate()
    with store.session() as db:
        (web,) = [r for r in ledger.ledger(db, session_id="s-1") if r.workload == WEB]
        assert web.offered == ledger.to_ledger(steps(1, 30)[0].workload(WEB).offered)
        assert web.cost_usd == 0 and web.window_id == ledger.LIVE
        assert ledger.ledger(db, session_id="s-1", window="sub-1") == []  # replays are not kept below 0005
