"""Durations as lab files write them: the accepted forms, the refusals, and the round trip through format."""

from __future__ import annotations

import doctest
from datetime import timedelta

import pytest

from labctl.catalog import durations
from labctl.catalog.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("45m", timedelta(minutes=45)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("120m", timedelta(hours=2)),
        ("1h0m", timedelta(hours=1)),
        ("36h", timedelta(hours=36)),
    ],
)
def test_parse_accepts_unit_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a duration"),
        ("90", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("-5m", "is not a duration"),
        ("+5m", "is not a duration"),
        ("1H", "is not a duration"),
        ("1w", "is not a duration"),
        ("30m1h", "is not a duration"),  # units out of order
        ("1h1h", "is not a duration"),
        ("1h 30m", "is not a duration"),
        (" 5m", "is not a duration"),
        ("m", "is not a duration"),
        ("soon", "is not a duration"),
        ("0", "is not a duration"),
        ("0m", "is zero"),
        ("0h0m0s", "is zero"),
    ],
)
def test_parse_refuses_everything_else(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0m", "0d"])
def test_zero_only_when_allowed(text: str) -> None:
    assert parse_duration(text, allow_zero=True) == timedelta(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=90), "1h30m"),
        (timedelta(0), "0s"),
        (timedelta(days=1), "1d"),
        (timedelta(hours=24), "1d"),
        (timedelta(seconds=3661), "1h1m1s"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(days=10, hours=23), "10d23h"),
    ],
)
def test_format_writes_the_canonical_form(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [(timedelta(seconds=-1), "cannot be negative"), (timedelta(milliseconds=1500), "whole seconds")],
)
def test_format_refuses_what_parse_cannot_read(value: timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_duration(value)


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 5400, 86_399, 86_400, 90_061, 1_000_000])
def test_parse_reads_back_what_format_writes(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["90m", "1h30m", "5400s", "0d1h30m"])
def test_equal_durations_format_the_same(text: str) -> None:
    assert format_duration(parse_duration(text)) == "1h30m"


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(durations)
    assert result.attempted >= 3
    assert result.failed == 0
