"""Pure decisions of the sweeps: what should happen to one session now, given its facts and its lab.

Every timer in labctl is level-triggered: a sweep looks at the stored facts (deadlines, money used, last activity)
and decides, so a sweep that runs late, or after a restart, still does the right thing. Nothing here does I/O: the
caller passes ``now`` and acts on the returned :class:`Action` list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from labctl.catalog import windows
from labctl.catalog.durations import parse_duration
from labctl.catalog.models import Lab
from labctl.cost import model

Kind = Literal["terminate", "warn_expiry", "suspend", "resume", "notify"]


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


def budget_share(accrued: Decimal, budget: Decimal) -> Decimal:
    """Money used as a percentage of the budget (0 when there is no budget)."""
    return model.budget_share(accrued, budget) * 100 if budget > 0 else Decimal(0)


def newly_crossed(facts: Facts, lab: Lab) -> list[tuple[int, str]]:
    """Thresholds reached now and not acted on before, lowest first."""
    share = budget_share(facts.accrued_usd, facts.budget_usd)
    return [(t.percent, t.action) for t in lab.budget.thresholds
            if share >= t.percent and t.percent not in facts.thresholds_crossed]


def decide(facts: Facts, lab: Lab, now: datetime) -> list[Action]:
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
        reason = f"budget {percent}% reached (${facts.accrued_usd:.2f} of ${facts.budget_usd:.2f})"
        if action == "terminate":
            return [*actions, Action("terminate", reason, percent)]
        actions.append(Action("notify", reason, percent))
        if action == "suspend" and facts.state == "ready":
            actions.append(Action("suspend", reason, percent, cause="budget"))
    if facts.state == "ready" and not any(a.kind == "suspend" for a in actions):
        actions += _idle_or_off_hours(facts, lab, now)
    elif (facts.state == "suspended" and facts.suspend_reason == "off-hours" and lab.time.off_hours
          and windows.is_inside(windows.parse_window(lab.time.off_hours), now)):
        actions.append(Action("resume", "working hours began"))
    return actions


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
