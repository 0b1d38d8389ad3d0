"""Working windows: parsing, errors that say what is wrong, and inside/outside on the window's own wall clock,
including the Europe/Berlin daylight-saving changes of 2026 (clocks forward on Sunday 2026-03-29 at 02:00,
back on Sunday 2026-10-25 at 03:00)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from labctl.catalog import windows
from labctl.catalog.windows import is_inside, parse_window

BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = parse_window("Mon-Fri 08:00-18:00 Europe/Berlin")
EVERY_DAY = parse_window("Daily 08:00-18:00 Europe/Berlin")
ACROSS_DST = parse_window("Sun 01:00-04:00 Europe/Berlin")  # holds the changed hour on both 2026 change days


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "days", "start", "end", "zone"),
    [
        ("Mon-Fri 08:00-18:00 Europe/Berlin", {0, 1, 2, 3, 4}, time(8), time(18), "Europe/Berlin"),
        ("Fri-Mon 06:30-23:59 UTC", {4, 5, 6, 0}, time(6, 30), time(23, 59), "UTC"),
        ("Mon,Wed,Fri 09:00-17:00 America/New_York", {0, 2, 4}, time(9), time(17), "America/New_York"),
        ("Mon-Thu,Sat 00:00-12:00 Asia/Tokyo", {0, 1, 2, 3, 5}, time(0), time(12), "Asia/Tokyo"),
        ("Daily 07:00-22:00 Europe/Berlin", set(range(7)), time(7), time(22), "Europe/Berlin"),
        ("sat-SUN 10:00-16:00 Europe/London", {5, 6}, time(10), time(16), "Europe/London"),
        ("Sun 01:00-04:00 Europe/Berlin", {6}, time(1), time(4), "Europe/Berlin"),
    ],
)
def test_parse(text: str, days: set[int], start: time, end: time, zone: str) -> None:
    window = parse_window(text)
    assert window.days == frozenset(days)
    assert (window.start, window.end, window.zone) == (start, end, ZoneInfo(zone))


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("Mon-Fri 08:00-18:00 Europe/Berlin", "Mon-Fri 08:00-18:00 Europe/Berlin"),
        ("Fri-Mon 06:30-23:59 UTC", "Fri-Mon 06:30-23:59 UTC"),
        ("Mon,Tue,Wed 09:00-17:00 UTC", "Mon-Wed 09:00-17:00 UTC"),
        ("Sun,Mon,Tue,Sat 09:00-17:00 UTC", "Sat-Tue 09:00-17:00 UTC"),
        ("Mon-Sun 09:00-17:00 UTC", "Daily 09:00-17:00 UTC"),
        ("Mon,Wed 09:00-17:00 UTC", "Mon,Wed 09:00-17:00 UTC"),
    ],
)
def test_str_is_a_canonical_window(text: str, written: str) -> None:
    assert str(parse_window(text)) == written
    assert parse_window(written) == parse_window(text)


def test_window_is_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        WORKDAYS.start = time(9)  # type: ignore[misc]
    assert len({WORKDAYS, parse_window("Mon-Fri 08:00-18:00 Europe/Berlin")}) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Mon-Fry 08:00-18:00 Europe/Berlin", "unknown day 'Fry'"),
        ("Monday 08:00-18:00 Europe/Berlin", "unknown day 'Monday'"),
        ("Mon,,Fri 08:00-18:00 Europe/Berlin", "unknown day '(empty)'"),
        ("Mon-Fri 8:00-18:00 Europe/Berlin", "bad time '8:00'"),
        ("Mon-Fri 08:00-24:00 Europe/Berlin", "bad time '24:00'"),
        ("Mon-Fri 08:60-18:00 Europe/Berlin", "bad time '08:60'"),
        ("Mon-Fri 08h00-18h00 Europe/Berlin", "bad time '08h00'"),
        ("Mon-Fri 0800 Europe/Berlin", "is not a time range"),
        ("Mon-Fri 18:00-08:00 Europe/Berlin", "ends at 08:00, not after it starts at 18:00"),
        ("Mon-Fri 08:00-08:00 Europe/Berlin", "ends at 08:00, not after it starts at 08:00"),
        ("Mon-Fri 08:00-18:00 Europe/Berlinn", "unknown time zone 'Europe/Berlinn'"),
        ("Mon-Fri 08:00-18:00 CEST", "unknown time zone 'CEST'"),
        ("Mon-Fri 08:00-18:00 ../../etc/passwd", "unknown time zone"),
        ("Mon-Fri 08:00-18:00", "is not a window"),
        ("Mon-Fri 08:00 - 18:00 Europe/Berlin", "is not a window"),
        ("", "is not a window"),
    ],
)
def test_errors_name_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_window(text)


@pytest.mark.parametrize(
    ("window", "now", "inside"),
    [
        # Winter time (CET = UTC+1), Friday 2026-03-27.
        (WORKDAYS, utc(2026, 3, 27, 6, 59), False),  # 07:59 CET
        (WORKDAYS, utc(2026, 3, 27, 7, 0), True),  # 08:00 CET: the start is inside
        (WORKDAYS, utc(2026, 3, 27, 16, 59), True),  # 17:59 CET
        (WORKDAYS, utc(2026, 3, 27, 17, 0), False),  # 18:00 CET: the end is outside
        # Saturday and Sunday are outside a Mon-Fri window whatever the hour.
        (WORKDAYS, utc(2026, 3, 28, 10, 0), False),
        (WORKDAYS, utc(2026, 3, 29, 10, 0), False),
        # Summer time (CEST = UTC+2) from Monday 2026-03-30: the same local hours start an hour earlier in UTC.
        (WORKDAYS, utc(2026, 3, 30, 5, 59), False),  # 07:59 CEST
        (WORKDAYS, utc(2026, 3, 30, 6, 0), True),  # 08:00 CEST
        (WORKDAYS, utc(2026, 3, 30, 15, 59), True),  # 17:59 CEST
        (WORKDAYS, utc(2026, 3, 30, 16, 0), False),  # 18:00 CEST
        # The change day itself, Sunday 2026-03-29, in a daily window: 06:30 UTC is 08:30 CEST, a day before 07:30 CET.
        (EVERY_DAY, utc(2026, 3, 28, 6, 30), False),
        (EVERY_DAY, utc(2026, 3, 29, 6, 30), True),
        (EVERY_DAY, utc(2026, 3, 29, 16, 0), False),  # 18:00 CEST
        # Back to winter time on Sunday 2026-10-25: 06:30 UTC is 08:30 CEST on the Saturday, 07:30 CET on the Sunday.
        (EVERY_DAY, utc(2026, 10, 24, 6, 30), True),
        (EVERY_DAY, utc(2026, 10, 25, 6, 30), False),
        (EVERY_DAY, utc(2026, 10, 25, 7, 0), True),  # 08:00 CET
        (EVERY_DAY, utc(2026, 10, 25, 16, 59), True),  # 17:59 CET
        (EVERY_DAY, utc(2026, 10, 25, 17, 0), False),
        # A window holding the spring-forward gap (02:00-03:00 does not exist on 2026-03-29).
        (ACROSS_DST, utc(2026, 3, 28, 23, 59), False),  # Sunday 00:59 CET
        (ACROSS_DST, utc(2026, 3, 29, 0, 0), True),  # 01:00 CET
        (ACROSS_DST, utc(2026, 3, 29, 0, 59), True),  # 01:59 CET; one minute later it is 03:00 CEST
        (ACROSS_DST, utc(2026, 3, 29, 1, 0), True),  # 03:00 CEST
        (ACROSS_DST, utc(2026, 3, 29, 1, 59), True),  # 03:59 CEST
        (ACROSS_DST, utc(2026, 3, 29, 2, 0), False),  # 04:00 CEST
        # ... and the fall-back repeat (02:00-03:00 happens twice on 2026-10-25).
        (ACROSS_DST, utc(2026, 10, 24, 22, 59), False),  # Sunday 00:59 CEST
        (ACROSS_DST, utc(2026, 10, 24, 23, 0), True),  # 01:00 CEST
        (ACROSS_DST, utc(2026, 10, 25, 0, 30), True),  # 02:30 CEST, the first time
        (ACROSS_DST, utc(2026, 10, 25, 1, 30), True),  # 02:30 CET, the second time
        (ACROSS_DST, utc(2026, 10, 25, 2, 59), True),  # 03:59 CET
        (ACROSS_DST, utc(2026, 10, 25, 3, 0), False),  # 04:00 CET
        # Any aware datetime works: 02:00 in New York (EDT, UTC-4) on Monday 2026-03-30 is 08:00 in Berlin (CEST).
        (WORKDAYS, datetime(2026, 3, 30, 2, 0, tzinfo=ZoneInfo("America/New_York")), True),
        (WORKDAYS, datetime(2026, 3, 30, 7, 59, tzinfo=BERLIN), False),
        # A window wrapping over the weekend (Fri-Mon) holds Sunday.
        (parse_window("Fri-Mon 00:00-23:59 UTC"), utc(2026, 3, 29, 12, 0), True),
        (parse_window("Fri-Mon 00:00-23:59 UTC"), utc(2026, 3, 31, 12, 0), False),
    ],
)
def test_is_inside_on_the_windows_wall_clock(window: windows.Window, now: datetime, inside: bool) -> None:
    assert is_inside(window, now) is inside


def _minutes_inside(window: windows.Window, start: datetime, hours: int) -> int:
    return sum(is_inside(window, start + timedelta(minutes=m)) for m in range(hours * 60))


@pytest.mark.parametrize(
    ("day_start_utc", "minutes"),
    [
        (utc(2026, 3, 21, 23, 0), 180),  # an ordinary Sunday in winter: 01:00-04:00 is three hours
        (utc(2026, 3, 28, 23, 0), 120),  # 2026-03-29: the hour 02:00-03:00 never happens
        (utc(2026, 10, 24, 22, 0), 240),  # 2026-10-25: the hour 02:00-03:00 happens twice
        (utc(2026, 10, 31, 23, 0), 180),  # the next Sunday, winter time again
    ],
)
def test_a_window_across_a_change_is_as_long_as_the_wall_clock_says(day_start_utc: datetime, minutes: int) -> None:
    assert _minutes_inside(ACROSS_DST, day_start_utc, 26) == minutes


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="has no time zone"):
        is_inside(WORKDAYS, datetime(2026, 3, 30, 9, 0))


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(windows)
    assert result.attempted >= 3
    assert result.failed == 0
