"""The sweeps' pure decisions, as a table over fixed datetimes (Europe/Berlin working windows across DST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from labctl.catalog import loader
from labctl.catalog.models import Lab
from labctl.service import policy
from labctl.settings import REPO_ROOT


def _lab(**time_overrides: object) -> Lab:
    base = loader.load_lab(REPO_ROOT / "labs" / "idle-hunter" / "lab.yaml")
    return base.model_copy(update={"time": base.time.model_copy(update=time_overrides)})


NOON = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # Wednesday, 12:00 in Berlin


def facts(**kw: object) -> policy.Facts:
    values: dict[str, object] = {"state": "ready", "expires_at": NOON + timedelta(hours=1),
                                 "accrued_usd": Decimal("0.10"), "budget_usd": Decimal(3),
                                 "last_activity_at": NOON}
    values.update(kw)
    return policy.Facts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "f", "now", "expected"),
    [
        ("nothing due", facts(), NOON, []),
        ("expired while down", facts(), NOON + timedelta(hours=5), [("terminate", None)]),
        ("warning window", facts(last_activity_at=None), NOON + timedelta(minutes=51), [("warn_expiry", None)]),
        ("warned already", facts(expiry_warned_at=NOON, last_activity_at=None), NOON + timedelta(minutes=51), []),
        ("warning and idle", facts(), NOON + timedelta(minutes=51), [("warn_expiry", None), ("suspend", None)]),
        ("50 % notify", facts(accrued_usd=Decimal("1.5")), NOON, [("notify", 50)]),
        ("80 % after 50 acted", facts(accrued_usd=Decimal("2.5"), thresholds_crossed=(50,)), NOON,
         [("notify", 80)]),
        ("100 % suspends once", facts(accrued_usd=Decimal(3), thresholds_crossed=(50, 80)), NOON,
         [("notify", 100), ("suspend", 100)]),
        ("150 % terminates", facts(state="suspended", accrued_usd=Decimal("4.6"), thresholds_crossed=(50, 80, 100)),
         NOON, [("terminate", 150)]),
        ("idle for 20 min", facts(last_activity_at=NOON - timedelta(minutes=20)), NOON, [("suspend", None)]),
        ("idle for 19 min", facts(last_activity_at=NOON - timedelta(minutes=19)), NOON, []),
        ("off-hours Wednesday 22:00 Berlin", facts(expires_at=NOON + timedelta(days=1)),
         datetime(2026, 11, 25, 21, 0, tzinfo=UTC), [("suspend", None)]),
        ("working hours resume", facts(state="suspended", suspend_reason="off-hours",
                                       expires_at=NOON + timedelta(days=2)),
         datetime(2026, 11, 26, 6, 30, tzinfo=UTC), [("resume", None)]),
        ("budget suspension is not resumed by the clock", facts(state="suspended", suspend_reason="budget",
                                                                expires_at=NOON + timedelta(days=2)),
         datetime(2026, 11, 26, 6, 30, tzinfo=UTC), []),
        # Suspend and terminate follow the level of spend, whatever was recorded or happened since.
        ("over 100 % but recorded as acted on", facts(accrued_usd=Decimal("3.2"), thresholds_crossed=(50, 80, 100)),
         NOON, [("suspend", 100)]),
        ("over 150 % recorded, not yet stopped", facts(accrued_usd=Decimal("4.6"),
                                                      thresholds_crossed=(50, 80, 100, 150)), NOON,
         [("terminate", 150)]),
        ("an idle suspension over budget becomes a budget one", facts(
            state="suspended", suspend_reason="idle", accrued_usd=Decimal("3.1"), thresholds_crossed=(50, 80, 100)),
         NOON, [("suspend", 100)]),
        ("an instructor suspension over budget stays the instructor's", facts(
            state="suspended", suspend_reason="instructor", accrued_usd=Decimal("3.1"),
            thresholds_crossed=(50, 80, 100)), NOON, []),
        ("over budget, working hours do not resume", facts(
            state="suspended", suspend_reason="off-hours", accrued_usd=Decimal("3.1"),
            thresholds_crossed=(50, 80, 100), expires_at=NOON + timedelta(days=2)),
         datetime(2026, 11, 26, 6, 30, tzinfo=UTC), [("suspend", 100)]),
        ("below the level after more budget", facts(state="suspended", suspend_reason="budget",
                                                    accrued_usd=Decimal("3.1"), budget_usd=Decimal(5),
                                                    thresholds_crossed=(50,)), NOON, []),
        # Fail closed: the meter's failures in a row.
        ("meter failed twice", facts(meter_failures=2), NOON, []),
        ("meter failed three times", facts(meter_failures=3), NOON, [("suspend", None)]),
        ("meter suspension, still failing", facts(state="suspended", suspend_reason="meter", meter_failures=4), NOON,
         []),
        ("meter suspension, reading again", facts(state="suspended", suspend_reason="meter", meter_failures=0), NOON,
         [("resume", None)]),
        ("meter suspension over budget stays", facts(state="suspended", suspend_reason="meter", meter_failures=0,
                                                     accrued_usd=Decimal(3), thresholds_crossed=(50, 80, 100)),
         NOON, [("suspend", 100)]),
        # DST: on 2026-03-30 (CEST, UTC+2) 06:30 UTC is 08:30 in Berlin: inside; in winter it would be 07:30.
        ("after spring DST change", facts(state="suspended", suspend_reason="off-hours",
                                          expires_at=datetime(2026, 4, 2, tzinfo=UTC), last_activity_at=None),
         datetime(2026, 3, 30, 5, 30, tzinfo=UTC), [("resume", None)]),
        ("before the window, summer time", facts(expires_at=datetime(2026, 4, 2, tzinfo=UTC), last_activity_at=None),
         datetime(2026, 3, 30, 4, 30, tzinfo=UTC), [("suspend", None)]),
    ],
)
def test_decide(case: str, f: policy.Facts, now: datetime, expected: list[tuple[str, int | None]]) -> None:
    actions = policy.decide(f, _lab(), now)
    assert [(a.kind, a.percent) for a in actions] == expected, case


def test_suspend_causes_are_named() -> None:
    idle = policy.decide(facts(last_activity_at=NOON - timedelta(hours=1)), _lab(), NOON)
    off = policy.decide(facts(expires_at=NOON + timedelta(days=9)), _lab(), datetime(2026, 11, 28, 12, tzinfo=UTC))
    budget = policy.decide(facts(accrued_usd=Decimal(3), thresholds_crossed=(50, 80)), _lab(), NOON)
    assert [a.cause for a in idle if a.kind == "suspend"] == ["idle"]
    assert [a.cause for a in off if a.kind == "suspend"] == ["off-hours"]  # a Saturday
    assert [a.cause for a in budget if a.kind == "suspend"] == ["budget"]
    meter = policy.decide(facts(meter_failures=5), _lab(), NOON, meter_failure_limit=5)
    assert [a.cause for a in meter if a.kind == "suspend"] == ["meter"]
    relabel = policy.decide(facts(state="suspended", suspend_reason="off-hours", accrued_usd=Decimal(3),
                                  thresholds_crossed=(50, 80, 100)), _lab(), NOON)
    assert [a.cause for a in relabel] == ["budget"]


def test_the_stop_level_prefers_terminate_and_ignores_notifications() -> None:
    lab = _lab()
    assert policy.stop_level(accrued_usd=Decimal("2.9"), budget_usd=Decimal(3), lab=lab) is None
    at_100 = policy.stop_level(accrued_usd=Decimal(3), budget_usd=Decimal(3), lab=lab)
    assert at_100 is not None and (at_100.percent, at_100.action) == (100, "suspend")
    at_200 = policy.stop_level(accrued_usd=Decimal(6), budget_usd=Decimal(3), lab=lab)
    assert at_200 is not None and (at_200.percent, at_200.action) == (150, "terminate")


def test_no_decisions_for_sessions_that_are_not_live() -> None:
    assert policy.decide(facts(state="terminated"), _lab(), NOON + timedelta(days=9)) == []


def test_extension_stops_at_the_deadline() -> None:
    deadline = NOON + timedelta(minutes=30)
    assert policy.extended_expiry(expires_at=NOON, deadline_at=deadline, seconds=600) == NOON + timedelta(minutes=10)
    assert policy.extended_expiry(expires_at=NOON, deadline_at=deadline, seconds=99999) == deadline
