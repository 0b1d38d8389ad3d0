#!/usr/bin/env python3
"""Schedule: each listed workload has working hours, an off-hours or auto-shutdown mechanism.

Two mechanisms count, one check per workload:

- the ``annotation`` (default ``labctl.dev/off-hours``) on the workload (or its pod template) naming the window it
  runs in, in the syntax of lab.yaml's ``off_hours``: ``"<days> <HH:MM>-<HH:MM> <IANA zone>"``, days being names,
  ranges (``Mon-Fri``, ``Fri-Mon`` wraps), comma lists, or ``Daily``; the end after the start;
- with ``accept_scaler_cronjobs``, CronJobs (not suspended) whose containers scale the workload
  (``kubectl scale deployment/<name> --replicas=0`` or a patch setting ``"replicas": 0``): one scaling it to 0 and
  one scaling it back up. Their cron schedules are simulated over a week to count the hours it runs.

Score: 1 for a valid mechanism within ``max_running_hours_per_week``; 0.5 for a mechanism that runs it longer, or
(``require_scale_up``) that only scales it down; 0 for none, an invalid annotation, or a window with no hours.

Parameters (YAML, as in lab.yaml)::

    params:
      workloads: [Deployment/orders-worker]
      annotation: labctl.dev/off-hours        # default
      accept_scaler_cronjobs: true            # default true
      require_scale_up: true                  # default true: a down-only CronJob earns half
      max_running_hours_per_week: 70          # optional
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from _kit import (
    Json,
    ParamError,
    check,
    find,
    main,
    of_kind,
    optional_number,
    param_refs,
    problem,
)

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{2}):(\d{2})$")
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_MONTHS = {name: i for i, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                             "nov", "dec"), start=1)}
_CRON_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_REPLICAS = re.compile(r"--replicas[= ](\d+)|\"replicas\"\s*:\s*(\d+)|'replicas'\s*:\s*(\d+)")
_WEEK_START = datetime(2026, 1, 5)  # a Monday; the simulation runs two weeks and measures the second
WEEK_MINUTES = 7 * 24 * 60


# --- windows (the syntax of labctl.catalog.windows) -----------------------------------------------------------------


def window_hours(text: str) -> float:
    """Hours per week inside ``"<days> <HH:MM>-<HH:MM> <zone>"``; ValueError names what is wrong."""
    parts = text.split()
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not a window: write '<days> <start>-<end> <time zone>', e.g. "
                         "'Mon-Fri 08:00-18:00 Europe/Berlin'")
    days_text, hours_text, zone = parts
    days = _days(days_text)
    start_text, dash, end_text = hours_text.partition("-")
    if not dash:
        raise ValueError(f"{hours_text!r} is not a time range: write HH:MM-HH:MM")
    start, end = _minutes(start_text), _minutes(end_text)
    if end <= start:
        raise ValueError(f"the window ends at {end_text}, not after it starts at {start_text}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}: use an IANA name such as 'Europe/Berlin'") from None
    return len(days) * (end - start) / 60


def _days(text: str) -> set[int]:
    if text.lower() == "daily":
        return set(range(7))
    days: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        begin = _day(first)
        finish = _day(last) if dash else begin
        days.add(begin)
        while begin != finish:
            begin = (begin + 1) % 7
            days.add(begin)
    return days


def _day(name: str) -> int:
    if name.lower() not in DAY_NAMES:
        raise ValueError(f"unknown day {name!r}: use Mon ... Sun, ranges like Mon-Fri, lists or Daily")
    return DAY_NAMES.index(name.lower())


def _minutes(text: str) -> int:
    match = _TIME.match(text)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"bad time {text!r}: write HH:MM on a 24-hour clock")
    return int(match[1]) * 60 + int(match[2])


# --- cron -----------------------------------------------------------------------------------------------------------


class Cron:
    """A five-field cron schedule (minute hour day-of-month month day-of-week), as Kubernetes CronJobs read it."""

    def __init__(self, text: str) -> None:
        fields = _MACROS.get(text.strip().lower(), text).split()
        if len(fields) != 5:
            raise ValueError(f"{text!r} is not a five-field cron schedule")
        self.minutes = _field(fields[0], 0, 59, {})
        self.hours = _field(fields[1], 0, 23, {})
        self.month_days = _field(fields[2], 1, 31, {})
        self.months = _field(fields[3], 1, 12, _MONTHS)
        self.week_days = {d % 7 for d in _field(fields[4], 0, 7, _CRON_DAYS)}
        self.any_month_day, self.any_week_day = fields[2] in ("*", "?"), fields[4] in ("*", "?")

    def fires(self, moment: datetime) -> bool:
        if moment.minute not in self.minutes or moment.hour not in self.hours or moment.month not in self.months:
            return False
        in_month = moment.day in self.month_days
        in_week = (moment.weekday() + 1) % 7 in self.week_days
        if self.any_month_day or self.any_week_day:
            return in_month and in_week
        return in_month or in_week


def _field(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        if span in ("*", "?"):
            first, last = low, high
        else:
            start, dash, end = span.partition("-")
            first = _value(start, names)
            last = _value(end, names) if dash else (high if slash else first)
        if not (low <= first <= high and low <= last <= high) or step < 1:
            raise ValueError(f"{text!r}: values must lie within {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


def _value(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a cron value")
    return int(text)


def running_hours(down: list[Cron], up: list[Cron]) -> float | None:
    """Hours per week the workload runs between the scale-up and scale-down schedules; None if neither fires."""
    running: bool | None = None
    minutes_up = 0
    for minute in range(2 * WEEK_MINUTES):
        moment = _WEEK_START + timedelta(minutes=minute)
        if any(c.fires(moment) for c in down):
            running = False
        if any(c.fires(moment) for c in up):
            running = True
        if minute >= WEEK_MINUTES and running:
            minutes_up += 1
    return None if running is None else minutes_up / 60


# --- the check ------------------------------------------------------------------------------------------------------


def grade(snapshot: Json, params: Json) -> list[Json]:
    targets = param_refs(params, "workloads")
    if not targets:
        raise ParamError("'workloads' must name the workloads that need working hours")
    annotation = str(params.get("annotation", "labctl.dev/off-hours"))
    max_hours = optional_number(params, "max_running_hours_per_week", low=0, high=168)
    cronjobs = bool(params.get("accept_scaler_cronjobs", True))
    scale_up = bool(params.get("require_scale_up", True))
    return [_judge(snapshot, kind, name, annotation, max_hours, cronjobs, scale_up) for kind, name in targets]


def _judge(snapshot: Json, kind: str, name: str, annotation: str, max_hours: float | None, cronjobs: bool,
           scale_up: bool) -> Json:
    label = f"{kind}/{name}"
    title = f"{label} runs only in working hours"
    workload = find(snapshot, kind, name)
    if workload is None:
        return check(f"schedule:{label}", title, 0, 1, f"{label} is gone; it must keep running in working hours.",
                     [problem(label, "not found")])
    value = (workload.get("annotations") or {}).get(annotation) or \
        (workload.get("pod_template_annotations") or {}).get(annotation)
    if value is not None:
        return _judge_window(label, title, annotation, str(value), max_hours)
    if cronjobs:
        down, up, names = _scalers(snapshot, kind, name)
        if down:
            return _judge_scalers(label, title, down, up, names, max_hours, scale_up)
    how = f"annotate it with {annotation}: \"Mon-Fri 08:00-18:00 Europe/Berlin\""
    how += " or add CronJobs that scale it to 0 and back" if cronjobs else ""
    return check(f"schedule:{label}", title, 0, 1, f"{label} runs around the clock: {how}.",
                 [problem(label, "no working-hours annotation" + (" and no scaling CronJobs" if cronjobs else ""))])


def _judge_window(label: str, title: str, annotation: str, value: str, max_hours: float | None) -> Json:
    try:
        hours = window_hours(value)
    except ValueError as exc:
        return check(f"schedule:{label}", title, 0, 1, f"{label}'s {annotation} annotation is invalid: {exc}.",
                     [problem(label, f"invalid {annotation}: {exc}", value=value)])
    return _verdict(label, title, f"its window {value!r}", hours, max_hours)


def _judge_scalers(label: str, title: str, down: list[Cron], up: list[Cron], names: list[str],
                   max_hours: float | None, scale_up: bool) -> Json:
    shown = ", ".join(names)
    if not up:
        text = f"is scaled down by {shown}, but nothing scales it back up"
        return check(f"schedule:{label}", title, 0.5 if scale_up else 1, 1, f"{label} {text}.",
                     [problem(label, text)] if scale_up else [], passed=not scale_up)
    hours = running_hours(down, up)
    if hours is None:
        return check(f"schedule:{label}", title, 0, 1, f"The schedules of {shown} never fire.",
                     [problem(label, f"{shown} never fire")])
    return _verdict(label, title, f"the CronJobs {shown}", hours, max_hours)


def _verdict(label: str, title: str, mechanism: str, hours: float, max_hours: float | None) -> Json:
    figures = {"hours_per_week": round(hours, 2), "max_hours_per_week": max_hours}
    if hours <= 0:
        return check(f"schedule:{label}", title, 0, 1, f"{label} would never run by {mechanism}.",
                     [problem(label, "the mechanism leaves no running hours", **figures)])
    if max_hours is not None and hours > max_hours + 1e-9:
        text = f"runs {hours:g} hours a week by {mechanism}, more than {max_hours:g}"
        return check(f"schedule:{label}", title, 0.5, 1, f"{label} {text}.", [problem(label, text, **figures)])
    return check(f"schedule:{label}", title, 1, 1, f"{label} runs {hours:g} hours a week by {mechanism}.")


def _scalers(snapshot: Json, kind: str, name: str) -> tuple[list[Cron], list[Cron], list[str]]:
    """The schedules of CronJobs that scale ``kind/name`` down to 0 and up again, and those CronJobs' names."""
    down: list[Cron] = []
    up: list[Cron] = []
    found: list[str] = []
    for cronjob in of_kind(snapshot, "CronJob"):
        if cronjob.get("suspend") or not cronjob.get("schedule"):
            continue
        replicas = _scaled_to(cronjob, kind, name)
        if replicas is None:
            continue
        try:
            schedule = Cron(str(cronjob["schedule"]))
        except ValueError:
            continue
        (down if replicas == 0 else up).append(schedule)
        found.append(f"CronJob/{cronjob['name']}")
    return down, up, found


def _scaled_to(cronjob: Json, kind: str, name: str) -> int | None:
    """The replica count a CronJob's containers set on ``kind/name``, or None when it does not scale it."""
    aliases = {"Deployment": ("deployment", "deployments", "deploy"),
               "StatefulSet": ("statefulset", "statefulsets", "sts")}.get(kind, (kind.lower(),))
    for container in cronjob.get("containers") or []:
        text = " ".join([*(container.get("command") or []), *(container.get("args") or [])])
        names_it = any(re.search(rf"\b{alias}(/|\s+){re.escape(name)}\b", text) for alias in aliases)
        match = _REPLICAS.search(text)
        if names_it and match is not None:
            return int(next(group for group in match.groups() if group is not None))
    return None


if __name__ == "__main__":
    main(grade)
