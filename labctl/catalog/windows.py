"""Working windows such as ``"Mon-Fri 08:00-18:00 Europe/Berlin"``: the hours a lab (or a workload) may run.

A window is: days, a start and an end time of day, and an IANA time zone. Days are day names (``Mon`` ... ``Sun``,
any case), ranges of them (``Mon-Fri``; ``Fri-Mon`` wraps over the weekend) or comma-separated lists of both
(``Mon,Wed,Fri`` or ``Mon-Thu,Sat``); ``Daily`` means every day. Times are ``HH:MM`` on a 24-hour clock, the end after
the start (a window does not run past midnight), the end excluded.

Whether a moment falls inside is decided on the wall clock of the window's own zone, so a window keeps its local hours
across daylight-saving changes: ``08:00-18:00 Europe/Berlin`` starts at 07:00 UTC in winter and 06:00 UTC in summer.
On the day clocks jump forward a window containing the skipped hour is an hour shorter; on the day they fall back it
is an hour longer (the repeated hour is inside twice).

>>> from datetime import datetime, timezone
>>> window = parse_window("Mon-Fri 08:00-18:00 Europe/Berlin")
>>> is_inside(window, datetime(2026, 3, 30, 6, 30, tzinfo=timezone.utc))  # 08:30 CEST on a Monday
True
>>> str(window)
'Mon-Fri 08:00-18:00 Europe/Berlin'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {name.lower(): index for index, name in enumerate(DAY_NAMES)}
_TIME = re.compile(r"^(?P<h>\d{2}):(?P<m>\d{2})$")
WINDOW_PATTERN = r"^\S+ \d{2}:\d{2}-\d{2}:\d{2} \S+$"
_EXAMPLE = "e.g. 'Mon-Fri 08:00-18:00 Europe/Berlin'"


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday, as :meth:`datetime.weekday`), a start and an end time, a zone."""

    days: frozenset[int]
    start: time
    end: time
    zone: ZoneInfo

    def __str__(self) -> str:
        return f"{_format_days(self.days)} {self.start:%H:%M}-{self.end:%H:%M} {self.zone.key}"


def parse_window(text: str) -> Window:
    """Parse ``"<days> <HH:MM>-<HH:MM> <zone>"``; :class:`ValueError` names what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"a window is text like {_EXAMPLE}, not {text!r}")
    parts = text.split()
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not a window: write '<days> <start>-<end> <time zone>', {_EXAMPLE}")
    days_text, hours_text, zone_text = parts
    days = _parse_days(days_text)
    start_text, dash, end_text = hours_text.partition("-")
    if not dash:
        raise ValueError(f"{hours_text!r} is not a time range: write HH:MM-HH:MM, e.g. '08:00-18:00'")
    start = _parse_time(start_text)
    end = _parse_time(end_text)
    if end <= start:
        raise ValueError(f"the window ends at {end_text}, not after it starts at {start_text}: the end must be later "
                         "the same day (windows do not run past midnight)")
    return Window(days=days, start=start, end=end, zone=_parse_zone(zone_text))


def is_inside(window: Window, now: datetime) -> bool:
    """Whether ``now`` (timezone-aware) falls inside ``window``, judged on the window zone's wall clock."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{now.isoformat()} has no time zone: pass a timezone-aware datetime")
    local = now.astimezone(window.zone)
    return local.weekday() in window.days and window.start <= local.time() < window.end


def _parse_days(text: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        if not dash:
            days.add(_day(first))
            continue
        begin, finish = _day(first), _day(last)
        index = begin
        days.add(index)
        while index != finish:
            index = (index + 1) % 7
            days.add(index)
    return frozenset(days)


def _day(name: str) -> int:
    index = _DAY_INDEX.get(name.lower())
    if index is None:
        shown = name or "(empty)"
        raise ValueError(f"unknown day {shown!r}: use {', '.join(DAY_NAMES)}, ranges like 'Mon-Fri', "
                         "lists like 'Mon,Wed' or 'Daily'")
    return index


def _parse_time(text: str) -> time:
    match = _TIME.match(text)
    if match is None or int(match["h"]) > 23 or int(match["m"]) > 59:
        raise ValueError(f"bad time {text!r}: write HH:MM on a 24-hour clock, from 00:00 to 23:59")
    return time(int(match["h"]), int(match["m"]))


def _parse_zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {text!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'") from exc


def _format_days(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "Daily"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    # Join a run ending on Sunday with one starting on Monday: Sat-Mon reads better than Mon,Sat-Sun.
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:
        runs[0] = runs.pop() + runs[0]
    texts = [DAY_NAMES[run[0]] if len(run) == 1 else f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}" for run in runs]
    return ",".join(texts)
