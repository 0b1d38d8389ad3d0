"""Pure decisions of the sweeps: what should happen to one session now, given its facts and its lab.

Every timer in labctl is level-triggered: a sweep looks at the stored facts (deadlines, money used, last activity)
and decides, so a sweep that runs late, or after a restart, still does the right thing. Budget notifications are
sent once per crossing (``thresholds_crossed`` remembers them), but suspend and terminate follow the level of spend:
a session at or over a suspend threshold is suspended, and one over a terminate threshold terminated, whatever
happened since (a reset, a resume, a restart). A session whose meter has failed ``meter_failure_limit`` times in a
row is suspended too (fail closed), and resumed by the clock once a reading succeeds again. Nothing here does I/O:
the caller passes ``now`` and acts on the returned :class:`Action` list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from labctl.catalog import windows
from labctl.catalog.durations import parse_duration
from labctl.catalog.models import Lab, Threshold
from labctl.cost import model

Kind = Literal["terminate", "warn_expiry", "suspend", "resume", "notify"]

# Suspensions a learner, platform or exam token can never lift (neither by resume nor by reset): the budget's, an
# instructor's and the failing meter's. An instructor lifts them, and the budget's only below the suspend level.
STICKY = frozenset({"budget", "instructor", "meter"})
METER_FAILURE_LIMIT = 3


@dataclass(frozen=True)
class Action:
    kind: Kind
    reason: str
    percent: int | None = None  # the budget threshold that caused it
    cause: str | None = None  # for suspend: budget | idle | off-hours


@dataclass(frozen=True)
class Facts:
    """What the store knows about one live session."""

    state: str
    expires_at: datetime
    accrued_usd: Decimal
    budget_usd: Decimal
    thresholds_crossed: tuple[int, ...] = ()
    suspend_reason: str | None = None
    last_activity_at: datetime | None = None
    expiry_warned_at: datetime | None = None
    meter_failures: int = 0


def budget_share(accrued: Decimal, budget: Decimal) -> Decimal:
    """Money used as a percentage of the budget (0 when there is no budget)."""
    return model.budget_share(accrued, budget) * 100 if budget > 0 else Decimal(0)


def newly_crossed(facts: Facts, lab: Lab) -> list[tuple[int, str]]:
    """Thresholds reached now and not announced before, lowest first (notifications are once per crossing)."""
    share = budget_share(facts.accrued_usd, facts.budget_usd)
    return [(t.percent, t.action) for t in lab.budget.thresholds
            if share >= t.percent and t.percent not in facts.thresholds_crossed]


def stop_level(*, accrued_usd: Decimal, budget_usd: Decimal, lab: Lab) -> Threshold | None:
    """The strongest stopping threshold (terminate over suspend) the spend is at or over now: a level, not a
    crossing. While there is one, no resume may lift the session's suspension."""
    share = budget_share(accrued_usd, budget_usd)
    reached = [t for t in lab.budget.thresholds if share >= t.percent and t.action in ("suspend", "terminate")]
    terminate = [t for t in reached if t.action == "terminate"]
    strongest = terminate or reached
    return strongest[-1] if strongest else None


def decide(facts: Facts, lab: Lab, now: datetime, *, meter_failure_limit: int = METER_FAILURE_LIMIT) -> list[Action]:
    """The actions due for one session at ``now``, in the order to take them."""
    if facts.state not in ("ready", "suspended", "submitted", "graded"):
        return []
    if now >= facts.expires_at:
        return [Action("terminate", f"expired at {facts.expires_at.isoformat()}")]
    actions: list[Action] = []
    warn_at = facts.expires_at - parse_duration(lab.time.warn_before)
    if now >= warn_at and facts.expiry_warned_at is None:
        minutes = max(0, int((facts.expires_at - now).total_seconds() // 60))
        actions.append(Action("warn_expiry", f"expires in {minutes} min at {facts.expires_at.isoformat()}"))
    for percent, action in newly_crossed(facts, lab):
        if action != "terminate":  # a terminate crossing is announced by the terminate itself
            actions.append(Action("notify", _budget_reason(facts, percent), percent))
    stop = stop_level(accrued_usd=facts.accrued_usd, budget_usd=facts.budget_usd, lab=lab)
    if stop is not None and stop.action == "terminate":
        return [*actions, Action("terminate", _budget_reason(facts, stop.percent), stop.percent)]
    if stop is not None:
        if facts.state == "ready" or (facts.state == "suspended" and facts.suspend_reason not in ("budget",
                                                                                                   "instructor")):
            actions.append(Action("suspend", _budget_reason(facts, stop.percent), stop.percent, cause="budget"))
        return actions  # over budget nothing else may act (no idle, off-hours or meter resume)
    if facts.state == "ready" and facts.meter_failures >= meter_failure_limit:
        return [*actions, Action("suspend", f"the meter failed {facts.meter_failures} times in a row, so spending "
                                            "cannot be followed: suspended until a reading succeeds", cause="meter")]
    if facts.state == "ready":
        actions += _idle_or_off_hours(facts, lab, now)
    elif facts.state == "suspended" and facts.suspend_reason == "meter" and facts.meter_failures == 0:
        actions.append(Action("resume", "the meter reads the sandbox again"))
    elif (facts.state == "suspended" and facts.suspend_reason == "off-hours" and lab.time.off_hours
          and windows.is_inside(windows.parse_window(lab.time.off_hours), now)):
        actions.append(Action("resume", "working hours began"))
    return actions


def _budget_reason(facts: Facts, percent: int) -> str:
    return f"budget {percent}% reached (${facts.accrued_usd:.2f} of ${facts.budget_usd:.2f})"


def _idle_or_off_hours(facts: Facts, lab: Lab, now: datetime) -> list[Action]:
    if lab.time.off_hours and not windows.is_inside(windows.parse_window(lab.time.off_hours), now):
        return [Action("suspend", f"outside working hours ({lab.time.off_hours})", cause="off-hours")]
    if lab.time.idle_timeout and facts.last_activity_at is not None:
        idle_for = now - facts.last_activity_at
        limit = parse_duration(lab.time.idle_timeout)
        if idle_for >= limit:
            return [Action("suspend", f"idle for {_minutes(idle_for)} min (limit {lab.time.idle_timeout})",
                           cause="idle")]
    return []


def extended_expiry(*, expires_at: datetime, deadline_at: datetime, seconds: int) -> datetime:
    """The new expiry after an extension of ``seconds``, never past the deadline."""
    return min(expires_at + timedelta(seconds=seconds), deadline_at)


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)
