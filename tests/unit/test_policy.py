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


def test_no_decisions_for_sessions_that_are_not_live() -> None:
    assert policy.decide(facts(state="terminated"), _lab(), NOON + timedelta(days=9)) == []


def test_extension_stops_at_the_deadline() -> None:
    deadline = NOON + timedelta(minutes=30)
    assert policy.extended_expiry(expires_at=NOON, deadline_at=deadline, seconds=600) == NOON + timedelta(minutes=10)
    assert policy.extended_expiry(expires_at=NOON, deadline_at=deadline, seconds=99999) == deadline
